# -*- coding: utf-8 -*-
# The action plugin behind every etcdops module (plugins/action/<module>.py
# are links to this file). Ansible uploads a binary module on every task;
# this plugin instead keeps the multi-call binary build/linux_<arch>/etcdops
# in a per-user cache on the target, keyed by its sha256, and runs it there:
#
#   warm: one command that detects the architecture, checks the cache entry
#         (owner, mode 0700, and the stamp of the binary written when it was
#         installed) and execs the binary with the task's args on stdin;
#   cold: one upload to Ansible's remote temporary directory, then one
#         command that verifies the upload's sha256, installs it under a
#         temporary name, renames it into place, prunes old entries and
#         execs it.
#
# The module's JSON result is returned unchanged. Without this plugin (no
# action_plugins path configured) the binaries in library/ run the plain way.
from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile

from ansible.module_utils.json_utils import _filter_non_json_lines
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.vars.clean import remove_internal_keys

try:  # ansible-core >= 2.19 serialises module args with a profile encoder.
    from ansible.module_utils.common.json import Direction, get_module_encoder

    def _encode_args(args):
        return json.dumps(args, cls=get_module_encoder('legacy', Direction.CONTROLLER_TO_MODULE))
except ImportError:  # ansible-core 2.14 .. 2.18
    from ansible.module_utils.common.json import AnsibleJSONEncoder

    def _encode_args(args):
        return json.dumps(args, cls=AnsibleJSONEncoder)

display = Display()

BINARY = 'etcdops'
# What `uname -sm` prints, mapped to the build directory names.
ARCHES = {
    'Linux x86_64': 'linux_amd64',
    'Linux amd64': 'linux_amd64',
    'Linux aarch64': 'linux_arm64',
    'Linux arm64': 'linux_arm64',
    'Linux aarch64_be': None,
}
# Cache entries kept besides the one in use (other builds, for other
# checkouts or playbooks running at the same time).
KEEP_OTHER = 2
MARK = 'ETCDOPS-CACHE:'


def build_dir():
    """The directory holding linux_<arch>/etcdops, next to this plugin's
    repository unless ETCDOPS_BUILD_DIR says otherwise."""
    env = os.environ.get('ETCDOPS_BUILD_DIR')
    if env:
        return env
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.join(os.path.dirname(here), 'build')


def file_sha256(path):
    """sha256 of a local file, remembered in PATH.sha256 with the file's
    size and mtime so that each task does not hash 15 MB again (every task
    runs in a fresh worker process, so memory cannot keep it)."""
    st = os.stat(path)
    key = '%d %d %d' % (st.st_size, st.st_mtime_ns, st.st_ino)
    memo = path + '.sha256'
    try:
        with open(memo) as f:
            digest, seen = f.read().split(' ', 1)
        if seen.strip() == key and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.sha256-')
        with os.fdopen(fd, 'w') as f:
            f.write('%s %s\n' % (digest, key))
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only build directory: hash again next time
    return digest


def available_builds(root):
    """{'linux_amd64': (path, sha256), ...} for the builds present."""
    builds = {}
    for arch in sorted(set(a for a in ARCHES.values() if a)):
        path = os.path.join(root, arch, BINARY)
        if os.path.isfile(path):
            builds[arch] = (path, file_sha256(path))
    return builds


def select_arch(uname):
    """The build directory name for what `uname -sm` printed on the target,
    or None when no build fits it."""
    return ARCHES.get(' '.join(uname.split()))


def cache_dir_expr(cache_dir):
    """Shell words that set d to the cache directory: the user's choice, or
    ~/.cache/etcdops of the user the command runs as (after become), taken
    from the passwd database because sudo may keep the caller's HOME."""
    if cache_dir:
        return 'd=%s' % shlex.quote(cache_dir)
    return 'd="$(getent passwd "$u" | cut -d: -f6)/.cache/%s"' % BINARY


def probe_script(builds, cache_dir, env_string):
    """The warm path: detect, check the entry, exec it; otherwise print
    MARK MISS <arch> or MARK NOBUILD <uname>."""
    cases = ' '.join('%s) h=%s;;' % (arch, digest) for arch, (_, digest) in sorted(builds.items()))
    arches = ' '.join('"%s") a=%s;;' % (k, v) for k, v in ARCHES.items() if v)
    return (
        '%(env)sumask 077; u=$(id -u); %(dir)s; m=$(uname -sm); '
        'case "$m" in %(arches)s *) a=;; esac; h=; case "$a" in %(cases)s *) ;; esac; '
        'if [ -z "$h" ]; then echo "%(mark)s NOBUILD $m"; exit 0; fi; '
        'e="$d/$h"; f="$e/%(bin)s"; '
        'if [ "$(stat -c %%u:%%a "$d" "$e" 2>/dev/null | tr "\\n" " ")" = "$u:700 $u:700 " ] '
        '&& [ -s "$e/stamp" ] && [ "$(stat -c "%%s %%y %%z %%i %%u %%a" "$f" 2>/dev/null)" = "$(cat "$e/stamp")" ]; '
        'then exec "$f"; fi; '
        'echo "%(mark)s MISS $a $d"'
    ) % dict(dir=cache_dir_expr(cache_dir), arches=arches, cases=cases, mark=MARK, bin=BINARY, env=env_string)


def install_script(arch, digest, upload, tmpdir, cache_dir, env_string):
    """The cold path: verify the uploaded file, install it as the cache entry
    (temporary name, then rename), prune old entries, exec it."""
    return (
        '%(env)sumask 077; u=$(id -u); %(dir)s; a=%(arch)s; h=%(hash)s; up=%(up)s; '
        'fail() { rm -rf %(tmp)s; echo "%(mark)s FAIL $*"; exit 0; }; '
        'mkdir -p "$d" && chmod 700 "$d" || fail "cannot create $d"; '
        '[ "$(stat -c %%u:%%a "$d")" = "$u:700" ] || fail "$d is not owned by uid $u with mode 0700"; '
        '[ "$(sha256sum "$up" | cut -d" " -f1)" = "$h" ] || fail "the uploaded binary does not have sha256 $h"; '
        'e="$d/$h"; f="$e/%(bin)s"; n="$d/.new-$h-$$"; rm -rf "$n"; '
        'mkdir "$n" && cp "$up" "$n/%(bin)s" && chmod 700 "$n/%(bin)s" '
        '&& [ "$(sha256sum "$n/%(bin)s" | cut -d" " -f1)" = "$h" ] '
        '&& stat -c "%%s %%y %%z %%i %%u %%a" "$n/%(bin)s" > "$n/stamp" || { rm -rf "$n"; fail "cannot write $n"; }; '
        'valid() { [ "$(stat -c %%u:%%a "$e" 2>/dev/null)" = "$u:700" ] && [ -s "$e/stamp" ] '
        '&& [ "$(stat -c "%%s %%y %%z %%i %%u %%a" "$f" 2>/dev/null)" = "$(cat "$e/stamp")" ]; }; '
        # Another task (same host, another fork) may have installed it meanwhile.
        'if valid; then rm -rf "$n"; else rm -rf "$e"; mv -T "$n" "$e" 2>/dev/null || rm -rf "$n"; fi; '
        'rm -rf %(tmp)s; '
        'ls -1dt "$d"/*/ 2>/dev/null | grep -v "^$e/$" | tail -n +%(keep)d | xargs -r rm -rf; '
        'find "$d" -maxdepth 1 -name ".new-*" -mmin +60 -exec rm -rf {} + 2>/dev/null; '
        'if valid; then exec "$f"; fi; '
        'echo "%(mark)s FAIL the cache entry $e changed while it was installed"'
    ) % dict(dir=cache_dir_expr(cache_dir), arch=shlex.quote(arch), hash=digest, up=shlex.quote(upload),
             tmp=shlex.quote(tmpdir), mark=MARK, bin=BINARY, keep=KEEP_OTHER + 1, env=env_string)


class ActionModule(ActionBase):
    """Runs an etcdops module from the binary cached on the target."""

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        module = self._task.action.split('.')[-1]
        if self._task.async_val:
            result.update(failed=True, msg='%s: async is not supported by the etcdops action plugin; '
                          'run the task without async (it waits for etcd itself, see wait_timeout)' % module)
            return result

        builds = available_builds(build_dir())
        if not builds:
            result.update(failed=True, msg='%s: no etcdops build in %s; run `make build` first' % (module, build_dir()))
            return result

        cache_dir = task_vars.get('etcdops_cache_dir')
        if cache_dir:
            cache_dir = self._templar.template(cache_dir)
            if not str(cache_dir).startswith('/'):
                result.update(failed=True, msg='etcdops_cache_dir must be an absolute path, not %r' % cache_dir)
                return result

        args = dict(self._task.args)
        self._update_module_args(module, args, task_vars)
        stdin = _encode_args(args).encode("utf-8")
        # The task's environment applies to the whole command, as it does
        # to a module Ansible runs the plain way.
        env_string = self._compute_environment_string()
        env_string = 'export %s; ' % env_string if env_string else ''

        res = self._low_level_execute_command(probe_script(builds, cache_dir, env_string), in_data=stdin)
        mark = self._mark(res)
        if mark and mark[0] == 'NOBUILD':
            result.update(failed=True, msg='%s: no etcdops build for this target (uname -sm: %s); available: %s' % (
                module, ' '.join(mark[1:]) or 'unknown', ', '.join(sorted(builds))))
            return result
        if mark and mark[0] == 'MISS':
            arch, remote_dir = mark[1], ' '.join(mark[2:])
            display.vvv('etcdops: uploading %s build %s to %s' % (arch, builds[arch][1][:12], remote_dir),
                        host=self._play_context.remote_addr)
            res = self._install_and_run(arch, builds[arch], cache_dir, env_string, stdin)
            mark = self._mark(res)
        else:
            display.vvv('etcdops: cached build used', host=self._play_context.remote_addr)
        if mark:
            result.update(failed=True, msg='%s: etcdops cache on the target: %s' % (module, ' '.join(mark[1:]) or mark[0]))
            return result

        result.update(self._parse(res))
        remove_internal_keys(result)
        return result

    def _install_and_run(self, arch, build, cache_dir, env_string, stdin):
        path, digest = build
        tmpdir = self._make_tmp_path()
        upload = self._connection._shell.join_path(tmpdir, BINARY)
        self._transfer_file(path, upload)
        self._fixup_perms2([tmpdir, upload], execute=False)
        try:
            return self._low_level_execute_command(
                install_script(arch, digest, upload, tmpdir, cache_dir, env_string), in_data=stdin)
        finally:
            # The script removed the directory; tell ActionBase not to.
            self._connection._shell.tmpdir = None

    @staticmethod
    def _mark(res):
        """The words after MARK when the script answered instead of the
        module, else None."""
        out = (res.get('stdout') or '').strip()
        if out.startswith(MARK):
            return out[len(MARK):].split() or ['FAIL']
        return None

    @staticmethod
    def _parse(res):
        """The module's JSON object, or a failure that shows what came back."""
        try:
            text, warnings = _filter_non_json_lines(res.get('stdout', ''))
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError('not an object')
            for w in warnings:
                display.warning(w)
            data['_ansible_parsed'] = True
            return data
        except ValueError:
            return dict(failed=True, _ansible_parsed=False, rc=res.get('rc'),
                        msg='MODULE FAILURE: the etcdops binary did not answer with JSON (rc=%s)' % res.get('rc'),
                        module_stdout=res.get('stdout', ''), module_stderr=res.get('stderr', ''))
