// Command etcdops is every module of this project in one binary. The action
// plugin uploads it once per host and runs it for each task, naming the
// module in the args (_ansible_module_name); library/<module> is a copy of
// it that Ansible runs as a plain binary module, and then the binary's own
// name says which module it is. Run as `etcdops backup ...` it is the
// command line of the scheduled backup instead (internal/backup).
package main

import (
	"os"

	"github.com/etcdops/etcdops/internal/backup"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapshot"
	etcdbackup "github.com/etcdops/etcdops/modules/etcd_backup"
	etcdcert "github.com/etcdops/etcdops/modules/etcd_cert"
	etcdfacts "github.com/etcdops/etcdops/modules/etcd_facts"
	etcdmaintenance "github.com/etcdops/etcdops/modules/etcd_maintenance"
	etcdmember "github.com/etcdops/etcdops/modules/etcd_member"
	etcdrecovery "github.com/etcdops/etcdops/modules/etcd_recovery"
	etcdservice "github.com/etcdops/etcdops/modules/etcd_service"
	etcdsnapshot "github.com/etcdops/etcdops/modules/etcd_snapshot"
	hostsgroupmove "github.com/etcdops/etcdops/modules/hosts_group_move"
)

// modules lists every module the binary serves; each has its package under
// modules/ and its documentation in library/<name>.yml.
var modules = []modrun.Entry{
	etcdbackup.Module,
	etcdcert.Module,
	etcdfacts.Module,
	etcdmaintenance.Module,
	etcdmember.Module,
	etcdrecovery.Module,
	etcdservice.Module,
	etcdsnapshot.Module,
	hostsgroupmove.Module,
}

func main() {
	// etcd_snapshot runs bbolt's check in a child of this binary, where a
	// crash on a damaged database cannot take the module down.
	if snapshot.RunCheckChildIfAsked() {
		return
	}
	etcdconn.Silence()
	// `etcdops backup ...` is the command line the backup timer runs.
	if len(os.Args) > 1 && os.Args[1] == "backup" {
		os.Exit(backup.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	modrun.Main(modules...)
}
