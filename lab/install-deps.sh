#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian bookworm machine: the
# lab's tools (debootstrap, systemd-nspawn, iproute2, ssh) and Ansible.
# Does nothing when all is there already.
set -euo pipefail
packages=(debootstrap systemd-container iproute2 openssh-client ansible-core python3-venv time)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v go >/dev/null || { echo "deps: Go is required (https://go.dev/dl/), go 1.26 or newer" >&2; exit 1; }
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
