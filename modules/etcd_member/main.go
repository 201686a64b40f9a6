// Command etcd_member is an Ansible module that lists, adds, promotes and
// removes etcd members, safely and idempotently (see internal/member).
package main

import (
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/member"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func main() {
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	etcdconn.Silence()
	modrun.Main(member.ModuleSpec, member.RunModule)
}
