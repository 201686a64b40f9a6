// Package etcdmember is the etcd_member module: it lists, adds, promotes and
// removes etcd members, safely and idempotently. Its options and handler
// live in internal/member.
package etcdmember

import (
	"github.com/etcdops/etcdops/internal/member"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is etcd_member, as the binary serves it.
var Module = modrun.Entry{Name: "etcd_member", Spec: member.ModuleSpec, Handler: member.RunModule}
