// Package etcdservice is the etcd_service module: it sets up a new member's
// etcd service like an existing member's. Its options and handler live in
// internal/mirror.
package etcdservice

import (
	"github.com/etcdops/etcdops/internal/mirror"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is etcd_service, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_service", Spec: mirror.ModuleSpec, Handler: mirror.RunModule}
