// Command etcd_facts is an Ansible module that finds out how etcd runs on
// the host it runs on (see internal/discover).
package main

import (
	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

func main() {
	etcdconn.Silence()
	modrun.Main(discover.ModuleSpec, discover.RunModule)
}
