//go:build lab

package lab

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOperatorWorkflow is the seed's workflow end to end: deploy 3 members,
// write 1000 keys, add a 4th and a 5th (both put in [new-etcd] at once, one
// added per run; the 5th first fails because its port is taken, is rolled
// back, then succeeds), remove the leader, remove a
// member whose machine is powered off, refuse a removal that would break
// quorum, back up, write more keys, restore, and check the data. Every
// playbook runs twice; the second run changes nothing.
func TestOperatorWorkflow(t *testing.T) {
	l := NewLab(t, 5, 3)
	backups := filepath.Join(t.TempDir(), "backup")
	bk := "etcd_backup_dir=" + backups
	h1, h4, h5 := l.Hosts[0], l.Hosts[3], l.Hosts[4]
	var rest []string // the members left after the removals
	times := map[string][]time.Duration{}
	twice := func(t *testing.T, l *Lab, playbook string, extra ...string) {
		t.Helper()
		first := l.MustPlaybook(playbook, extra...)
		second := l.MustPlaybook(playbook, extra...)
		if second.Changed() != 0 {
			t.Fatalf("%s: second run changed %d tasks\n%s", playbook, second.Changed(), changedTasks(second.Output))
		}
		times[playbook] = append(times[playbook], first.Duration)
	}
	defer func() {
		for pb, ds := range times {
			t.Logf("wall time of %s (first runs): %v", pb, ds)
		}
	}()

	if !step(t, l, "deploy", func(t *testing.T, l *Lab) {
		// Check mode on fresh machines predicts the deployment and starts nothing.
		l.MustPlaybook("playbooks/02.etcd.yml", bk, "--check")
		if out, _ := l.SSH(h1, "systemctl is-active etcd"); strings.TrimSpace(out) == "active" {
			t.Fatal("02.etcd.yml --check started etcd")
		}
		twice(t, l, "playbooks/02.etcd.yml", bk)
		l.PutKeys(h1, "snap/", 0, 1000)
	}) {
		return
	}

	if !step(t, l, "add a 4th member", func(t *testing.T, l *Lab) {
		// Both spare hosts go into [new-etcd], as the seed's operator does:
		// a run adds the first, and the next run the other.
		l.MoveHost(h4, "lab_spare", "new-etcd")
		l.MoveHost(h5, "lab_spare", "new-etcd")
		// First in check mode: the diff shows the inventory edit, nothing changes.
		inv := l.InventoryText()
		r := l.MustPlaybook("playbooks/19.addetcd.yml", bk, "--check", "--diff")
		if !strings.Contains(r.Output, "\n+"+h4+"\n") || l.InventoryText() != inv {
			t.Fatalf("check mode: no diff adding %s to [etcd], or the inventory changed\n%s", h4, tail(r.Output, 60))
		}
		l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3")
		r = l.MustPlaybook("playbooks/19.addetcd.yml", bk)
		times["playbooks/19.addetcd.yml"] = append(times["playbooks/19.addetcd.yml"], r.Duration)
		if !strings.Contains(r.Output, "run the playbook again for the next") {
			t.Fatalf("no word that only the first of two new hosts was added\n%s", tail(r.Output, 40))
		}
		l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3", "etcd-"+h4)
		l.ExpectGroup("etcd", h1, l.Hosts[1], l.Hosts[2], h4)
		l.ExpectGroup("new-etcd", h5)
		if got := l.Count(h4, "snap/"); got != 1000 {
			t.Fatalf("the new member holds %d of the 1000 keys", got)
		}
	}) {
		return
	}

	if !step(t, l, "a 5th whose port is taken is rolled back", func(t *testing.T, l *Lab) {
		l.MustSSH(h5, "systemd-run --unit=porthog python3 -m http.server 2379 --bind "+h5+" && sleep 1")
		before := l.InventoryText()
		r := l.Playbook("playbooks/19.addetcd.yml", bk)
		if !r.Failed() || !strings.Contains(r.Output, "could not join the cluster and was removed again") {
			t.Fatalf("adding a member whose port is taken did not fail with the rollback message\n%s", tail(r.Output, 60))
		}
		if l.InventoryText() != before {
			t.Fatal("a failed add changed the inventory")
		}
		l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3", "etcd-"+h4)
		if out, _ := l.SSH(h5, "systemctl is-active etcd"); strings.TrimSpace(out) == "active" {
			t.Fatal("etcd still runs on the host whose join was rolled back")
		}
	}) {
		return
	}

	if !step(t, l, "the 5th joins once its port is free", func(t *testing.T, l *Lab) {
		l.MustSSH(h5, "systemctl stop porthog")
		twice(t, l, "playbooks/19.addetcd.yml", bk)
		l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3", "etcd-"+h4, "etcd-"+h5)
		l.ExpectGroup("new-etcd")
	}) {
		return
	}

	if !step(t, l, "remove the leader", func(t *testing.T, l *Lab) {
		// First in check mode, which changes nothing.
		leader := l.LeaderIP(h1)
		inv := l.InventoryText()
		l.MustPlaybook("playbooks/tools/remove_etcd_node.yml", bk, "ETCD_TO_DEL="+leader, "--check", "--diff")
		if l.InventoryText() != inv {
			t.Fatal("remove_etcd_node.yml --check changed the inventory")
		}
		l.ExpectVoterCount(h1, 5)
		twice(t, l, "playbooks/tools/remove_etcd_node.yml", bk, "ETCD_TO_DEL="+leader)
		rest = without(l.Hosts, leader)
		l.ExpectVoterCount(rest[0], 4)
		l.ExpectGroup("etcd", rest...)
		if out, _ := l.SSH(leader, "systemctl is-enabled etcd; ls -d /var/lib/etcd.removed-*"); !strings.Contains(out, "disabled") || !strings.Contains(out, "/var/lib/etcd.removed-") {
			t.Fatalf("the removed leader's etcd is not disabled with its data moved aside: %s", out)
		}
	}) {
		return
	}

	if !step(t, l, "remove a powered-off member", func(t *testing.T, l *Lab) {
		dead := rest[len(rest)-1]
		l.Machine("stop", dead)
		twice(t, l, "playbooks/tools/remove_etcd_node.yml", bk, "ETCD_TO_DEL="+dead)
		rest = without(rest, dead)
		l.ExpectVoterCount(rest[0], 3)
		l.ExpectGroup("etcd", rest...)
	}) {
		return
	}

	if !step(t, l, "refuse a removal that would break quorum", func(t *testing.T, l *Lab) {
		l.Machine("stop", rest[2])
		before := l.InventoryText()
		r := l.Playbook("playbooks/tools/remove_etcd_node.yml", bk, "ETCD_TO_DEL="+rest[0])
		if !r.Failed() || !strings.Contains(r.Output, "quorum") {
			t.Fatalf("a quorum-breaking removal was not refused\n%s", tail(r.Output, 40))
		}
		if l.InventoryText() != before {
			t.Fatal("a refused removal changed the inventory")
		}
		l.ExpectVoterCount(rest[0], 3)
		l.Machine("start", rest[2])
		l.WaitHealthy(rest[2])
	}) {
		return
	}

	if !step(t, l, "back up", func(t *testing.T, l *Lab) {
		// First in check mode, which writes nothing.
		pre, _ := filepath.Glob(filepath.Join(backups, "snapshot_*"))
		l.MustPlaybook("playbooks/23.backup.yml", bk, "--check")
		if post, _ := filepath.Glob(filepath.Join(backups, "snapshot_*")); len(post) != len(pre) {
			t.Fatalf("23.backup.yml --check wrote to the backup directory: %v, before %v", post, pre)
		}
		first := l.MustPlaybook("playbooks/23.backup.yml", bk)
		times["playbooks/23.backup.yml"] = append(times["playbooks/23.backup.yml"], first.Duration)
		snaps, _ := filepath.Glob(filepath.Join(backups, "snapshot_*.db"))
		if len(snaps) == 0 {
			t.Fatal("no snapshot_<timestamp>.db in the backup directory")
		}
		latest := filepath.Join(backups, "snapshot.db")
		if fileSum(t, latest) != fileSum(t, snaps[len(snaps)-1]) {
			t.Fatal("snapshot.db is not the newest snapshot")
		}
	}) {
		return
	}

	step(t, l, "write more and restore", func(t *testing.T, l *Lab) {
		// First in check mode, which changes nothing.
		l.PutKeys(rest[0], "after/", 0, 200)
		l.MustPlaybook("playbooks/24.restore.yml", bk, "--check")
		if got := l.Count(rest[0], "after/"); got != 200 {
			t.Fatalf("24.restore.yml --check changed the data: %d of 200 keys left", got)
		}
		twice(t, l, "playbooks/24.restore.yml", bk)
		for _, h := range rest {
			if got := l.Count(h, "snap/"); got != 1000 {
				t.Fatalf("%s holds %d of the 1000 keys after the restore", h, got)
			}
			if got := l.Count(h, "after/"); got != 0 {
				t.Fatalf("%s holds %d keys written after the backup", h, got)
			}
		}
		l.ExpectVoterCount(rest[0], 3)
		ids := ""
		for _, h := range rest {
			var got []string
			for _, m := range l.Members(h) {
				got = append(got, fmt.Sprintf("%x=%s", m.ID, m.Name))
			}
			slices.Sort(got)
			if ids == "" {
				ids = strings.Join(got, ",")
			} else if strings.Join(got, ",") != ids {
				t.Fatalf("members disagree after the restore: %s vs %s", ids, strings.Join(got, ","))
			}
		}
	})
}

// step runs one step of a scenario as a subtest, with a view of the lab
// that reports to the subtest; it returns false when the step failed, and
// then the scenario stops (each step needs what the ones before did).
func step(t *testing.T, l *Lab, name string, f func(t *testing.T, l *Lab)) bool {
	t.Helper()
	return t.Run(name, func(t *testing.T) {
		sub := *l
		sub.t = t
		f(t, &sub)
	})
}

var changedLine = regexp.MustCompile(`(?m)^changed: .*$`)

// changedTasks lists the task headers of the tasks a run changed.
func changedTasks(out string) string {
	var b strings.Builder
	task := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "TASK [") {
			task = line
		}
		if changedLine.MatchString(line) {
			fmt.Fprintf(&b, "%s\n  %s\n", task, line)
		}
	}
	return b.String()
}

func without(list []string, x string) []string {
	var out []string
	for _, s := range list {
		if s != x {
			out = append(out, s)
		}
	}
	return out
}

// PutKeys writes n keys prefix000000.. through host, 100 per transaction.
func (l *Lab) PutKeys(host, prefix string, from, n int) {
	l.t.Helper()
	for _, txn := range putTxns(prefix, from, n) {
		l.MustSSH(host, "etcdctl txn <<'EOF'\n"+txn+"EOF")
	}
}

// Count is the number of keys under prefix in host's own copy of the data.
func (l *Lab) Count(host, prefix string) int {
	l.t.Helper()
	out := l.MustSSH(host, "ETCDCTL_ENDPOINTS=https://"+host+":2379 etcdctl get --consistency=s --prefix "+prefix+" --keys-only -w json")
	var resp struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		l.t.Fatalf("count on %s: %v\n%s", host, err, out)
	}
	return resp.Count
}

// ExpectVoters checks the member names and that none is a learner.
func (l *Lab) ExpectVoters(host string, names ...string) {
	l.t.Helper()
	var got []string
	for _, m := range l.Members(host) {
		if m.IsLearner {
			l.t.Fatalf("%s is still a learner", m.Name)
		}
		got = append(got, m.Name)
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		l.t.Fatalf("members %v, want %v", got, names)
	}
}

// ExpectVoterCount checks the number of members, none a learner.
func (l *Lab) ExpectVoterCount(host string, n int) {
	l.t.Helper()
	ms := l.Members(host)
	if len(ms) != n {
		l.t.Fatalf("%d members seen from %s, want %d: %+v", len(ms), host, n, ms)
	}
	for _, m := range ms {
		if m.IsLearner || m.Name == "" {
			l.t.Fatalf("member %+v is a learner or not started", m)
		}
	}
}

// InventoryText is the scenario inventory's content.
func (l *Lab) InventoryText() string {
	l.t.Helper()
	data, err := os.ReadFile(l.Inventory)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(data)
}

// Group lists the hosts of a group as written in the inventory.
func (l *Lab) Group(group string) []string {
	l.t.Helper()
	var hosts []string
	in := false
	for _, line := range strings.Split(l.InventoryText(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			in = strings.HasPrefix(line, "["+group+"]")
			continue
		}
		if in && line != "" && !strings.HasPrefix(line, "#") {
			hosts = append(hosts, strings.Fields(line)[0])
		}
	}
	return hosts
}

// ExpectGroup checks a group's hosts (in any order).
func (l *Lab) ExpectGroup(group string, hosts ...string) {
	l.t.Helper()
	got := l.Group(group)
	slices.Sort(got)
	want := slices.Clone(hosts)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		l.t.Fatalf("[%s] holds %v, want %v", group, got, want)
	}
}

// MoveHost moves a host line between groups by hand, as an operator edits
// the hosts file before running 19.addetcd.yml: the line goes after the
// last host of the target group.
func (l *Lab) MoveHost(host, from, to string) {
	l.t.Helper()
	var out []string
	section, moved := "", ""
	for _, line := range strings.Split(l.InventoryText(), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "[") {
			section = strings.Trim(strings.Fields(trimmed)[0], "[]")
		}
		if section == from && trimmed != "" && strings.Fields(trimmed)[0] == host {
			moved = line
			continue
		}
		out = append(out, line)
	}
	if moved == "" {
		l.t.Fatalf("%s is not in [%s]", host, from)
	}
	at := slices.Index(out, "["+to+"]")
	if at < 0 {
		l.t.Fatalf("no [%s] in the inventory", to)
	}
	at++
	for at < len(out) && out[at] != "" && !strings.HasPrefix(out[at], "[") && !strings.HasPrefix(out[at], "#") {
		at++
	}
	out = slices.Insert(out, at, moved)
	if err := os.WriteFile(l.Inventory, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// LeaderIP is the IP of the member that leads, as seen from host.
func (l *Lab) LeaderIP(host string) string {
	l.t.Helper()
	out := l.MustSSH(host, "etcdctl endpoint status --cluster -w json")
	var sts []struct {
		Endpoint string `json:"Endpoint"`
		Status   struct {
			Header struct {
				MemberID uint64 `json:"member_id"`
			} `json:"header"`
			Leader uint64 `json:"leader"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		l.t.Fatalf("endpoint status: %v\n%s", err, out)
	}
	for _, s := range sts {
		if s.Status.Header.MemberID == s.Status.Leader && s.Status.Leader != 0 {
			ip := strings.TrimPrefix(s.Endpoint, "https://")
			return strings.Split(ip, ":")[0]
		}
	}
	l.t.Fatalf("no leader in %s", out)
	return ""
}

// Machine powers a lab machine off ("stop") or on ("start").
func (l *Lab) Machine(action, host string) {
	l.t.Helper()
	name := fmt.Sprintf("%s%d", currentLab().Prefix, slices.Index(l.Hosts, host)+1)
	cmd := exec.Command("bash", filepath.Join(repoRoot, "lab", "lab.sh"), action, name)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("lab.sh %s %s: %v\n%s", action, name, err, out)
	}
}

// WaitHealthy waits up to 60 s for the member on host to answer healthy.
func (l *Lab) WaitHealthy(host string) {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := l.SSH(host, "etcdctl endpoint health -w json")
		if err == nil && strings.Contains(out, `"health":true`) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s not healthy after 60 s: %s", host, out)
		}
		time.Sleep(time.Second)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// putTxns are etcdctl txn inputs (no compares, no failure branch) that put
// keys prefix<from>..prefix<from+n-1>, value-<i> each, 100 to a transaction.
func putTxns(prefix string, from, n int) []string {
	var txns []string
	for start := from; start < from+n; start += 100 {
		var b strings.Builder
		b.WriteString("\n")
		for i := start; i < min(start+100, from+n); i++ {
			fmt.Fprintf(&b, "put %s%06d value-%d\n", prefix, i, i)
		}
		b.WriteString("\n\n")
		txns = append(txns, b.String())
	}
	return txns
}
