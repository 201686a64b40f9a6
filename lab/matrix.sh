#!/usr/bin/env bash
# The version matrix (`make matrix`): the short lab scenario
# (tests/lab TestShortWorkflow) with each ansible-core (Debian bookworm's
# 2.14, 2.19 in .venv-2.19 and the newest from PyPI in .venv; `make venv`)
# and each etcd (3.4, the oldest with learners, 3.5 and 3.6). Prints one
# line per pair and writes them to build/matrix.txt. Then the rolling
# upgrade 3.4 -> 3.5 -> 3.6 with a client writing all along (tests/lab
# TestUpgradeEtcd with LAB_UPGRADE_MATRIX=1).
#
# env: MATRIX_ETCD (versions), MATRIX_ANSIBLE (ansible-playbook paths)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
etcds=${MATRIX_ETCD:-3.4.23 3.5.35 $(cat bin/etcd.version)}
ansibles=${MATRIX_ANSIBLE:-/usr/bin/ansible-playbook $top/.venv-2.19/bin/ansible-playbook $top/.venv/bin/ansible-playbook}
out=build/matrix.txt
mkdir -p build
echo "version matrix, $(date -u +%FT%TZ)" >"$out.new"
failed=0
for e in $etcds; do
  src=$(bash lab/etcdbin/build.sh "$e") || { echo "etcd $e: build failed" | tee -a "$out.new"; failed=1; continue; }
  for a in $ansibles; do
    # sed reads all of it: with head, ansible-core 2.21 dies of a broken
    # pipe writing the lines after the first.
    av=$("$a" --version | sed -n '1s/.*core \(.*\)\]/\1/p')
    start=$SECONDS
    if LAB_SHORT=1 ANSIBLE_PLAYBOOK=$a ETCD_BIN_SRC=$src ETCD_BIN_DIR=$top/bin ETCD_VERSION_EXPECTED=$e \
        go test -count=1 -tags lab -timeout 20m -v -run TestShortWorkflow ./tests/lab/ >"build/matrix-$e-$av.log" 2>&1; then
      r=pass
    else
      r="FAIL (build/matrix-$e-$av.log)"; failed=1
    fi
    echo "ansible-core $av + etcd $e: $r in $((SECONDS - start)) s" | tee -a "$out.new"
  done
done
start=$SECONDS
if LAB_UPGRADE_MATRIX=1 ANSIBLE_PLAYBOOK=$top/.venv/bin/ansible-playbook ETCD_BIN_DIR=$top/bin \
    go test -count=1 -tags lab -timeout 30m -v -run 'TestUpgradeEtcd$' ./tests/lab/ >build/matrix-upgrade.log 2>&1; then
  r=pass
else
  r="FAIL (build/matrix-upgrade.log)"; failed=1
fi
echo "rolling upgrade 3.4.23 -> 3.5.35 -> 3.6.16 with a writer: $r in $((SECONDS - start)) s" | tee -a "$out.new"
mv "$out.new" "$out"
exit $failed
