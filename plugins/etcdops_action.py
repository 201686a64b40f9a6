# -*- coding: utf-8 -*-
# The action plugin behind every etcdops module (plugins/action/<module>.py
# are links to this file). Ansible uploads a binary module on every task;
# this plugin instead keeps the multi-call binary build/linux_<arch>/etcdops
# in a per-user cache on the target, keyed by its sha256, and runs it there:
#
#   warm: one command that detects the architecture, checks the cache entry
#         (owner and mode 0700; the binary not changed since its stamp was
#         written when it was installed) and execs the binary with the
#         task's args on stdin;
#   cold: one upload to Ansible's remote temporary directory, then one
#         command that copies it into a new entry, verifies its sha256,
#         renames the entry into place, prunes old entries and execs it.
#
# Both commands are the fixed shell script SCRIPT below with the task's
# values as quoted arguments. The module's JSON result is returned
# unchanged. Without this plugin (no action_plugins path configured) the
# binaries in library/ run the plain way. Only public ansible-core APIs are
# used (ActionBase's methods for action plugins, the shell plugin, Display,
# module_utils' JSON encoders), so that one file serves ansible-core 2.14
# to 2.21.
from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

try:  # ansible-core >= 2.19: module messages go through serialization profiles.
    from ansible.module_utils.common.json import Direction, get_module_decoder, get_module_encoder

    _ENCODER = get_module_encoder('legacy', Direction.CONTROLLER_TO_MODULE)
    _DECODER = get_module_decoder('legacy', Direction.MODULE_TO_CONTROLLER)
except ImportError:  # ansible-core 2.14 .. 2.18
    from ansible.module_utils.common.json import AnsibleJSONEncoder as _ENCODER

    _DECODER = json.JSONDecoder

display = Display()

BINARY = 'etcdops'
ARCHES = ('linux_amd64', 'linux_arm64')  # the names SCRIPT maps `uname -sm` to
# Cache entries kept besides the one in use (other builds, for other
# checkouts or playbooks running at the same time).
KEEP_OTHER = 2
MARK = 'ETCDOPS-CACHE:'

# The one script both paths run, as `/bin/sh -c SCRIPT etcdops MODE DIR ...`:
#   run DIR ARCH=SHA256...             exec the cached build for this machine,
#                                      or answer MISS <arch> <dir> / NOBUILD <uname>;
#   install DIR SHA256 UPLOAD TMP KEEP install UPLOAD as the entry SHA256, prune
#                                      all but KEEP other entries, exec it.
# DIR empty means ~/.cache/etcdops of the user the command runs as (after
# become), taken from the passwd database because sudo may keep the
# caller's HOME. An entry is valid when the cache directory and the entry
# are directories owned by this user with mode 0700, and the binary is a
# file owned by this user with mode 0700 whose inode has not changed (ctime,
# which no write, chmod, chown or replacement can avoid moving) since the
# stamp beside it was written, last, by install. Answers other than the
# module's own start with MARK, always with exit status 0.
SCRIPT = r'''
say() { echo "ETCDOPS-CACHE: $*"; exit 0; }
umask 077
mode=$1 d=$2
shift 2
u=$(id -u)
if [ -z "$d" ]; then
  home=$(getent passwd "$u" | cut -d: -f6)
  d=${home:-$HOME}/.cache/etcdops
fi
valid() {
  [ "$(find "$d" "$1" -maxdepth 0 -type d -user "$u" -perm 700 -printf d 2>/dev/null
       find "$1/etcdops" -maxdepth 0 -type f -user "$u" -perm 700 ! -cnewer "$1/stamp" -printf f 2>/dev/null)" = ddf ]
}
case $mode in
run)
  case $(uname -sm) in
    "Linux x86_64" | "Linux amd64") a=linux_amd64 ;;
    "Linux aarch64" | "Linux arm64") a=linux_arm64 ;;
    *) a= ;;
  esac
  h=
  for b; do
    case $b in "$a="?*) h=${b#*=} ;; esac
  done
  [ -n "$a" ] && [ -n "$h" ] || say NOBUILD "$(uname -sm)"
  if valid "$d/$h"; then exec "$d/$h/etcdops"; fi
  say MISS "$a" "$d"
  ;;
install)
  h=$1 up=$2 tmp=$3 keep=$4
  fail() { rm -rf "$tmp"; say FAIL "$@"; }
  [ -d "$d" ] || mkdir -p "$d" || fail "cannot create $d"
  find "$d" -maxdepth 0 -type d -user "$u" ! -perm 700 -exec chmod 700 {} + 2>/dev/null
  [ "$(find "$d" -maxdepth 0 -type d -user "$u" -perm 700 -printf d 2>/dev/null)" = d ] ||
    fail "$d is not owned by uid $u with mode 0700"
  e=$d/$h n=$d/.new-$h-$$
  rm -rf "$n"
  if ! { mkdir "$n" && cp "$up" "$n/etcdops" && chmod 700 "$n/etcdops"; }; then
    rm -rf "$n"; fail "cannot write $n"
  fi
  if ! echo "$h  $n/etcdops" | sha256sum -c --status; then
    rm -rf "$n"; fail "the uploaded binary does not have sha256 $h"
  fi
  echo "$h" >"$n/stamp" || { rm -rf "$n"; fail "cannot write $n/stamp"; }
  # Another task (same host, another fork) may have installed it meanwhile.
  if valid "$e"; then rm -rf "$n"; else rm -rf "$e"; mv -T "$n" "$e" 2>/dev/null || rm -rf "$n"; fi
  rm -rf "$tmp"
  k=0
  ls -1t "$d" | while IFS= read -r x; do
    [ "$x" != "$h" ] && [ -d "$d/$x" ] || continue
    k=$((k + 1))
    [ "$k" -le "$keep" ] || rm -rf "$d/$x"
  done
  find "$d" -maxdepth 1 -name ".new-*" -mmin +60 -exec rm -rf {} + 2>/dev/null
  if valid "$e"; then exec "$e/etcdops"; fi
  say FAIL "the cache entry $e changed while it was installed"
  ;;
esac
say FAIL "unknown mode $mode"
'''


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
    size, mtime and inode so that each task does not hash 16 MB again
    (every task runs in a fresh worker process, so memory cannot keep it)."""
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
    for arch in ARCHES:
        path = os.path.join(root, arch, BINARY)
        if os.path.isfile(path):
            builds[arch] = (path, file_sha256(path))
    return builds


def parse_module_output(stdout):
    """The JSON object the module printed, and warnings about anything after
    it. Lines before it (a login banner, a shell profile's noise) are
    skipped; ValueError when there is no object."""
    decoder = _DECODER()
    pos = 0
    while True:
        start = stdout.find('{', pos)
        if start < 0:
            raise ValueError('no JSON object in the output')
        line_start = stdout.rfind('\n', 0, start) + 1
        if stdout[line_start:start].strip():
            pos = start + 1  # a brace inside a noise line
            continue
        try:
            data, end = decoder.raw_decode(stdout, start)
        except ValueError:
            pos = start + 1
            continue
        if not isinstance(data, dict):
            raise ValueError('not a JSON object')
        rest = stdout[end:].strip()
        warnings = ['Module invocation had junk after the JSON data: %s' % rest] if rest else []
        return data, warnings


def clean_module_result(data):
    """Drops what a module may not set, as Ansible does for its modules:
    internal keys, and empty warnings or deprecations."""
    for key in [k for k in data if k.startswith('_ansible_')]:
        display.warning('Removed unexpected internal key in module return: %s' % key)
        del data[key]
    for key in ('warnings', 'deprecations'):
        if key in data and not data[key]:
            del data[key]
    return data


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
            cache_dir = str(self._templar.template(cache_dir))
            if not cache_dir.startswith('/'):
                result.update(failed=True, msg='etcdops_cache_dir must be an absolute path, not %r' % cache_dir)
                return result
        cache_dir = cache_dir or ''

        args = dict(self._task.args)
        self._update_module_args(module, args, task_vars)
        stdin = json.dumps(args, cls=_ENCODER).encode('utf-8')

        res = self._script(stdin, 'run', cache_dir, *['%s=%s' % (arch, build[1]) for arch, build in sorted(builds.items())])
        mark = self._mark(res)
        if mark and mark[0] == 'NOBUILD':
            result.update(failed=True, msg='%s: no etcdops build for this target (uname -sm: %s); available: %s' % (
                module, ' '.join(mark[1:]) or 'unknown', ', '.join(sorted(builds))))
            return result
        if mark and mark[0] == 'MISS' and mark[1:2] and mark[1] in builds:
            arch, remote_dir = mark[1], ' '.join(mark[2:])
            display.vvv('etcdops: uploading %s build %s to %s' % (arch, builds[arch][1][:12], remote_dir),
                        host=self._play_context.remote_addr)
            res = self._install_and_run(builds[arch], cache_dir, stdin)
            mark = self._mark(res)
        else:
            display.vvv('etcdops: cached build used', host=self._play_context.remote_addr)
        if mark:
            result.update(failed=True, msg='%s: etcdops cache on the target: %s' % (module, ' '.join(mark[1:]) or mark[0]))
            return result

        result.update(self._parse(res))
        return result

    def _script(self, stdin, *args):
        """Runs SCRIPT with args on the target (with become, and the task's
        environment applied to the whole script, as to a module Ansible runs
        the plain way)."""
        quote = self._connection._shell.quote
        cmd = '/bin/sh -c %s %s %s' % (quote(SCRIPT), BINARY, ' '.join(quote(a) for a in args))
        env = self._compute_environment_string()
        if env:
            cmd = '%s %s' % (env, cmd)
        return self._low_level_execute_command(cmd, in_data=stdin)

    def _install_and_run(self, build, cache_dir, stdin):
        path, digest = build
        tmpdir = self._make_tmp_path()
        upload = self._connection._shell.join_path(tmpdir, BINARY)
        self._transfer_file(path, upload)
        self._fixup_perms2([tmpdir, upload], execute=False)
        try:
            return self._script(stdin, 'install', cache_dir, digest, upload, tmpdir, str(KEEP_OTHER))
        finally:
            # The script removed the directory; tell ActionBase not to, as
            # ActionBase itself does after its own cleanup.
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
        stdout = res.get('stdout') or ''
        try:
            data, warnings = parse_module_output(stdout)
        except ValueError:
            return dict(failed=True, rc=res.get('rc'),
                        msg='MODULE FAILURE: the etcdops binary did not answer with JSON (rc=%s)' % res.get('rc'),
                        module_stdout=stdout, module_stderr=res.get('stderr', ''))
        for w in warnings:
            display.warning(w)
        return clean_module_result(data)
