// Package etcdmaintenance is the etcd_maintenance module: it reports the
// members' database sizes, alarms and versions, defragments them one at a
// time (followers first, the leader last) and plans rolling upgrades. Its
// options and handler live in internal/maint.
package etcdmaintenance

import (
	"github.com/etcdops/etcdops/internal/maint"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is etcd_maintenance, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_maintenance", Spec: maint.ModuleSpec, Handler: maint.RunModule}
