// Package etcdcert is the etcd_cert module, run on the deploy node: it keeps
// an etcd cluster's certificates in a directory, creating the cluster CA
// once and issuing one member or client certificate per task. Its options
// and handler live in internal/pki.
package etcdcert

import (
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
)

// Module is etcd_cert, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_cert", Spec: pki.ModuleSpec, Handler: pki.RunModule}
