#!/usr/bin/env bash
# Lints the assembled collection (make collection; make lint runs this):
# ansible-lint with the production profile, then ansible-test sanity with
# the newest ansible-core in .venv, offline and without containers.
#
# ansible-test runs on a copy outside the git checkout (inside it, it would
# list only the files git tracks, and build/ is ignored), with HOME in
# build/ansible-test-home for its virtual environments and caches. Its pip
# bootstrap script comes from a host this project does not reach, so
# collection/get_pip_offline.py stands in for it (pip from ensurepip, then
# PyPI). Generated ignores (tests/sanity/ignore-<core>.txt), for each binary
# module's stub plugins/modules/<m> and its sidecar:
#   shebang, validate-modules:invalid-extension  the stub is a shell script
#       (the module is the Go binary its action plugin runs), not Python;
#   validate-modules:missing-gplv3-license  the collection is Apache-2.0.
# The sanity test "ignores" fails on any of them that is not needed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/build/collection/ansible_collections/etcdops/etcd
venv=$top/.venv
[ -f "$src/galaxy.yml" ] || { echo "check: no assembled collection in $src (make collection)" >&2; exit 1; }

echo "ansible-lint (production profile) on the collection"
(cd "$src" && ANSIBLE_COLLECTIONS_PATH=$top/build/collection PATH=$venv/bin:$PATH \
  ansible-lint --offline --nocolor -c .ansible-lint)

py=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
core=$("$venv/bin/python" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')
reqs=$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py
pip=$(grep -oP "pip='\K[0-9.]+" "$reqs" | head -1)
home=$top/build/ansible-test-home
mkdir -p "$home/.ansible/test/cache"
cp "$top/collection/get_pip_offline.py" "$home/.ansible/test/cache/get_pip_${pip//./_}.py"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ansible_collections/etcdops"
cp -a "$src" "$work/ansible_collections/etcdops/etcd"
coll=$work/ansible_collections/etcdops/etcd
mkdir -p "$coll/tests/sanity"
for f in "$coll"/plugins/modules/*; do
  case $f in *.yml) continue ;; esac
  m=plugins/modules/$(basename "$f")
  printf '%s\n' "$m shebang" "$m validate-modules:invalid-extension" \
    "$m validate-modules:missing-gplv3-license" "$m.yml validate-modules:missing-gplv3-license"
done >"$coll/tests/sanity/ignore-$core.txt"
echo "ansible-test sanity (ansible-core $core, Python $py) on the collection"
(cd "$coll" && HOME=$home "$venv/bin/ansible-test" sanity --python "$py" --color no 2>&1) |
  { grep -v -e '^WARNING: Using locale' -e '^Running sanity test' || true; }
