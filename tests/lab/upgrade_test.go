//go:build lab

package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const upgradePlaybook = "playbooks/tools/upgrade_etcd.yml"

// etcdBin is the directory lab/etcdbin/build.sh builds etcd version into
// (cached).
func etcdBin(t *testing.T, version string) string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(repoRoot, "lab", "etcdbin", "build.sh"), version).Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		t.Fatalf("lab/etcdbin/build.sh %s: %v %s", version, err, out)
	}
	return lines[len(lines)-1]
}

// TestUpgradeEtcd deploys etcd 3.4.23 on 3 members. A skipped minor
// version (3.6) is refused with nothing changed; an upgrade to 3.5.35
// whose etcd cannot start stops after the first member, with the others
// serving and a note that says how to roll back, which works; the upgrade
// to 3.5.35 then runs while a client writes, losing no acknowledged write,
// with never two members down at once; a downgrade is refused and a
// second run changes nothing. TestUpgradeMatrix goes on to 3.6.
func TestUpgradeEtcd(t *testing.T) {
	l := NewLab(t, 3, 3)
	bin34, bin35, bin36 := etcdBin(t, "3.4.23"), etcdBin(t, "3.5.35"), etcdBin(t, "3.6.16")
	bk := "etcd_backup_dir=" + filepath.Join(t.TempDir(), "backup")
	// A snapshot every 1000 raft entries instead of 50000, so that the
	// matrix part can make each 3.5 member snapshot before 3.6 (below).
	l.MustPlaybook("playbooks/02.etcd.yml", bk, "etcd_bin_src="+bin34, "etcd_snapshot_count=1000")
	l.expectVersions("3.4.23")

	before := l.memberState()
	skip := l.Playbook(upgradePlaybook, bk, "etcd_bin_src="+bin36, "etcd_version=3.6.16")
	if !skip.Failed() || !strings.Contains(skip.Output, "skips minor version 3.5") || !strings.Contains(skip.Output, "Nothing was changed") {
		t.Fatalf("3.4 to 3.6 was not refused as a skipped minor version\n%s", tail(skip.Output, 40))
	}
	l.expectUnchanged(before, "after the refused skip")
	mismatch := l.Playbook(upgradePlaybook, bk, "etcd_bin_src="+bin36, "etcd_version=3.5.35")
	if !mismatch.Failed() || !strings.Contains(mismatch.Output, "is etcd 3.6.16, not 3.5.35") {
		t.Fatalf("a binary of another version was not refused\n%s", tail(mismatch.Output, 40))
	}
	check := l.MustPlaybook(upgradePlaybook, bk, "etcd_bin_src="+bin35, "etcd_version=3.5.35", "--check")
	if check.Changed() == 0 {
		t.Fatalf("--check predicts no change\n%s", tail(check.Output, 40))
	}
	l.expectUnchanged(before, "after --check")

	// An etcd that reports 3.5.35 but exits at once: the first member
	// upgraded does not come back, the run stops there.
	broken := t.TempDir()
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then exec " + bin35 + "/etcd --version; fi\necho 'this etcd does not start' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(broken, "etcd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etcdctl", "etcdutl"} {
		if err := os.Symlink(filepath.Join(bin35, f), filepath.Join(broken, f)); err != nil {
			t.Fatal(err)
		}
	}
	fail := l.Playbook(upgradePlaybook, bk, "etcd_bin_src="+broken, "etcd_version=3.5.35")
	rollback := regexp.MustCompile(`on (\S+) run: (cp -p \S+ \S+ && cp -p \S+ \S+ && systemctl restart \S+)`).FindStringSubmatch(fail.Output)
	if !fail.Failed() || rollback == nil || !strings.Contains(fail.Output, "No member was upgraded before it") {
		t.Fatalf("the broken upgrade did not stop with a rollback note\n%s", tail(fail.Output, 40))
	}
	failed := rollback[1]
	t.Logf("stopped at %s; rollback: %s", failed, rollback[2])
	for _, h := range l.Hosts {
		_, err := l.SSH(h, "ETCDCTL_ENDPOINTS=https://"+h+":2379 etcdctl endpoint health")
		if (h == failed) != (err != nil) {
			t.Fatalf("after the stop, %s healthy=%v; only %s should be down", h, err == nil, failed)
		}
	}
	if out, err := l.SSH(without(l.Hosts, failed)[0], "etcdctl put /during-failure ok"); err != nil {
		t.Fatalf("the others do not serve writes: %v %s", err, out)
	}
	l.MustSSH(failed, rollback[2])
	l.WaitHealthy(failed)
	l.expectVersions("3.4.23")

	w := startWriter(t, l.Hosts, l.PKIDir+"/ca.pem", l.PKIDir+"/etcd-client.pem", l.PKIDir+"/etcd-client-key.pem")
	up := l.MustPlaybook(upgradePlaybook, bk, "etcd_bin_src="+bin35, "etcd_version=3.5.35")
	t.Logf("3-member upgrade 3.4.23 -> 3.5.35 with a writer: %s", up.Duration.Round(time.Second))
	w.stop(t)
	l.expectVersions("3.5.35")
	if !strings.Contains(up.Output, "cluster version 3.5.0") {
		t.Fatalf("the run does not report the cluster version 3.5.0\n%s", tail(up.Output, 30))
	}
	if out := l.MustSSH(l.Hosts[0], "ls /usr/local/bin"); !strings.Contains(out, "etcd.3.4.23") {
		t.Fatalf("the old binary was not kept: %s", out)
	}

	upgraded := l.memberState()
	down := l.Playbook(upgradePlaybook, bk, "etcd_bin_src="+bin34, "etcd_version=3.4.23")
	if !down.Failed() || !strings.Contains(down.Output, "downgrade") {
		t.Fatalf("a downgrade was not refused\n%s", tail(down.Output, 40))
	}
	l.expectUnchanged(upgraded, "after the refused downgrade")
	if again := l.MustPlaybook(upgradePlaybook, bk, "etcd_bin_src="+bin35, "etcd_version=3.5.35"); again.Changed() != 0 {
		t.Fatalf("a second run changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
	if os.Getenv("LAB_UPGRADE_MATRIX") == "" {
		return
	}
	// etcd 3.4's /health (the prober above) writes v2 QGET requests to the
	// raft log, and 3.6 refuses to start while a member's log holds v2
	// requests after its last snapshot ("detected disallowed v2 WAL"; etcd's
	// 3.6 upgrade guide). 3.5's /health writes none: 1200 writes on 3.5
	// make every member snapshot past them.
	w = startWriter(t, l.Hosts, l.PKIDir+"/ca.pem", l.PKIDir+"/etcd-client.pem", l.PKIDir+"/etcd-client-key.pem")
	for i := range 1200 {
		if _, err := w.cli.Put(context.Background(), fmt.Sprintf("/snapshot-past-v2/%04d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	up = l.MustPlaybook(upgradePlaybook, bk, "etcd_bin_src="+bin36, "etcd_version=3.6.16")
	t.Logf("3-member upgrade 3.5.35 -> 3.6.16 with a writer: %s", up.Duration.Round(time.Second))
	w.stop(t)
	l.expectVersions("3.6.16")
	if !strings.Contains(up.Output, "cluster version 3.6.0") {
		t.Fatalf("the run does not report the cluster version 3.6.0\n%s", tail(up.Output, 30))
	}
}

// TestUpgradeKubeasz upgrades a cluster kubeasz 3.7 deployed (binaries in
// /opt/kube/bin) from etcd 3.5.35 to 3.6.16 while a client writes, then
// defragments it with defrag_etcd.yml.
func TestUpgradeKubeasz(t *testing.T) {
	l := NewLab(t, 3, 0)
	bin35, bin36 := etcdBin(t, "3.5.35"), etcdBin(t, "3.6.16")
	k := DeployKubeasz(t, l, "3.7", l.Hosts, "etcd_bin_src="+bin35)
	k.PutKeys(l.Hosts[0], "kubeasz/", 0, 200)
	pids := map[string]int{}
	for _, h := range l.Hosts {
		pids[h] = k.MainPID(h)
	}
	w := startWriter(t, l.Hosts, k.CACert, k.ClientCert, k.ClientKey)
	up := k.RunPlaybook(upgradePlaybook, "etcd_bin_src="+bin36, "etcd_version=3.6.16")
	w.stop(t)
	if up.Failed() {
		t.Fatalf("upgrade failed\n%s", tail(up.Output, 60))
	}
	t.Logf("kubeasz 3.7, 3-member upgrade 3.5.35 -> 3.6.16 with a writer: %s", up.Duration.Round(time.Second))
	for _, h := range l.Hosts {
		if v := k.MustExec(h, k.Member.Etcd, "--version"); !strings.Contains(v, "etcd Version: 3.6.16\n") {
			t.Fatalf("%s: %s", h, v)
		}
		if old := k.MustExec(h, k.Member.Etcd+".3.5.35", "--version"); !strings.Contains(old, "etcd Version: 3.5.35\n") {
			t.Fatalf("%s: the kept binary: %s", h, old)
		}
		if pid := k.MainPID(h); pid == pids[h] || pid == 0 {
			t.Fatalf("%s: etcd was not restarted (pid %d, before %d)", h, pid, pids[h])
		}
		if n := k.Count(h, "kubeasz/"); n != 200 {
			t.Fatalf("%s holds %d of the 200 keys", h, n)
		}
	}
	if !strings.Contains(up.Output, "cluster version 3.6.0") {
		t.Fatalf("the run does not report the cluster version 3.6.0\n%s", tail(up.Output, 30))
	}
	if again := k.RunPlaybook(upgradePlaybook, "etcd_bin_src="+bin36, "etcd_version=3.6.16"); again.Failed() || again.Changed() != 0 {
		t.Fatalf("a second run failed or changed %d tasks\n%s", again.Changed(), tail(again.Output, 40))
	}

	// defrag_etcd.yml on the same kubeasz cluster, idle: 8 MiB written and
	// deleted, then compacted by the playbook, leave most of each file
	// free; every member shrinks.
	fillAndDelete(t, l.Hosts, k.CACert, k.ClientCert, k.ClientKey, "/defrag-fill/", 200, 40<<10)
	before := dbSizes(t, l.Hosts, k.CACert, k.ClientCert, k.ClientKey)
	d := k.RunPlaybook("playbooks/tools/defrag_etcd.yml", "etcd_defrag_compact=true")
	if d.Failed() || d.Changed() == 0 {
		t.Fatalf("defrag_etcd.yml on kubeasz failed or changed nothing\n%s", tail(d.Output, 40))
	}
	expectShrunk(t, before, dbSizes(t, l.Hosts, k.CACert, k.ClientCert, k.ClientKey), 0.5)
	if again := k.RunPlaybook("playbooks/tools/defrag_etcd.yml", "etcd_defrag_compact=true"); again.Failed() || again.Changed() != 0 {
		t.Fatalf("a second defragmentation failed or changed %d tasks\n%s", again.Changed(), tail(again.Output, 40))
	}
}

func (l *Lab) expectVersions(want string) {
	l.t.Helper()
	for _, h := range l.Hosts {
		out := l.MustSSH(h, "ETCDCTL_ENDPOINTS=https://"+h+":2379 etcdctl endpoint status -w json; etcd --version")
		if !strings.Contains(out, `"version":"`+want+`"`) || !strings.Contains(out, "etcd Version: "+want+"\n") {
			l.t.Fatalf("%s does not run etcd %s: %s", h, want, out)
		}
	}
}

// memberState is, per host, etcd's main PID and the checksums of its
// binary and unit.
func (l *Lab) memberState() map[string]string {
	l.t.Helper()
	out := map[string]string{}
	for _, h := range l.Hosts {
		out[h] = l.MustSSH(h, "systemctl show -p MainPID --value etcd; sha256sum /usr/local/bin/etcd /usr/local/bin/etcdctl /etc/systemd/system/etcd.service; ls /usr/local/bin")
	}
	return out
}

func (l *Lab) expectUnchanged(before map[string]string, when string) {
	l.t.Helper()
	for h, s := range l.memberState() {
		if s != before[h] {
			l.t.Fatalf("%s: %s changed:\n%s\nbefore:\n%s", when, h, s, before[h])
		}
	}
}

// writer writes a unique key at a time through a client of every member,
// recording the keys acknowledged and the errors, while a prober asks each
// member's /health every 200 ms (see probeHealth).
type writer struct {
	cli    *clientv3.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	errs   []time.Time
	lastEr string
	// the probes: the most members unhealthy at one probe, and when
	maxDown   int
	downAt    time.Time
	downWho   []string
	probes    int
	downTicks map[string]int
}

func startWriter(t *testing.T, hosts []string, ca, cert, key string) *writer {
	t.Helper()
	tlsInfo := transport.TLSInfo{TrustedCAFile: ca, CertFile: cert, KeyFile: key}
	tc, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, h := range hosts {
		eps = append(eps, "https://"+h+":2379")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tc, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cli: cli, cancel: cancel, downTicks: map[string]int{}}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			k := fmt.Sprintf("/upgrade-writer/%d/%08d", time.Now().UnixNano(), i)
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := cli.Put(pctx, k, "v")
			pcancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, k)
			} else if ctx.Err() == nil {
				w.errs = append(w.errs, time.Now())
				w.lastEr = err.Error()
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone()}}
	go func() {
		defer w.wg.Done()
		// A member counts as down when two probes in a row (200 ms apart)
		// find it unhealthy: a restart keeps it down for a second or more,
		// while the instant of a leader change, when no member knows a
		// leader yet, is not a member down.
		unhealthy := map[string]string{}
		for ctx.Err() == nil {
			now := map[string]string{}
			var dmu sync.Mutex
			var pw sync.WaitGroup
			for _, h := range hosts {
				pw.Add(1)
				go func() {
					defer pw.Done()
					if why := probeHealth(hc, h); why != "" {
						dmu.Lock()
						now[h] = why
						dmu.Unlock()
					}
				}()
			}
			pw.Wait()
			var down []string
			for h, why := range now {
				if _, before := unhealthy[h]; before {
					down = append(down, h+" ("+why+")")
				}
			}
			slices.Sort(down)
			unhealthy = now
			w.mu.Lock()
			w.probes++
			for h := range now {
				w.downTicks[h]++
			}
			if len(down) > w.maxDown {
				w.maxDown, w.downAt, w.downWho = len(down), time.Now(), down
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

// probeHealth asks host's /health, served from the member's own state
// (serializable: etcd 3.5 and later answer without a round through the
// leader; 3.4 ignores the parameter), and says why it is not healthy, or
// "" when it is.
func probeHealth(hc *http.Client, host string) string {
	resp, err := hc.Get("https://" + host + ":2379/health?serializable=true")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body [256]byte
	n, _ := resp.Body.Read(body[:])
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body[:n]), `"health":"true"`) {
		return fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body[:n])))
	}
	return ""
}

// stop ends the writer and checks: every acknowledged key is there, never
// were two members unhealthy at one probe, and writes failed for no
// longer than a few seconds in a row (one member restarting, or a leader
// change, not a lost quorum).
func (w *writer) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	w.wg.Wait()
	defer w.cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := w.cli.Get(ctx, "/upgrade-writer/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = true
	}
	missing := 0
	for _, k := range w.acked {
		if !have[k] {
			missing++
		}
	}
	var longest time.Duration
	for i := 0; i < len(w.errs); {
		j := i
		for j+1 < len(w.errs) && w.errs[j+1].Sub(w.errs[j]) < 4*time.Second {
			j++
		}
		longest = max(longest, w.errs[j].Sub(w.errs[i]))
		i = j + 1
	}
	t.Logf("writer: %d writes acknowledged, %d failed (longest run of failures %s; last: %s); %d probes, most members down at once %d %v, probes down per member %v",
		len(w.acked), len(w.errs), longest.Round(time.Millisecond), w.lastEr, w.probes, w.maxDown, w.downWho, w.downTicks)
	switch {
	case len(w.acked) == 0:
		t.Fatal("the writer wrote nothing")
	case missing > 0:
		t.Fatalf("%d of %d acknowledged writes are missing", missing, len(w.acked))
	case w.maxDown > 1:
		t.Fatalf("%d members were unhealthy at once at %s: %v", w.maxDown, w.downAt.Format(time.RFC3339Nano), w.downWho)
	case longest > 10*time.Second:
		t.Fatalf("writes failed for %s in a row", longest)
	}
}
