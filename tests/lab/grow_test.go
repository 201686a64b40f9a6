//go:build lab

package lab

import "testing"

// TestGrowSingleMember grows a one-member cluster of this project's own
// layout (as every kubeasz all-in-one cluster starts) to three, one host of
// [new-etcd] per run, with the data on every member.
func TestGrowSingleMember(t *testing.T) {
	l := NewLab(t, 3, 1)
	h := l.Hosts
	l.MustPlaybook("playbooks/02.etcd.yml")
	l.PutKeys(h[0], "grow/", 0, 200)
	l.MoveHost(h[1], "lab_spare", "new-etcd")
	l.MoveHost(h[2], "lab_spare", "new-etcd")
	for _, want := range [][]string{{"etcd1", "etcd-" + h[1]}, {"etcd1", "etcd-" + h[1], "etcd-" + h[2]}} {
		l.MustPlaybook("playbooks/19.addetcd.yml")
		l.ExpectVoters(h[0], want...)
	}
	if r := l.MustPlaybook("playbooks/19.addetcd.yml"); r.Changed() != 0 {
		t.Fatalf("a run with [new-etcd] empty changed %d tasks", r.Changed())
	}
	l.ExpectGroup("etcd", h...)
	l.ExpectGroup("new-etcd")
	for _, m := range h {
		if got := l.Count(m, "grow/"); got != 200 {
			t.Fatalf("%s holds %d of the 200 keys", m, got)
		}
	}
}
