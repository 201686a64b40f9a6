// Package etcdsnapshot is the etcd_snapshot module: it saves, verifies and
// prunes etcd snapshots. Its options and handler live in internal/snapshot.
package etcdsnapshot

import (
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapshot"
)

// Module is etcd_snapshot, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_snapshot", Spec: snapshot.ModuleSpec, Handler: snapshot.RunModule}
