#!/usr/bin/env bash
# Installs Versity's S3 gateway (Apache-2.0), the real S3 server the Go
# tests run on loopback, once into a cache, and prints the binary's path.
set -euo pipefail
VERSION=${VERSITYGW_VERSION:-v1.8.0}
DIR=${VERSITYGW_CACHE:-/var/cache/etcd-lab/versitygw-$VERSION}
BIN=$DIR/versitygw
if [ ! -x "$BIN" ]; then
  mkdir -p "$DIR"
  GOBIN=$DIR CGO_ENABLED=0 go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
fi
echo "$BIN"
