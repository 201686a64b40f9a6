// Command etcd_snapshot is an Ansible module that saves, verifies and
// prunes etcd snapshots (see internal/snapshot).
package main

import (
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func main() {
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	etcdconn.Silence()
	modrun.Main(snapshot.ModuleSpec, snapshot.RunModule)
}
