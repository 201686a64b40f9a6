//go:build lab

package lab

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const recoverPlaybook = "playbooks/tools/recover_etcd.yml"

// TestRecoverLostQuorum: 5 members of this project's layout with keys. The
// recovery playbook refuses on a healthy cluster and with 1 of 5 powered
// off (4 are a quorum); with 3 of 5 off it shows the plan in check mode,
// changing nothing, then recovers from a survivor, which keeps every key,
// and brings the other survivor back; the 3 machines are powered on again
// (their etcd starts with the old data) and a second run brings them back
// as members. Then: 5 voting members, one cluster ID, one leader, every
// key on each, and a third run refuses, changing nothing.
func TestRecoverLostQuorum(t *testing.T) {
	l := NewLab(t, 5, 5)
	h := l.Hosts
	backups := filepath.Join(t.TempDir(), "backup")
	bk := "etcd_backup_dir=" + backups
	l.MustPlaybook("playbooks/02.etcd.yml", bk)
	l.PutKeys(h[0], "keep/", 0, 500)

	refused := func(why string, extra ...string) {
		t.Helper()
		r := l.Playbook(recoverPlaybook, append([]string{bk}, extra...)...)
		if !r.Failed() || !strings.Contains(r.Output, "a quorum answers") || r.Changed() != 0 {
			t.Fatalf("%s: not refused cleanly (changed=%d)\n%s", why, r.Changed(), tail(r.Output, 40))
		}
	}
	refused("healthy cluster")
	refused("healthy cluster, check mode", "--check")

	l.Machine("stop", h[4])
	refused("4 of 5 running")

	l.Machine("stop", h[3])
	l.Machine("stop", h[2])
	survivors := h[:2]
	r := l.MustPlaybook(recoverPlaybook, bk, "--check")
	t.Logf("the plan:\n%s", planShown(r.Output))
	if r.Changed() != 0 || !strings.Contains(r.Output, "no quorum: 2 of 5 voting members answer") {
		t.Fatalf("check mode: changed %d, or no plan shown\n%s", r.Changed(), tail(r.Output, 40))
	}
	for _, s := range survivors {
		if out, _ := l.SSH(s, "systemctl is-active etcd; ls -d /var/lib/etcd.recovered-* 2>/dev/null"); strings.TrimSpace(out) != "active" {
			t.Fatalf("check mode changed %s: %s", s, out)
		}
	}

	r = l.MustPlaybook(recoverPlaybook, bk)
	t.Logf("recovery from 2 of 5 survivors: %s", r.Duration.Round(time.Second))
	for _, off := range h[2:] {
		if !strings.Contains(r.Output, off) || !strings.Contains(r.Output, "left out") {
			t.Fatalf("the recovery does not name %s as left out\n%s", off, tail(r.Output, 30))
		}
	}
	l.ExpectVoterCount(h[0], 2)
	for _, s := range survivors {
		if got := l.Count(s, "keep/"); got != 500 {
			t.Fatalf("%s holds %d of the 500 keys after the recovery", s, got)
		}
	}
	copies, _ := filepath.Glob(filepath.Join(backups, "recover_*.db"))
	if len(copies) != 1 {
		t.Fatalf("copies of the chosen member's database on the deploy node: %v", copies)
	}
	aside := 0
	for _, s := range survivors {
		if out, err := l.SSH(s, "ls -d /var/lib/etcd.recovered-*"); err == nil && strings.Contains(out, "recovered-") {
			aside++
		}
	}
	if aside != 1 {
		t.Fatalf("%d survivors had their data moved aside, want 1 (the one not recovered from)", aside)
	}
	l.PutKeys(h[1], "after/", 0, 100)

	for _, off := range h[2:] {
		l.Machine("start", off)
	}
	r = l.MustPlaybook(recoverPlaybook, bk)
	t.Logf("the plan:\n%s", planShown(r.Output))
	t.Logf("bringing back 3 powered-on members: %s", r.Duration.Round(time.Second))
	l.ExpectVoterCount(h[0], 5)
	expectOneCluster(t, l, h[0], 5)
	for _, m := range h {
		if got := l.Count(m, "keep/") + l.Count(m, "after/"); got != 600 {
			t.Fatalf("%s holds %d of the 600 keys", m, got)
		}
	}
	refused("recovered cluster")
}

// expectOneCluster checks, from every member's own status, that n members
// answer with one cluster ID and agree on one leader.
func expectOneCluster(t *testing.T, l *Lab, host string, n int) {
	t.Helper()
	out := l.MustSSH(host, "etcdctl endpoint status --cluster -w json")
	var sts []struct {
		Status struct {
			Header struct {
				ClusterID uint64 `json:"cluster_id"`
			} `json:"header"`
			Leader uint64 `json:"leader"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("endpoint status: %v\n%s", err, out)
	}
	var clusters, leaders []uint64
	for _, s := range sts {
		clusters = append(clusters, s.Status.Header.ClusterID)
		leaders = append(leaders, s.Status.Leader)
	}
	slices.Sort(clusters)
	slices.Sort(leaders)
	if len(sts) != n || len(slices.Compact(clusters)) != 1 || len(slices.Compact(leaders)) != 1 || leaders[0] == 0 {
		t.Fatalf("want %d members of one cluster with one leader: %s", n, out)
	}
}

// TestRecoverKubeasz: a 3-member cluster laid out as kubeasz 3.7 deploys
// it (every setting a flag in the unit, the shared certificate), run from
// kubeasz's own inventory. With 2 of 3 powered off the playbook recovers
// from the survivor named with etcd_recover_from; once the 2 machines run
// again a second run brings them back, their units rewritten to join the
// existing cluster, and every key is on every member.
func TestRecoverKubeasz(t *testing.T) {
	l := NewLab(t, 3, 0)
	h := l.Hosts
	k := DeployKubeasz(t, l, "3.7", h)
	k.PutKeys(h[0], "keep/", 0, 300)
	run := func(extra ...string) Run {
		t.Helper()
		r := k.RunPlaybook(recoverPlaybook, extra...)
		if r.Failed() {
			t.Fatalf("%s %v failed\n%s", recoverPlaybook, extra, tail(r.Output, 60))
		}
		return r
	}
	if r := k.RunPlaybook(recoverPlaybook); !r.Failed() || !strings.Contains(r.Output, "a quorum answers") || r.Changed() != 0 {
		t.Fatalf("healthy kubeasz cluster: not refused cleanly\n%s", tail(r.Output, 30))
	}

	l.Machine("stop", h[1])
	l.Machine("stop", h[2])
	r := run("etcd_recover_from=" + h[0])
	t.Logf("kubeasz recovery from 1 of 3 survivors: %s", r.Duration.Round(time.Second))
	if got := k.Count(h[0], "keep/"); got != 300 {
		t.Fatalf("the survivor holds %d of the 300 keys", got)
	}
	if ms := k.Members(h[0]); len(ms) != 1 {
		t.Fatalf("after the recovery: %+v, want the survivor alone", ms)
	}
	copies, _ := filepath.Glob(filepath.Join(k.BackupDir, "recover_*.db"))
	if len(copies) != 1 {
		t.Fatalf("copies of the survivor's database in kubeasz's backup directory: %v", copies)
	}
	k.PutKeys(h[0], "after/", 0, 100)

	l.Machine("start", h[1])
	l.Machine("start", h[2])
	r = run()
	t.Logf("the plan:\n%s", planShown(r.Output))
	t.Logf("kubeasz: bringing back 2 powered-on members: %s", r.Duration.Round(time.Second))
	expectKubeaszVoters(t, k, h[0], []string{"etcd-" + h[0], "etcd-" + h[1], "etcd-" + h[2]})
	for _, m := range h {
		if got := k.Count(m, "keep/") + k.Count(m, "after/"); got != 400 {
			t.Fatalf("%s holds %d of the 400 keys", m, got)
		}
		if unit := k.MustExec(m, "cat", "/etc/systemd/system/etcd.service"); m != h[0] && !strings.Contains(unit, "--initial-cluster-state=existing") {
			t.Fatalf("%s's unit does not join the existing cluster:\n%s", m, unit)
		}
	}
	if r := k.RunPlaybook(recoverPlaybook); !r.Failed() || !strings.Contains(r.Output, "a quorum answers") || r.Changed() != 0 {
		t.Fatalf("recovered kubeasz cluster: not refused cleanly\n%s", tail(r.Output, 30))
	}
}

// planShown is what the playbook's "Show the plan" task printed.
func planShown(out string) string {
	_, after, ok := strings.Cut(out, "TASK [Show the plan")
	if !ok {
		return "(no plan shown)"
	}
	shown, _, _ := strings.Cut(after, "TASK [")
	return shown
}
