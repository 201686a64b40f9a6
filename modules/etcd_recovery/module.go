// Package etcdrecovery is the etcd_recovery module: it reads what each
// member's etcd says about itself and plans the recovery of a cluster that
// lost its quorum. Its options and handler live in internal/recovery.
package etcdrecovery

import (
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/recovery"
)

// Module is etcd_recovery, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_recovery", Spec: recovery.ModuleSpec, Handler: recovery.RunModule}
