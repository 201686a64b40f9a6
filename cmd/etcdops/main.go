// Command etcdops is every module of this project in one binary. The
// action plugins upload it once per host and run it for each task; it picks
// the module from the _ansible_module_name Ansible sends with the args.
package main

import (
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/registry"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func main() {
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	etcdconn.Silence()
	modrun.MainMulti(registry.Modules())
}
