#!/usr/bin/env bash
# The lab: N real Debian machines on this one machine, each a systemd-nspawn
# container booted with systemd as PID 1, with its own IPv4 address on a
# bridge the lab creates, sshd with a key the lab generates, and python3.
# Ansible reaches them over SSH exactly as it reaches an operator's hosts.
#
# usage: lab/lab.sh up [N]        bring up N machines (default 4), write the inventory
#        lab/lab.sh down          stop every machine, remove bridge, mounts, state
#        lab/lab.sh status        list machines and whether they run
#        lab/lab.sh stop NAME     power one machine off (its disk is kept)
#        lab/lab.sh start NAME    power it on again
#        lab/lab.sh exec NAME CMD run a command inside a machine (no SSH)
#
# Environment: LAB_STATE (default /var/lib/etcd-lab), LAB_CACHE (rootfs
# cache), LAB_SUBNET (first three octets, default 10.77.0), LAB_BRIDGE,
# LAB_INVENTORY (default <repo>/inventory/hosts), LAB_ETCD (machines put in
# [etcd], default 3), LAB_PREFIX (machine names, default lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
state=${LAB_STATE:-/var/lib/etcd-lab}
subnet=${LAB_SUBNET:-10.77.0}
bridge=${LAB_BRIDGE:-etcdlab0}
inventory=${LAB_INVENTORY:-$top/inventory/hosts}
etcd_count=${LAB_ETCD:-3}
# Machine names are PREFIX1..PREFIXN; another lab beside this one needs its
# own prefix, state directory, bridge and subnet.
prefix=${LAB_PREFIX:-lab}

log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "the lab needs root (systemd-nspawn, bridges, mounts)"

machine_ip() { echo "$subnet.$((10 + ${1#"$prefix"}))"; }

# nspawn_pid NAME: the systemd-nspawn process of a machine, if running.
nspawn_pid() {
  local f=$state/machines/$1/nspawn.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd-nspawn ] || return 1
  echo "$pid"
}

# leader_pid NAME: PID 1 of the machine (the container's systemd).
leader_pid() {
  local p
  p=$(nspawn_pid "$1") || return 1
  pgrep -P "$p" | head -1
}

in_machine() {
  local name=$1; shift
  local pid
  pid=$(leader_pid "$name") || die "$name is not running"
  nsenter -t "$pid" -a "$@"
}

machines() {
  [ -d "$state/machines" ] || return 0
  find "$state/machines" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V
}

start_machine() {
  local name=$1 dir=$state/machines/$1
  nspawn_pid "$name" >/dev/null && return 0
  mountpoint -q "$dir/root" || mount -t overlay overlay \
    -o "lowerdir=$(cat "$state/rootfs"),upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
  setsid systemd-nspawn -D "$dir/root" --boot --register=no --keep-unit \
    --network-bridge="$bridge" -M "$name" --hostname="$name" --console=passive \
    >"$dir/console.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/nspawn.pid"
  # Until the forked shell has exec'd systemd-nspawn, nspawn_pid does not
  # know it (its comm is still bash or setsid), and wait_booted would take
  # a machine still starting for one that exited: wait for the exec.
  for _ in $(seq 1 100); do
    nspawn_pid "$name" >/dev/null || ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.05
  done
}

wait_booted() {
  local name=$1 deadline=$((SECONDS + 90)) st
  while [ $SECONDS -lt $deadline ]; do
    if pid=$(leader_pid "$name" 2>/dev/null); then
      st=$(nsenter -t "$pid" -a systemctl is-system-running 2>/dev/null || true)
      case $st in
        running) return 0 ;;
        degraded)
          log "$name booted degraded: $(nsenter -t "$pid" -a systemctl --failed --no-legend --plain | awk '{print $1}' | xargs)"
          return 0 ;;
      esac
    elif ! nspawn_pid "$name" >/dev/null; then
      tail -5 "$state/machines/$name/console.log" >&2
      die "$name exited while booting"
    fi
    sleep 0.3
  done
  die "$name did not finish booting in 90s"
}

stop_machine() {
  local name=$1 dir=$state/machines/$1 pid
  if pid=$(nspawn_pid "$name"); then
    # SIGTERM asks nspawn for an orderly shutdown of the container's systemd.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/nspawn.pid"
  if mountpoint -q "$dir/root" 2>/dev/null; then umount "$dir/root" || umount -l "$dir/root"; fi
}

down() {
  local name
  for name in $(machines); do stop_machine "$name"; done
  # Anything left by an interrupted run: nspawn processes on our state
  # directory, overlay mounts below it, the bridge and its veths.
  pkill -TERM -f "systemd-nspawn -D $state/machines/" 2>/dev/null || true
  sleep 0.2
  pkill -KILL -f "systemd-nspawn -D $state/machines/" 2>/dev/null || true
  awk -v p="$state/machines/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^vb-$prefix" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  rm -rf "$state/machines" "$state/rootfs"
}

up() {
  local n=${1:-4} rootfs i name dir ip
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "N must be 1..9, got '$n'"
  for cmd in debootstrap systemd-nspawn nsenter ip ssh-keygen ansible; do
    command -v "$cmd" >/dev/null || die "$cmd is missing: run 'make deps' first"
  done
  # Each machine's systemd, journald and logind hold inotify instances, all
  # counted against root on the host; the kernel's default of 128 runs out
  # before nine machines have booted.
  if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
    sysctl -qw fs.inotify.max_user_instances=1024
  fi
  down
  rootfs=$("$here/rootfs.sh")
  mkdir -p "$state/machines" "$state/ssh"
  echo "$rootfs" >"$state/rootfs"
  if [ ! -f "$state/ssh/id_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C etcd-lab -f "$state/ssh/id_ed25519"
  fi

  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up

  for i in $(seq 1 "$n"); do
    name=$prefix$i dir=$state/machines/$prefix$i ip=$(machine_ip "$prefix$i")
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    mkdir -p "$dir/root/etc/systemd/network" "$dir/root/root/.ssh"
    printf '[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' "$ip" \
      >"$dir/root/etc/systemd/network/10-host0.network"
    echo "$name" >"$dir/root/etc/hostname"
    printf '127.0.0.1 localhost\n%s %s\n' "$ip" "$name" >"$dir/root/etc/hosts"
    install -m 600 "$state/ssh/id_ed25519.pub" "$dir/root/root/.ssh/authorized_keys"
    start_machine "$name"
  done
  for i in $(seq 1 "$n"); do wait_booted "$prefix$i"; done
  write_inventory "$n"
  log "waiting for every machine to answer ansible ping"
  local deadline=$((SECONDS + 60))
  until ANSIBLE_CONFIG=$top/ansible.cfg ansible -i "$inventory" all -m ping -o >"$state/ping.log" 2>&1; do
    [ $SECONDS -lt $deadline ] || { cat "$state/ping.log" >&2; die "machines do not answer ansible ping"; }
    sleep 1
  done
  log "$n machines up; inventory: $inventory"
  status
}

write_inventory() {
  local n=$1 i ip tmp
  mkdir -p "$(dirname "$inventory")"
  tmp=$(mktemp "$inventory.XXXXXX")
  {
    echo "# The lab's inventory, in the shape of kubeasz's hosts file; written by lab/lab.sh."
    echo "# 'etcd' 集群节点，按 kubeasz 的格式"
    echo "[etcd]"
    for i in $(seq 1 "$n"); do
      [ "$i" -le "$etcd_count" ] || break
      echo "$(machine_ip "$prefix$i") NODE_NAME=etcd$i"
    done
    echo
    echo "# 预留组，后续添加etcd节点使用"
    echo "[new-etcd]"
    echo
    echo "# Lab machines that are in no etcd group yet: put one in [new-etcd] to add it."
    echo "[lab_spare]"
    for i in $(seq $((etcd_count + 1)) "$n"); do echo "$(machine_ip "$prefix$i")"; done
    echo
    echo "[all:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$state/ssh/id_ed25519"
    echo "# Lab machines make new host keys on every boot."
    echo "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    echo "ansible_python_interpreter=/usr/bin/python3"
  } >"$tmp"
  mv "$tmp" "$inventory"
}

status() {
  local name
  for name in $(machines); do
    if nspawn_pid "$name" >/dev/null; then
      printf '%-6s %-15s running\n' "$name" "$(machine_ip "$name")"
    else
      printf '%-6s %-15s stopped\n' "$name" "$(machine_ip "$name")"
    fi
  done
}

cmd=${1:-}
shift || true
case $cmd in
  up) up "$@" ;;
  down) down; log "down" ;;
  status) status ;;
  stop) [ -n "${1:-}" ] || die "usage: lab.sh stop NAME"; stop_machine "$1" ;;
  start)
    [ -n "${1:-}" ] || die "usage: lab.sh start NAME"
    [ -d "$state/machines/$1" ] || die "no machine $1"
    start_machine "$1"; wait_booted "$1" ;;
  exec) [ -n "${1:-}" ] || die "usage: lab.sh exec NAME CMD..."; name=$1; shift; in_machine "$name" "$@" ;;
  *) sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
