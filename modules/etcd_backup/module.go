// Package etcdbackup is the etcd_backup module: it reports how old the
// newest scheduled backup is, lists the snapshots in the bucket and fetches
// one back. Its options and handler live in internal/backup.
package etcdbackup

import (
	"github.com/etcdops/etcdops/internal/backup"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is etcd_backup, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_backup", Spec: backup.ModuleSpec, Handler: backup.RunModule}
