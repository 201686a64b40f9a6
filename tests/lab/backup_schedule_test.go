//go:build lab

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/backup"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
	"github.com/etcdops/etcdops/internal/pki"
)

const (
	backupUnit = "etcdops-backup.service"
	backupDir  = "/var/lib/etcd-backup/scheduled"
	gwPort     = "9000"
)

// gateway is versitygw serving a directory on a lab machine over TLS, run
// as a transient systemd unit there.
type gateway struct {
	l              *Lab
	host, ca       string
	access, secret string
	bucket, prefix string
	unit           string // the transient unit of the running gateway
	starts         int
}

func startGateway(t *testing.T, l *Lab, host string) *gateway {
	t.Helper()
	g := &gateway{l: l, host: host, access: "labAccessKey", secret: fmt.Sprintf("lab-SECRET-%d", time.Now().UnixNano()),
		bucket: "backups", prefix: "cluster1/"}
	dir := t.TempDir()
	ca, err := pki.NewCA("lab s3 CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Issue(ca, pki.Request{CommonName: "lab-s3", Usage: pki.UsageMember, IPs: []net.IP{net.ParseIP(host)}, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g.ca = filepath.Join(dir, "s3-ca.pem")
	if err := os.WriteFile(g.ca, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l.MustSSH(host, "mkdir -p /srv/s3/"+g.bucket)
	l.copyTo(host, "/usr/local/bin/versitygw", "0755", fileReader(t, s3test.Binary(t)))
	l.copyTo(host, "/srv/s3tls/s3.pem", "0644", bytes.NewReader(leaf.CertPEM))
	l.copyTo(host, "/srv/s3tls/s3-key.pem", "0600", bytes.NewReader(leaf.KeyPEM))
	g.start(t)
	return g
}

func (g *gateway) start(t *testing.T) {
	t.Helper()
	// A new unit name each time: a stopped transient unit stays loaded a
	// while, and its name cannot be used again until systemd drops it.
	g.starts++
	g.unit = fmt.Sprintf("lab-s3-%d", g.starts)
	g.l.MustSSH(g.host, "systemd-run --collect --unit="+g.unit+" --setenv=ROOT_ACCESS_KEY_ID="+g.access+" --setenv=ROOT_SECRET_ACCESS_KEY="+g.secret+
		" /usr/local/bin/versitygw --port :"+gwPort+" --cert /srv/s3tls/s3.pem --key /srv/s3tls/s3-key.pem --quiet posix /srv/s3")
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", g.host+":"+gwPort, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not listen on %s:%s: %v\n%s", g.host, gwPort, err, g.l.MustSSH(g.host, "journalctl -u "+g.unit+" --no-pager | tail"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *gateway) stop(t *testing.T) { g.l.MustSSH(g.host, "systemctl stop "+g.unit) }

func (g *gateway) endpoint() string { return "https://" + g.host + ":" + gwPort }

// store is the test's own client of the bucket.
func (g *gateway) store(t *testing.T) *objstore.Store {
	t.Helper()
	st, err := objstore.New(objstore.Config{Endpoint: g.endpoint(), Bucket: g.bucket, Prefix: g.prefix, Region: "us-east-1",
		PathStyle: true, CAFile: g.ca, AccessKey: g.access, SecretKey: g.secret})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (g *gateway) objects(t *testing.T) []objstore.Object {
	t.Helper()
	objs, err := g.store(t).List(context.Background())
	if err != nil {
		t.Fatalf("list the bucket: %v", err)
	}
	return objs
}

// varsFile writes the playbook's variables to a file (-e @file), so that
// no credential is on ansible-playbook's command line.
func (g *gateway) varsFile(t *testing.T, schedule, period, secret string) string {
	t.Helper()
	data, _ := json.Marshal(map[string]any{
		"etcd_backup_schedule": schedule, "etcd_backup_period": period,
		"etcd_backup_s3_endpoint": g.endpoint(), "etcd_backup_s3_bucket": g.bucket, "etcd_backup_s3_prefix": g.prefix,
		"etcd_backup_s3_ca_file": g.ca, "etcd_backup_s3_access_key_id": g.access, "etcd_backup_s3_secret_access_key": secret,
		"etcd_backup_s3_keep": 50,
	})
	f := filepath.Join(t.TempDir(), "backup-vars.json")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return "@" + f
}

// forgetDone deletes the cluster's record of the period done, as a new
// period would: the next run backs up again.
func forgetDone(l *Lab, host string) { l.MustSSH(host, "etcdctl del "+backup.DoneKey+" >/dev/null") }

// startUnits starts the backup service on hosts at once and returns each
// host's `systemctl start` error.
func startUnits(l *Lab, hosts ...string) map[string]error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := map[string]error{}
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := startUnit(l, h)
			mu.Lock()
			errs[h] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

// startUnit runs the backup service on host and waits for it to end. The
// lab's machines (systemd-nspawn, hybrid cgroups) now and then cannot set
// up a unit's cgroup right after the unit's last run (status 219/CGROUP,
// before the binary starts): such a start is tried once more.
func startUnit(l *Lab, host string) (string, error) {
	l.t.Helper()
	cmd := "systemctl start " + backupUnit
	out, err := l.SSH(host, cmd)
	if err != nil {
		if st, _ := l.SSH(host, "systemctl show -p ExecMainStatus --value "+backupUnit); strings.TrimSpace(st) == "219" {
			l.t.Logf("%s: systemd could not set up the unit's cgroup (219/CGROUP): starting it again", host)
			time.Sleep(time.Second)
			out, err = l.SSH(host, cmd)
		}
	}
	return out, err
}

func mustStartUnit(l *Lab, host string) {
	l.t.Helper()
	if out, err := startUnit(l, host); err != nil {
		l.t.Fatalf("the backup unit on %s failed: %v %s\n%s", host, err, out, journal(l, host, "-2min"))
	}
}

func journal(l *Lab, host, since string) string {
	out, _ := l.SSH(host, "journalctl -u "+backupUnit+" --no-pager -o cat --since '"+since+"'")
	return out
}

func remoteNow(l *Lab, host string) string {
	return strings.TrimSpace(l.MustSSH(host, "date '+%Y-%m-%d %H:%M:%S'"))
}

// newObjects are the objects of after that are not in before.
func newObjects(before, after []objstore.Object) []objstore.Object {
	seen := map[string]bool{}
	for _, o := range before {
		seen[o.Key] = true
	}
	var out []objstore.Object
	for _, o := range after {
		if !seen[o.Key] {
			out = append(out, o)
		}
	}
	return out
}

// timerRanOnce reports whether the backup timer on host fired and the run
// it started has finished with success.
func timerRanOnce(l *Lab, host string) bool {
	out := l.MustSSH(host, "systemctl show -p LastTriggerUSecMonotonic etcdops-backup.timer; "+
		"systemctl show -p ExecMainStartTimestampMonotonic -p ActiveState -p Result "+backupUnit)
	p := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	var trigger, start int64
	fmt.Sscan(p["LastTriggerUSecMonotonic"], &trigger)
	fmt.Sscan(p["ExecMainStartTimestampMonotonic"], &start)
	return trigger > 0 && start >= trigger && p["ActiveState"] == "inactive" && p["Result"] == "success"
}

// TestBackupSchedule installs the backup timer with 23.backup.yml on a
// 3-member cluster storing to versitygw on a fourth machine, and runs the
// members' units through the faults the schedule must survive, one
// subtest after another on the same lab.
func TestBackupSchedule(t *testing.T) {
	l := NewLab(t, 4, 3)
	h, s3host := l.Hosts[:3], l.Hosts[3]
	l.MustPlaybook("playbooks/02.etcd.yml")
	g := startGateway(t, l, s3host)
	vars := g.varsFile(t, "*-01-01 03:00:00", "1h", g.secret)
	files := []string{"/etc/systemd/system/etcdops-backup.timer", "/etc/systemd/system/" + backupUnit,
		"/etc/etcdops/backup.conf", "/etc/etcdops/backup-credentials", "/etc/etcdops/backup-s3-ca.pem"}
	noSecret := func(t *testing.T, where, text string) {
		t.Helper()
		for _, s := range []string{g.secret, "WRONG-" + g.secret} {
			if strings.Contains(text, s) {
				t.Fatalf("a credential shows in %s:\n%s", where, strings.ReplaceAll(text, s, "<HERE>"))
			}
		}
	}

	t.Run("install", func(t *testing.T) {
		check := l.MustPlaybook("playbooks/23.backup.yml", vars, "--check", "--diff", "--verbose")
		noSecret(t, "the --check --diff output", check.Output)
		if check.Changed() == 0 {
			t.Fatalf("--check reports nothing to change on members without the timer\n%s", tail(check.Output, 30))
		}
		for _, m := range h {
			if out := l.MustSSH(m, "ls /etc/etcdops 2>/dev/null; ls /etc/systemd/system | grep etcdops-backup || true"); strings.TrimSpace(out) != "" {
				t.Fatalf("--check wrote on %s: %s", m, out)
			}
		}
		r := l.MustPlaybook("playbooks/23.backup.yml", vars, "--verbose")
		noSecret(t, "the playbook's output", r.Output)
		for _, m := range h {
			out := l.MustSSH(m, "stat -c '%a %U %n' "+strings.Join(files, " ")+" && systemctl is-enabled etcdops-backup.timer")
			for _, f := range files[2:4] {
				if !strings.Contains(out, "600 root "+f) {
					t.Fatalf("%s on %s is not root's alone:\n%s", f, m, out)
				}
			}
			if !strings.Contains(out, "enabled") {
				t.Fatalf("the timer is not enabled on %s:\n%s", m, out)
			}
		}
		if again := l.MustPlaybook("playbooks/23.backup.yml", vars, "--diff"); again.Changed() != 0 {
			t.Fatalf("installing the timer again changed %d tasks\n%s\n%s", again.Changed(), changedTasks(again.Output), tail(again.Output, 60))
		}
	})

	t.Run("each member's unit: one object for the period", func(t *testing.T) {
		since := remoteNow(l, h[0])
		for _, m := range h {
			mustStartUnit(l, m)
		}
		objs := g.objects(t)
		if len(objs) != 1 {
			t.Fatalf("three runs in one period made %d objects: %+v", len(objs), objs)
		}
		skipped := 0
		for _, m := range h {
			if strings.Contains(journal(l, m, since), "already done by member "+objs[0].Member) {
				skipped++
			}
		}
		if skipped != 2 {
			t.Fatalf("%d members, not 2, say the period was done by %s", skipped, objs[0].Member)
		}
	})

	t.Run("two members fire at the same second", func(t *testing.T) {
		forgetDone(l, h[0])
		before := g.objects(t)
		for m, err := range startUnits(l, h[1], h[2]) {
			if err != nil {
				t.Fatalf("the unit on %s failed: %v\n%s", m, err, journal(l, m, "-1min"))
			}
		}
		if made := newObjects(before, g.objects(t)); len(made) != 1 {
			t.Fatalf("two members firing together made %d objects: %+v", len(made), made)
		}
	})

	t.Run("a member's etcd down: another member's snapshot is taken", func(t *testing.T) {
		forgetDone(l, h[0])
		before := g.objects(t)
		l.MustSSH(h[0], "systemctl stop etcd")
		errs := startUnits(l, h...)
		l.MustSSH(h[0], "systemctl start etcd")
		for m, err := range errs {
			if err != nil {
				t.Fatalf("the unit on %s failed: %v\n%s", m, err, journal(l, m, "-1min"))
			}
		}
		down := ""
		for _, m := range l.Members(h[1]) {
			if strings.Contains(strings.Join(m.ClientURLs, ","), "//"+h[0]+":") {
				down = m.Name
			}
		}
		made := newObjects(before, g.objects(t))
		if down == "" || len(made) != 1 || made[0].Member == down {
			t.Fatalf("with %s's etcd down the runs made %+v: want one object, from another member", h[0], made)
		}
	})

	t.Run("the holder killed mid-upload", func(t *testing.T) {
		// 64 MiB of values (four 16 MiB parts), sent to the store at
		// 80 Mbit/s: the upload lasts seconds.
		l.MustSSH(h[0], `for i in $(seq 1 64); do head -c 786432 /dev/urandom | base64 -w0 | etcdctl put /big/$i >/dev/null || exit 1; done`)
		veth := "vb-" + currentLab().Prefix + "4"
		if out, err := exec.Command("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", "80mbit", "burst", "64kb", "latency", "1s").CombinedOutput(); err != nil {
			t.Fatalf("slow down the link to the store: %v %s", err, out)
		}
		defer exec.Command("tc", "qdisc", "del", "dev", veth, "root").Run()
		forgetDone(l, h[0])
		before := g.objects(t)
		l.MustSSH(h[0], "systemctl start --no-block "+backupUnit)
		if st, _ := l.SSH(h[0], "sleep 1; systemctl show -p ExecMainStatus --value "+backupUnit); strings.TrimSpace(st) == "219" {
			t.Logf("%s: systemd could not set up the unit's cgroup (219/CGROUP): starting it again", h[0])
			l.MustSSH(h[0], "systemctl start --no-block "+backupUnit)
		}
		st := g.store(t)
		deadline := time.Now().Add(60 * time.Second)
		for {
			n := 0
			for u := range st.Client().ListIncompleteUploads(context.Background(), g.bucket, g.prefix, true) {
				if u.Err == nil {
					n++
				}
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no upload seen under way within 60 s\n%s", journal(l, h[0], "-2min"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		l.MustSSH(h[0], "systemctl kill -s KILL "+backupUnit)
		time.Sleep(time.Second)
		if out, _ := l.SSH(h[0], "systemctl is-failed "+backupUnit); strings.TrimSpace(out) != "failed" {
			t.Fatalf("the killed unit is %q, not failed", out)
		}
		if made := newObjects(before, g.objects(t)); len(made) != 0 {
			t.Fatalf("the killed upload left objects under final keys: %+v", made)
		}
		exec.Command("tc", "qdisc", "del", "dev", veth, "root").Run()
		// The killed run's lease expires within its TTL; the next run waits
		// for the lock, then uploads the snapshot the killed run kept.
		mustStartUnit(l, h[0])
		made := newObjects(before, g.objects(t))
		if len(made) != 1 || made[0].Size < 48<<20 {
			t.Fatalf("the run after the kill made %+v: want one object of the 64 MiB database", made)
		}
		// The member's own fetch checks the sha256 and bbolt's structure.
		if out, err := l.SSH(h[1], "/usr/local/lib/etcdops/etcdops backup fetch --config /etc/etcdops/backup.conf --key "+made[0].Key+
			" --out /tmp/fetched.db && rm /tmp/fetched.db"); err != nil {
			t.Fatalf("the object uploaded after the kill does not verify: %v\n%s", err, out)
		}
	})

	t.Run("store unreachable, then back", func(t *testing.T) {
		forgetDone(l, h[0])
		before := g.objects(t)
		g.stop(t)
		since := remoteNow(l, h[1])
		_, err := startUnit(l, h[1])
		failed, _ := l.SSH(h[1], "systemctl --failed --no-legend --plain")
		kept, _ := l.SSH(h[1], "ls "+backupDir+"/*.pending")
		g.start(t)
		if err == nil || !strings.Contains(failed, backupUnit) {
			t.Fatalf("with the store down the unit did not fail (%v) or is not in systemctl --failed: %s", err, failed)
		}
		if j := journal(l, h[1], since); !strings.Contains(j, "cannot reach the store at "+g.endpoint()) || !strings.Contains(j, "is kept in") {
			t.Fatalf("the journal does not say the store cannot be reached and the snapshot is kept:\n%s", j)
		}
		if strings.TrimSpace(kept) == "" {
			t.Fatalf("no snapshot kept, pending upload, on %s", h[1])
		}
		mustStartUnit(l, h[1])
		if made := newObjects(before, g.objects(t)); len(made) != 1 {
			t.Fatalf("the run with the store back made %+v: want one object", made)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		r := l.MustPlaybook("playbooks/23.backup.yml", g.varsFile(t, "*-01-01 03:00:00", "1h", "WRONG-"+g.secret), "--diff", "--verbose")
		noSecret(t, "the playbook's output", r.Output)
		forgetDone(l, h[0])
		since := remoteNow(l, h[2])
		if _, err := startUnit(l, h[2]); err == nil {
			t.Fatal("the unit succeeded with wrong credentials")
		}
		j := journal(l, h[2], since)
		if !strings.Contains(j, "the store at "+g.endpoint()+" refused the credentials for bucket "+g.bucket) {
			t.Fatalf("the journal does not say the credentials were refused:\n%s\n%s", j, l.MustSSH(h[2], "journalctl --no-pager --since '"+since+"' | tail -40"))
		}
		noSecret(t, "the journal", l.MustSSH(h[2], "journalctl --no-pager -o cat --since '"+since+"'"))
		noSecret(t, "the unit's command line", l.MustSSH(h[2], "systemctl show -p ExecStart "+backupUnit+"; ps -eo args"))
	})

	t.Run("timer fires on its own", func(t *testing.T) {
		r := l.MustPlaybook("playbooks/23.backup.yml", g.varsFile(t, "*:*:0/20", "20s", g.secret))
		if r.Changed() == 0 {
			t.Fatal("a new schedule and credentials changed nothing")
		}
		before := g.objects(t)
		deadline := time.Now().Add(75 * time.Second)
		for _, m := range h {
			for !timerRanOnce(l, m) {
				if time.Now().After(deadline) {
					t.Fatalf("the timer did not fire and succeed on %s within 75 s\n%s", m, journal(l, m, "-2min"))
				}
				time.Sleep(2 * time.Second)
			}
		}
		made := newObjects(before, g.objects(t))
		periods := map[time.Time]int{}
		for _, o := range made {
			periods[backup.PeriodOf(o.Time, 20*time.Second)]++
		}
		if len(made) == 0 {
			t.Fatal("the timer's firings uploaded nothing")
		}
		for p, n := range periods {
			if n != 1 {
				var b strings.Builder
				for _, o := range made {
					fmt.Fprintf(&b, "  %s (member %s, revision %d)\n", o.Key, o.Member, o.Revision)
				}
				for _, m := range h {
					fmt.Fprintf(&b, "%s:\n%s\n", m, journal(l, m, "-3min"))
				}
				t.Fatalf("the period from %s has %d objects; the new objects:\n%s", p, n, b.String())
			}
		}
		urls := map[string]bool{}
		for _, o := range made {
			urls[o.URL] = true
		}
		recorded := false
		for _, m := range h {
			var s backup.Success
			if out, err := l.SSH(m, "cat "+backupDir+"/last-success.json"); err == nil && json.Unmarshal([]byte(out), &s) == nil && urls[s.Object] {
				recorded = true
			}
		}
		if !recorded {
			t.Fatalf("no member's last-success.json names an object the timer made: %+v", made)
		}
	})

	t.Run("local snapshots only", func(t *testing.T) {
		l.MustPlaybook("playbooks/23.backup.yml", `{"etcd_backup_schedule": "*-01-01 03:00:00", "etcd_backup_period": "1h"}`)
		if out, _ := l.SSH(h[0], "ls /etc/etcdops/backup-credentials /etc/etcdops/backup-s3-ca.pem 2>/dev/null; grep -c '^\\[s3\\]' /etc/etcdops/backup.conf"); strings.TrimSpace(out) != "0" {
			t.Fatalf("without a store the credentials, CA or [s3] settings stay: %s", out)
		}
		forgetDone(l, h[0])
		before := g.objects(t)
		since := remoteNow(l, h[0])
		mustStartUnit(l, h[0])
		if j := journal(l, h[0], since); !strings.Contains(j, "no store configured") {
			t.Fatalf("the run without a store did not keep a local snapshot alone:\n%s", j)
		}
		if made := newObjects(before, g.objects(t)); len(made) != 0 {
			t.Fatalf("a run without a store made objects: %+v", made)
		}
	})

	t.Run("off", func(t *testing.T) {
		l.MustPlaybook("playbooks/23.backup.yml", "etcd_backup_schedule=off")
		for _, m := range h {
			out, _ := l.SSH(m, "for f in "+strings.Join(files, " ")+"; do test ! -e $f || echo LEFT $f; done; systemctl is-enabled etcdops-backup.timer 2>&1")
			if strings.Contains(out, "LEFT") || strings.HasPrefix(out, "enabled") {
				t.Fatalf("the timer is still there on %s: %s", m, out)
			}
		}
		if again := l.MustPlaybook("playbooks/23.backup.yml", "etcd_backup_schedule=off"); again.Changed() != 0 {
			t.Fatalf("removing the timer again changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
		}
	})
}
