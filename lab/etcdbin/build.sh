#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl from etcd's published Go modules (the
# Go module proxy is the only source this needs) into a cached directory,
# then links them into the project's bin/ directory, where the etcd role
# copies them from (as kubeasz does with its bin/).
#
# usage: lab/etcdbin/build.sh [VERSION] [GOARCH]
# VERSION defaults to the one pinned in lab/etcdbin/go.mod; another version
# is built from a copy of this directory with its go.mod moved to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
pinned=$(awk '$1=="go.etcd.io/etcd/server/v3"{print substr($2,2)}' "$here/go.mod")
version=${1:-${ETCD_VERSION:-$pinned}}
arch=${2:-${ETCD_ARCH:-amd64}}
cache=${ETCD_CACHE:-/var/cache/etcd-lab}/etcd-v$version-linux-$arch
# The recipe's hash keys the cache, so editing a main package rebuilds.
recipe=$(cat "$here"/*/main.go "$here/build.sh" | sha256sum | cut -c1-12)

case $version in
  # etcd 3.4's Go module (go.etcd.io/etcd, no /v3 suffix) cannot be built
  # through the module proxy; Debian bookworm packages 3.4.23, so the 3.4
  # binaries come from there (etcd and etcdctl: 3.4 has no etcdutl).
  3.4.*)
    if [ ! -x "$cache/etcdctl" ]; then
      deb=$(mktemp -d) && chmod 755 "$deb"  # apt downloads as the _apt user
      trap 'rm -rf "$deb"' EXIT
      (cd "$deb" && apt-get download -q "etcd-server=$version*" "etcd-client=$version*" >&2) ||
        { echo "etcd $version: Debian has $(apt-cache policy etcd-server | awk '/Candidate/{print $2}')" >&2; exit 1; }
      for f in "$deb"/*.deb; do dpkg-deb -x "$f" "$deb/root"; done
      mkdir -p "$cache.tmp" && cp "$deb/root/usr/bin/etcd" "$deb/root/usr/bin/etcdctl" "$cache.tmp/"
      rm -rf "$cache" && mv "$cache.tmp" "$cache"
    fi
    echo "$cache"
    exit 0 ;;
esac

if [ ! -x "$cache/etcdutl" ] || [ "$(cat "$cache/.recipe" 2>/dev/null)" != "$recipe" ]; then
  echo "building etcd $version for linux/$arch (cached in $cache)" >&2
  src=$here
  if [ "$version" != "$pinned" ]; then
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    cp -r "$here"/etcd "$here"/etcdctl "$here"/etcdutl "$here"/go.mod "$here"/go.sum "$src"/
    case $version in
      # etcdutl gained hashkv and migrate in 3.6.
      3.5.*) sed -i '/NewHashKVCommand\|NewMigrateCommand/d' "$src"/etcdutl/main.go ;;
    esac
    # Every etcd module moves together, or a newer pkg/v3 meets an older
    # server/v3 and the build fails.
    mods=()
    for m in api client/pkg client pkg server etcdctl etcdutl; do
      mods+=("go.etcd.io/etcd/$m/v3@v$version")
    done
    (cd "$src" && go get "${mods[@]}" >&2 && go mod tidy >&2)
  fi
  tmp=$cache.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "$tmp"/ ./etcd ./etcdctl ./etcdutl)
  echo "$recipe" > "$tmp/.recipe"
  rm -rf "$cache" && mv "$tmp" "$cache"
fi
# Only the pinned version goes into bin/ by default; the version matrix
# points the role at the other versions' cache directories instead.
if [ "$arch" = amd64 ] && { [ "$version" = "$pinned" ] || [ -n "${ETCD_LINK:-}" ]; } && [ -z "${ETCD_NO_LINK:-}" ]; then
  mkdir -p "$top/bin"
  for b in etcd etcdctl etcdutl; do ln -sfn "$cache/$b" "$top/bin/$b"; done
  echo "$version" > "$top/bin/etcd.version"
fi
echo "$cache"
