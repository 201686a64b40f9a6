#!/usr/bin/env bash
# Builds the lab machines' root filesystem: Debian bookworm with systemd,
# sshd and python3, made by debootstrap and cached under $LAB_CACHE keyed by
# the hash of this file, so that editing the recipe rebuilds it and nothing
# else does. Prints the rootfs path.
set -euo pipefail
cache=${LAB_CACHE:-/var/cache/etcd-lab}
suite=bookworm
mirror=${LAB_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,python3,iproute2,ca-certificates,procps,sudo,less
recipe=$(sha256sum "$0" | cut -c1-12)
rootfs=$cache/rootfs-$suite-$recipe

if [ -f "$rootfs/.complete" ]; then
  echo "$rootfs"
  exit 0
fi
mkdir -p "$cache"
tmp=$rootfs.tmp
rm -rf "$tmp"
echo "lab: building $suite root filesystem (debootstrap, about a minute)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
  echo "lab: debootstrap failed; see $cache/debootstrap.log" >&2
  tail -5 "$cache/debootstrap.log" >&2
  exit 1
}

# Network: systemd-networkd configures host0 from a per-machine file that
# lab.sh writes as 10-host0.network, which sorts before the image's
# 80-container-host0.network (DHCP) so the static address wins.
chroot "$tmp" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Services a container has no use for; fewer units, faster boot.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  chroot "$tmp" systemctl disable "$unit" >/dev/null 2>&1 || true
done
chroot "$tmp" systemctl mask systemd-timesyncd.service getty@tty1.service >/dev/null 2>&1 || true

# sshd: every machine makes its own host keys at first boot; only key
# authentication for root.
rm -f "$tmp"/etc/ssh/ssh_host_*
mkdir -p "$tmp/etc/systemd/system/ssh.service.d"
cat >"$tmp/etc/systemd/system/ssh.service.d/10-hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
cat >"$tmp/etc/ssh/sshd_config.d/10-lab.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
CONF
mkdir -p "$tmp/root/.ssh" && chmod 700 "$tmp/root/.ssh"
: >"$tmp/etc/machine-id"
echo "LANG=C.UTF-8" >"$tmp/etc/default/locale"
chroot "$tmp" apt-get clean >/dev/null 2>&1 || true

touch "$tmp/.complete"
rm -rf "$rootfs"
mv "$tmp" "$rootfs"
# Older rootfs builds are replaced, not kept.
for old in "$cache"/rootfs-$suite-*; do
  [ "$old" = "$rootfs" ] || rm -rf "$old"
done
echo "$rootfs"
