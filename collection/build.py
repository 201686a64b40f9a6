#!/usr/bin/env python3
"""Assembles the Ansible collection from the repository's layout into OUT
(make collection: build/collection), ready for `ansible-galaxy collection
build`. Nothing is listed by hand, so a module, playbook or plugin added to
the repository is packaged as it is:

  modules/<m>/ + library/<m>.yml -> plugins/modules/<m> (a stub that module
                                    lookup and ansible-doc -l need, see STUB)
                                    and plugins/modules/<m>.yml (its docs)
  build/linux_<arch>/etcdops     -> build/linux_<arch>/etcdops (the action
                                    plugin runs the one the target needs)
  plugins/                       -> plugins/ (links kept)
  roles/<r>/                     -> roles/<r>/
  playbooks/**/NN.name.yml       -> playbooks/**/NN/name.yml, which is where
                                    ansible-core looks for <ns>.<name>.NN.name,
                                    and the link playbooks/**/name.yml
  playbooks/**/name.yml          -> playbooks/**/name.yml
  collection/*                   -> galaxy.yml (version from VERSION),
                                    meta/runtime.yml, README.md, ...; not
                                    the tools beside them (*.py, *.sh, *.go)

In the playbooks and the roles, module names and role names become fully
qualified (<ns>.<name>.<module>). Exits non-zero, naming the cause, when a
module has no sidecar, a build is missing or two playbooks map to one name.
"""
import os
import re
import shutil
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SKIP = shutil.ignore_patterns('__pycache__', '*.pyc', '*.sha256', '.sha256-*')


# plugins/modules/<m>: what module lookup and ansible-doc -l need, a real
# file (ansible-doc -l skips links as aliases; eight copies of the binary
# would weigh 160 MB). The action plugin of the same name always runs
# instead, with the binary build/linux_<arch>/etcdops for the target.
STUB = """#!/bin/sh
# PREFIXMODULE is the etcdops Go binary, build/linux_<arch>/etcdops in this
# collection, which the action plugin plugins/action/MODULE.py picks for the
# target's architecture and runs; the module's documentation is MODULE.yml.
# Ansible runs that action plugin for this module, never this file.
echo '{"failed": true, "msg": "PREFIXMODULE runs through its action plugin (plugins/action/MODULE.py), not as this file"}'
"""


class BuildError(Exception):
    pass


NO_LOG_LINE = re.compile(r'^[ ]+no_log:[ ]*(true|false)[ ]*\n', re.M)


def galaxy_field(text, key):
    m = re.search(r'^%s:\s*(\S+)\s*$' % key, text, re.M)
    if not m:
        raise BuildError('collection/galaxy.yml has no %s' % key)
    return m.group(1)


def subdirs(path):
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


class Rewriter:
    """Qualifies module and role names in a playbook or a role's YAML,
    line by line, so that comments and layout stay as they are."""

    def __init__(self, prefix, modules, roles):
        self.prefix = prefix
        alt = '|'.join(re.escape(m) for m in sorted(modules, key=len, reverse=True))
        # A task's (or module_defaults') key naming a module.
        self.module_key = re.compile(r'^(\s*(?:-\s+)?)(%s):(\s|$)' % alt) if modules else None
        # A module named in documentation markup, M(<module>).
        self.module_ref = re.compile(r'M\((%s)\)' % alt) if modules else None
        self.roles = set(roles)
        self.role_block = re.compile(r'^(\s*)(?:-\s+)?(?:ansible\.builtin\.)?(?:include_role|import_role):\s*$')
        self.roles_list = re.compile(r'^(\s*)roles:\s*$')
        self.role_name = re.compile(r'^(\s*)name:\s*(\S+)\s*$')
        self.role_item = re.compile(r'^(\s*-\s+)(?:(role|name):\s*)?(\S+)\s*$')

    def rewrite_docs(self, text):
        """Qualifies the modules a sidecar's markup names, M(<module>), and
        drops the options' no_log lines: the sidecar records no_log so that
        cmd/etcdops/docs_test.go can hold it to the code's spec, but
        DOCUMENTATION has no such key (ansible-test's validate-modules
        refuses it)."""
        text = NO_LOG_LINE.sub('', text)
        if not self.module_ref:
            return text
        return self.module_ref.sub(lambda m: 'M(%s%s)' % (self.prefix, m.group(1)), text)

    def qualify_role(self, name):
        return self.prefix + name if name in self.roles else name

    def rewrite(self, text):
        out = []
        block = None  # (kind, indentation) of an include_role or roles: block
        for line in text.splitlines(keepends=True):
            body = line.rstrip('\n')
            indent = len(body) - len(body.lstrip())
            if block and body.strip() and not body.lstrip().startswith('#'):
                # A block ends at a line no deeper than its key (a roles:
                # list may sit at the key's own indentation).
                item = block[0] == 'roles' and body.lstrip().startswith('- ')
                if indent < block[1] or (indent == block[1] and not item):
                    block = None
            if block and block[0] == 'include':
                m = self.role_name.match(body)
                if m:
                    body = '%sname: %s' % (m.group(1), self.qualify_role(m.group(2)))
            elif block and block[0] == 'roles':
                m = self.role_item.match(body)
                if m:
                    key = m.group(2) + ': ' if m.group(2) else ''
                    body = '%s%s%s' % (m.group(1), key, self.qualify_role(m.group(3)))
            if self.module_key:
                body = self.module_key.sub(lambda m: m.group(1) + self.prefix + m.group(2) + ':' + m.group(3), body)
            m = self.role_block.match(body)
            if m:
                block = ('include', len(body) - len(body.lstrip(' -')) + 1)
            m = self.roles_list.match(body)
            if m:
                block = ('roles', len(m.group(1)))
            out.append(body + ('\n' if line.endswith('\n') else ''))
        return ''.join(out)


def copy_yaml_tree(src, dst, rewriter):
    """Copies a role, rewriting its YAML outside templates/ and files/."""
    shutil.copytree(src, dst, symlinks=True, ignore=SKIP)
    for dirpath, dirnames, filenames in os.walk(dst):
        rel = os.path.relpath(dirpath, dst).split(os.sep)
        if rel[0] in ('templates', 'files'):
            continue
        for f in filenames:
            path = os.path.join(dirpath, f)
            if f.endswith(('.yml', '.yaml')) and not os.path.islink(path):
                with open(path) as fh:
                    text = fh.read()
                with open(path, 'w') as fh:
                    fh.write(rewriter.rewrite(text))


def playbook_targets(src):
    """[(source, path in the collection, alias or None)] for every playbook
    under src; NN.name.yml maps to NN/name.yml (ansible-core splits a
    playbook's FQCN at its dots)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.endswith('.yml'):
                continue
            rel_dir = os.path.relpath(dirpath, src)
            parts = [] if rel_dir == '.' else rel_dir.split(os.sep)
            stem = f[:-len('.yml')]
            names = stem.split('.')
            target = os.path.join(*(parts + names[:-1] + [names[-1] + '.yml']))
            alias = os.path.join(*(parts + [names[-1] + '.yml'])) if len(names) > 1 else None
            found.append((os.path.join(dirpath, f), target, alias))
    targets = [t for _, t, _ in found]
    for _, _, alias in found:
        if alias and alias in targets:
            raise BuildError('the short name %s of a playbook is also a playbook of its own' % alias)
    aliases = [a for _, _, a in found if a]
    for a in set(aliases):
        if aliases.count(a) > 1:
            raise BuildError('two playbooks have the short name %s' % a)
    return found


def build(out):
    with open(os.path.join(ROOT, 'VERSION')) as f:
        version = f.read().strip()
    if not re.match(r'^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$', version):
        raise BuildError('VERSION %r is not a semantic version' % version)
    with open(os.path.join(HERE, 'galaxy.yml')) as f:
        galaxy = f.read()
    prefix = '%s.%s.' % (galaxy_field(galaxy, 'namespace'), galaxy_field(galaxy, 'name'))

    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for entry in os.listdir(HERE):
        src = os.path.join(HERE, entry)
        if entry == '__pycache__' or entry.endswith(('.py', '.sh', '.go')):
            continue  # the tools that build and check the collection
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out, entry), ignore=SKIP)
        else:
            shutil.copy2(src, os.path.join(out, entry))
    with open(os.path.join(out, 'galaxy.yml'), 'w') as f:
        f.write(re.sub(r'^version:.*$', 'version: %s' % version, galaxy, count=1, flags=re.M))

    # The binaries, one per architecture.
    arches = [d for d in subdirs(os.path.join(ROOT, 'build')) if d.startswith('linux_')
              and os.path.isfile(os.path.join(ROOT, 'build', d, 'etcdops'))] if os.path.isdir(os.path.join(ROOT, 'build')) else []
    if 'linux_amd64' not in arches:
        raise BuildError('no build/linux_amd64/etcdops: run `make build` first')
    for arch in arches:
        os.makedirs(os.path.join(out, 'build', arch))
        dst = os.path.join(out, 'build', arch, 'etcdops')
        shutil.copyfile(os.path.join(ROOT, 'build', arch, 'etcdops'), dst)
        os.chmod(dst, 0o755)

    # The modules: lookup needs a file named after each; the docs beside it.
    modules = subdirs(os.path.join(ROOT, 'modules'))
    roles = subdirs(os.path.join(ROOT, 'roles'))
    rewriter = Rewriter(prefix, modules, roles)
    mod_dir = os.path.join(out, 'plugins', 'modules')
    os.makedirs(mod_dir)
    for m in modules:
        doc = os.path.join(ROOT, 'library', m + '.yml')
        if not os.path.isfile(doc):
            raise BuildError('module %s has no documentation sidecar library/%s.yml' % (m, m))
        with open(doc) as f:
            text = f.read()
        with open(os.path.join(mod_dir, m + '.yml'), 'w') as f:
            f.write(rewriter.rewrite_docs(text))
        with open(os.path.join(mod_dir, m), 'w') as f:
            f.write(STUB.replace('MODULE', m).replace('PREFIX', prefix))
        os.chmod(os.path.join(mod_dir, m), 0o755)

    # The action plugins, as the repository has them (links to one file).
    src_plugins = os.path.join(ROOT, 'plugins')
    for entry in os.listdir(src_plugins):
        src = os.path.join(src_plugins, entry)
        dst = os.path.join(out, 'plugins', entry)
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True, ignore=SKIP)
        elif entry.endswith('.py'):
            shutil.copy2(src, dst)
    for m in modules:
        if not os.path.exists(os.path.join(out, 'plugins', 'action', m + '.py')):
            raise BuildError('module %s has no action plugin plugins/action/%s.py' % (m, m))

    for r in roles:
        copy_yaml_tree(os.path.join(ROOT, 'roles', r), os.path.join(out, 'roles', r), rewriter)

    for src, target, alias in playbook_targets(os.path.join(ROOT, 'playbooks')):
        dst = os.path.join(out, 'playbooks', target)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(src) as f:
            text = f.read()
        with open(dst, 'w') as f:
            f.write(rewriter.rewrite(text))
        os.chmod(dst, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        if alias:
            link = os.path.join(out, 'playbooks', alias)
            os.symlink(os.path.relpath(dst, os.path.dirname(link)), link)
    return version


def main(argv):
    if len(argv) != 2:
        print('usage: build.py OUT', file=sys.stderr)
        return 2
    try:
        version = build(argv[1])
    except (BuildError, OSError) as e:
        print('collection: %s' % e, file=sys.stderr)
        return 1
    print('collection assembled in %s (version %s)' % (argv[1], version))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
