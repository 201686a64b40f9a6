// Command etcd_cert is an Ansible module, run on the deploy node, that keeps
// an etcd cluster's certificates in a directory: it creates the cluster CA
// once and issues one member or client certificate (see internal/pki).
package main

import (
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func main() {
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	modrun.Main(pki.ModuleSpec, pki.RunModule)
}
