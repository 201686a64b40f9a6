//go:build lab

package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// dbSizes is each host's database file size, from its member's status.
func dbSizes(t *testing.T, hosts []string, ca, cert, key string) map[string]int64 {
	t.Helper()
	cli := tlsClient(t, hosts, ca, cert, key)
	defer cli.Close()
	out := map[string]int64{}
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := cli.Status(ctx, "https://"+h+":2379")
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", h, err)
		}
		out[h] = st.DbSize
	}
	return out
}

func tlsClient(t *testing.T, hosts []string, ca, cert, key string) *clientv3.Client {
	t.Helper()
	cli, err := etcdconn.New(etcdconn.Options{Endpoints: endpoints(hosts), CACert: ca, ClientCert: cert, ClientKey: key,
		DialTimeout: 5, CommandTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// fillAndDelete writes n keys of size random bytes under prefix through
// hosts' members, then deletes them: their pages are free once compacted.
func fillAndDelete(t *testing.T, hosts []string, ca, cert, key, prefix string, n, size int) {
	t.Helper()
	cli := tlsClient(t, hosts, ca, cert, key)
	defer cli.Close()
	val := make([]byte, size)
	ctx := context.Background()
	for i := range n {
		rand.Read(val)
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%05d", prefix, i), string(val)); err != nil {
			t.Fatalf("fill %s: %v", prefix, err)
		}
	}
	if _, err := cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

// expectShrunk fails unless every member's database is at most share of
// its size before.
func expectShrunk(t *testing.T, before, after map[string]int64, share float64) {
	t.Helper()
	for h, b := range before {
		t.Logf("%s: database %d KiB before, %d KiB after", h, b>>10, after[h]>>10)
		if float64(after[h]) > share*float64(b) {
			t.Fatalf("%s's database went from %d to %d bytes, not down to %.0f%% or less", h, b, after[h], share*100)
		}
	}
}

// TestDefragAndNoSpace fills a member-space-limited cluster until etcd
// raises NOSPACE and refuses writes, then recovers it with
// defrag_etcd.yml -e etcd_disarm_nospace=true (compact, defragment every
// member, disarm, check a write); a later run with free space below the
// threshold changes nothing. cluster_status.yml reports the alarm first.
func TestDefragAndNoSpace(t *testing.T) {
	l := NewLab(t, 3, 3)
	h := l.Hosts
	quota := "etcd_quota_backend_bytes=16777216"
	l.MustPlaybook("playbooks/02.etcd.yml", quota)

	// 48 KiB of random bytes, base64: 64 KiB values until etcd refuses.
	out, _ := l.SSH(h[0], `for i in $(seq 1 400); do head -c 49152 /dev/urandom | base64 -w0 | etcdctl put /fill/$i >/dev/null 2>/tmp/put.err || break; done; cat /tmp/put.err`)
	if !strings.Contains(out, "database space exceeded") {
		t.Fatalf("the cluster never reached its quota: %s", out)
	}
	l.MustSSH(h[0], "etcdctl del --prefix /fill/ >/dev/null")
	status := l.MustPlaybook("playbooks/tools/cluster_status.yml", quota)
	if !strings.Contains(status.Output, "NOSPACE") {
		t.Fatalf("cluster_status.yml does not show the NOSPACE alarm\n%s", tail(status.Output, 40))
	}

	ca, cert, key := l.PKIDir+"/ca.pem", l.PKIDir+"/etcd-client.pem", l.PKIDir+"/etcd-client-key.pem"
	before := dbSizes(t, h, ca, cert, key)
	r := l.MustPlaybook("playbooks/tools/defrag_etcd.yml", quota, "etcd_disarm_nospace=true")
	if r.Changed() == 0 {
		t.Fatalf("defrag_etcd.yml with etcd_disarm_nospace changed nothing\n%s", tail(r.Output, 40))
	}
	// Every value was deleted and the recovery compacts first: the ~16 MiB
	// of values are free, and each file shrinks to a small part of it.
	expectShrunk(t, before, dbSizes(t, h, ca, cert, key), 0.25)
	if out, err := l.SSH(h[1], "etcdctl put /after-recovery ok && etcdctl alarm list"); err != nil || strings.Contains(out, "NOSPACE") {
		t.Fatalf("writes do not work after the recovery, or the alarm is still there: %v\n%s", err, out)
	}
	for _, m := range h {
		out := l.MustSSH(m, "ETCDCTL_ENDPOINTS=https://"+m+":2379 etcdctl endpoint status -w json")
		if !strings.Contains(out, `"dbSize":`) {
			t.Fatalf("no status from %s: %s", m, out)
		}
	}
	if again := l.MustPlaybook("playbooks/tools/defrag_etcd.yml", quota); again.Changed() != 0 {
		t.Fatalf("a second defragmentation changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}

	// The timer: every 15 s on every member, forced, so each firing
	// defragments all three; the members take turns through the lock.
	schedule := []string{quota, `{"etcd_defrag_schedule": "*-*-* *:*:00/15"}`, "etcd_defrag_force=true"}
	l.MustPlaybook("playbooks/tools/defrag_etcd.yml", schedule...)
	if again := l.MustPlaybook("playbooks/tools/defrag_etcd.yml", schedule...); again.Changed() != 0 {
		t.Fatalf("installing the timer again changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, m := range h {
		for {
			out := l.MustSSH(m, "systemctl show -p Result -p ExecMainExitTimestampMonotonic -p ExecMainStatus etcdops-defrag.service")
			if !strings.Contains(out, "ExecMainExitTimestampMonotonic=0\n") {
				if !strings.Contains(out, "Result=success") || !strings.Contains(out, "ExecMainStatus=0") {
					t.Fatalf("the timer's run on %s failed: %s\n%s", m, out, l.MustSSH(m, "journalctl -u etcdops-defrag.service --no-pager | tail -20"))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the timer did not fire on %s within 90 s: %s", m, out)
			}
			time.Sleep(2 * time.Second)
		}
		if j := l.MustSSH(m, "journalctl -u etcdops-defrag.service --no-pager"); !strings.Contains(j, "defragmented etcd") {
			t.Fatalf("the timer's run on %s defragmented nothing:\n%s", m, tail(j, 20))
		}
	}
	l.MustPlaybook("playbooks/tools/defrag_etcd.yml", quota, "etcd_defrag_schedule=off")
	for _, m := range h {
		out, _ := l.SSH(m, "for f in /etc/systemd/system/etcdops-defrag.timer /etc/systemd/system/etcdops-defrag.service /etc/etcdops/defrag.json; "+
			"do test ! -e $f || echo LEFT $f; done; systemctl is-enabled etcdops-defrag.timer 2>&1")
		if strings.Contains(out, "LEFT") || strings.HasPrefix(out, "enabled") {
			t.Fatalf("the timer is still there on %s: %s", m, out)
		}
	}
	if again := l.MustPlaybook("playbooks/tools/defrag_etcd.yml", quota, "etcd_defrag_schedule=off"); again.Changed() != 0 {
		t.Fatalf("removing the timer again changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
}
