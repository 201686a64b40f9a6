// Command etcd is the etcd server, built from etcd's published Go module at
// the version pinned in this directory's go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
