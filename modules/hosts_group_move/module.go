// Package hostsgroupmove is the hosts_group_move module: it moves a host
// between groups of an INI inventory, or removes it from a group, leaving
// every other byte of the file unchanged. Its options and handler live in
// internal/inventory.
package hostsgroupmove

import (
	"github.com/etcdops/etcdops/internal/inventory"
	"github.com/etcdops/etcdops/internal/modrun"
)

// Module is hosts_group_move, as the binary serves it.
var Module = modrun.Entry{Name: "hosts_group_move", Spec: inventory.ModuleSpec, Handler: inventory.RunModule}
