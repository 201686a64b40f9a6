//go:build lab

package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShortWorkflow is the version matrix's scenario (make matrix runs it
// for each ansible-core and etcd version): deploy 3 members, write keys,
// add a 4th, remove the leader, back up, write more, restore. The add runs
// twice (the second changes nothing). TestOperatorWorkflow is the full one.
func TestShortWorkflow(t *testing.T) {
	if os.Getenv("LAB_SHORT") == "" {
		t.Skip("set LAB_SHORT=1 (make matrix does) to run the short scenario")
	}
	l := NewLab(t, 4, 3)
	backups := filepath.Join(t.TempDir(), "backup")
	bk := "etcd_backup_dir=" + backups
	h1, h4 := l.Hosts[0], l.Hosts[3]

	l.MustPlaybook("playbooks/02.etcd.yml", bk)
	if want := os.Getenv("ETCD_VERSION_EXPECTED"); want != "" {
		if got := l.MustSSH(h1, "etcd --version"); !strings.Contains(got, "etcd Version: "+want+"\n") {
			t.Fatalf("the members run %q, want etcd %s", got, want)
		}
	}
	l.PutKeys(h1, "snap/", 0, 300)

	l.MoveHost(h4, "lab_spare", "new-etcd")
	l.MustPlaybook("playbooks/19.addetcd.yml", bk)
	if r := l.MustPlaybook("playbooks/19.addetcd.yml", bk); r.Changed() != 0 {
		t.Fatalf("second add changed %d tasks\n%s", r.Changed(), changedTasks(r.Output))
	}
	l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3", "etcd-"+h4)
	if got := l.Count(h4, "snap/"); got != 300 {
		t.Fatalf("the new member holds %d of the 300 keys", got)
	}

	leader := l.LeaderIP(h1)
	l.MustPlaybook("playbooks/tools/remove_etcd_node.yml", bk, "ETCD_TO_DEL="+leader)
	rest := without(l.Hosts, leader)
	l.ExpectVoterCount(rest[0], 3)
	l.ExpectGroup("etcd", rest...)

	l.MustPlaybook("playbooks/23.backup.yml", bk)
	l.PutKeys(rest[0], "after/", 0, 100)
	l.MustPlaybook("playbooks/24.restore.yml", bk)
	for _, h := range rest {
		if got, after := l.Count(h, "snap/"), l.Count(h, "after/"); got != 300 || after != 0 {
			t.Fatalf("%s holds %d of the 300 keys and %d written after the backup", h, got, after)
		}
	}
	l.ExpectVoterCount(rest[0], 3)
}
