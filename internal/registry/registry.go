// Package registry lists every Ansible module this project ships, with its
// argument spec and handler: the multi-call binary serves them from it, and
// the documentation test checks each against its sidecar file.
package registry

import (
	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/inventory"
	"github.com/etcdops/etcdops/internal/member"
	"github.com/etcdops/etcdops/internal/mirror"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
	"github.com/etcdops/etcdops/internal/snapshot"
)

// Modules returns the modules by name.
func Modules() map[string]modrun.Entry {
	return map[string]modrun.Entry{
		"etcd_cert":        {Spec: pki.ModuleSpec, Handler: pki.RunModule},
		"etcd_facts":       {Spec: discover.ModuleSpec, Handler: discover.RunModule},
		"etcd_member":      {Spec: member.ModuleSpec, Handler: member.RunModule},
		"etcd_service":     {Spec: mirror.ModuleSpec, Handler: mirror.RunModule},
		"etcd_snapshot":    {Spec: snapshot.ModuleSpec, Handler: snapshot.RunModule},
		"hosts_group_move": {Spec: inventory.ModuleSpec, Handler: inventory.RunModule},
	}
}
