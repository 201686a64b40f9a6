#!/usr/bin/env bash
# Builds cfssl and cfssljson, the two tools kubeasz makes its CA and etcd
# certificates with, from the Go module proxy into a cached directory, and
# prints that directory. Run again, it prints the directory and builds
# nothing. The kubeasz fixtures (tests/fixtures/kubeasz) copy both from
# there, as kubeasz copies them from its {{ base_dir }}/bin.
#
# usage: lab/cfssl/build.sh
# Environment: LAB_CACHE (default /var/cache/etcd-lab), CFSSL_VERSION
# (default v1.6.5).
set -euo pipefail
version=${CFSSL_VERSION:-v1.6.5}
cache=${LAB_CACHE:-/var/cache/etcd-lab}/cfssl-$version
tools=(cfssl cfssljson)

built() {
  local t
  for t in "${tools[@]}"; do [ -x "$cache/$t" ] || return 1; done
}

if ! built; then
  echo "building cfssl $version (cached in $cache)" >&2
  mkdir -p "$(dirname "$cache")"
  tmp=$(mktemp -d "$cache.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for t in "${tools[@]}"; do
    # Static binaries: they also run on the lab's machines, whatever libc.
    CGO_ENABLED=0 GOBIN=$tmp go install -trimpath -ldflags "-s -w" \
      "github.com/cloudflare/cfssl/cmd/$t@$version" >&2
  done
  chmod 755 "$tmp"
  # Another run may have finished first; its result is as good as ours.
  if built; then rm -rf "$tmp"; else rm -rf "$cache" && mv "$tmp" "$cache"; fi
  trap - EXIT
fi
echo "$cache"
