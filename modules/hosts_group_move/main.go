// Command hosts_group_move is an Ansible module that moves a host between
// groups of an INI inventory, or removes it from a group, leaving every
// other byte of the file unchanged (see internal/inventory).
package main

import (
	"github.com/etcdops/etcdops/internal/inventory"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func main() {
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	modrun.Main(inventory.ModuleSpec, inventory.RunModule)
}
