// Command etcd_service is an Ansible module that sets up a new member's
// etcd service like an existing member's (see internal/mirror).
package main

import (
	"github.com/etcdops/etcdops/internal/mirror"
	"github.com/etcdops/etcdops/internal/modrun"
)

func main() {
	modrun.Main(mirror.ModuleSpec, mirror.RunModule)
}
