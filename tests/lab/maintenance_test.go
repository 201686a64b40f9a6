//go:build lab

package lab

import (
	"strings"
	"testing"
)

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

	r := l.MustPlaybook("playbooks/tools/defrag_etcd.yml", quota, "etcd_disarm_nospace=true")
	if r.Changed() == 0 {
		t.Fatalf("defrag_etcd.yml with etcd_disarm_nospace changed nothing\n%s", tail(r.Output, 40))
	}
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
}
