// Package etcdfacts is the etcd_facts module: it finds out how etcd runs on
// the host it runs on, whoever deployed it. Its options and handler live in
// internal/discover.
package etcdfacts

import (
	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is etcd_facts, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_facts", Spec: discover.ModuleSpec, Handler: discover.RunModule}
