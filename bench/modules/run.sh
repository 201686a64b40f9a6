#!/usr/bin/env bash
# Benchmark of running our modules through Ansible, in the lab (`make bench`).
#
# Per round, on the first 3 hosts of [etcd], 10 tasks each of:
#   etcdctl  `command: etcdctl member list -w json` (the baseline)
#   cold     etcd_member state=info through the action plugin, cache cleared
#   warm     the same again, cache filled
#   plain    etcd_member as a plain binary module (no action plugin)
# and reports each way's tasks wall time as a ratio to the baseline measured
# in the same round (min / median / max over the rounds), plus the peak RSS
# of the controller (ansible-playbook and its workers). Not a timed test:
# it prints figures, and exits non-zero only when a run fails.
#
# env: ROUNDS (default 5), TASKS (10), ANSIBLE_PLAYBOOK (ansible-playbook),
#      BENCH_OUT (build/bench-modules.txt)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
rounds=${ROUNDS:-5}
tasks=${TASKS:-10}
playbook=${ANSIBLE_PLAYBOOK:-ansible-playbook}
out=${BENCH_OUT:-$top/build/bench-modules.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tls='ca_cert: /etc/etcd/ssl/ca.pem
        client_cert: /etc/etcd/ssl/client.pem
        client_key: /etc/etcd/ssl/client-key.pem'
write_play() { # name, task body generator
  {
    echo "---"
    echo "- name: Benchmark $1"
    echo "  hosts: etcd[0:2]"
    echo "  gather_facts: false"
    echo "  tasks:"
    for i in $(seq "$tasks"); do "$2" "$i"; done
  } >"$work/$1.yml"
}
etcdctl_task() {
  cat <<EOF
    - name: Read the member list with etcdctl ($1)
      ansible.builtin.command: >-
        /usr/local/bin/etcdctl member list -w json --endpoints=https://{{ ansible_host | default(inventory_hostname) }}:2379
        --cacert=/etc/etcd/ssl/ca.pem --cert=/etc/etcd/ssl/client.pem --key=/etc/etcd/ssl/client-key.pem
      changed_when: false
EOF
}
member_task() {
  cat <<EOF
    - name: Read the member list with etcd_member ($1)
      etcd_member:
        state: info
        endpoints: ["https://{{ ansible_host | default(inventory_hostname) }}:2379"]
        $tls
EOF
}
write_play etcdctl etcdctl_task
write_play member member_task

export ANSIBLE_CALLBACK_PLUGINS=$top/bench/modules/callback_plugins
export ANSIBLE_CALLBACKS_ENABLED=bench_timer

# run WAY PLAYBOOK [env...]: one ansible-playbook run; appends
# "way tasks_seconds total_seconds peak_rss_kib" to $work/results.
run() {
  local way=$1 play=$2
  shift 2
  local t0 t1
  t0=$(date +%s.%N)
  if ! env "$@" BENCH_TIMER_OUT="$work/timer.json" /usr/bin/time -o "$work/rss" -f %M \
    "$playbook" "$work/$play.yml" >"$work/log" 2>&1; then
    cat "$work/log" >&2
    echo "bench: the $way run failed" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  python3 - "$way" "$work/timer.json" "$t0" "$t1" "$(tail -1 "$work/rss")" >>"$work/results" <<'EOF'
import json, sys
way, timer, t0, t1, rss = sys.argv[1:]
d = json.load(open(timer))
if d['failed']:
    sys.exit('bench: %s had %d failed tasks' % (way, d['failed']))
print(way, '%.3f' % d['tasks_seconds'], '%.3f' % (float(t1) - float(t0)), rss)
EOF
}
clear_cache() {
  ansible 'etcd[0:2]' -m ansible.builtin.file -a 'path=/root/.cache/etcdops state=absent' >/dev/null
}

echo "bench: $rounds rounds of $tasks tasks x 3 hosts ($("$playbook" --version | head -1))" >&2
run warmup member # warms SSH control masters and the controller's hash memo
for r in $(seq "$rounds"); do
  run etcdctl etcdctl
  clear_cache
  run cold member
  run warm member
  run plain member ANSIBLE_ACTION_PLUGINS="$work/none"
  echo "bench: round $r done" >&2
done

python3 - "$work/results" "$rounds" "$tasks" <<'EOF' | tee "$out"
import statistics, sys
path, rounds, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [l.split() for l in open(path)]
by = {}
for way, tasks_s, total_s, rss in rows:
    if way != 'warmup':
        by.setdefault(way, []).append((float(tasks_s), float(total_s), int(rss)))
base = by['etcdctl']
def stats(xs):
    return '%.2f / %.2f / %.2f' % (min(xs), statistics.median(xs), max(xs))
print('Module execution benchmark: %d rounds, %d tasks x 3 lab hosts each' % (rounds, tasks))
print('ratios to `command: etcdctl member list -w json` in the same round (min / median / max)')
print()
print('%-8s %-22s %-22s %-18s %s' % ('way', 'tasks time ratio', 'playbook time ratio', 'tasks seconds', 'controller peak RSS MiB'))
for way in ('etcdctl', 'cold', 'warm', 'plain'):
    runs = by[way]
    tr = [r[0] / b[0] for r, b in zip(runs, base)]
    pr = [r[1] / b[1] for r, b in zip(runs, base)]
    print('%-8s %-22s %-22s %-18s %s' % (way, stats(tr), stats(pr), stats([r[0] for r in runs]),
                                           stats([r[2] / 1024 for r in runs])))
print()
print('targets: warm <= 0.5, cold <= 1.5 (tasks time ratio, median)')
EOF
