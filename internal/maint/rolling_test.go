package maint

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

func members3() []*Member {
	return []*Member{
		{ID: 0xa, Name: "etcd1", Healthy: true, Version: "3.5.35", RaftIndex: 1000, RaftApplied: 1000, IsLeader: true},
		{ID: 0xb, Name: "etcd2", Healthy: true, Version: "3.6.16", RaftIndex: 1000, RaftApplied: 990},
		{ID: 0xc, Name: "etcd3", Healthy: true, Version: "3.5.35", RaftIndex: 1000, RaftApplied: 999},
	}
}

func TestFind(t *testing.T) {
	ms := members3()
	tests := []struct{ ref, want string }{{"a", "etcd1"}, {"etcd2", "etcd2"}, {" c ", "etcd3"}, {"d", ""}, {"", ""}, {"etcd9", ""}}
	for _, tt := range tests {
		got := ""
		if m := Find(ms, tt.ref); m != nil {
			got = m.Name
		}
		if got != tt.want {
			t.Errorf("Find(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func TestTransferee(t *testing.T) {
	tests := []struct {
		name   string
		change func(ms []*Member)
		prefer string
		want   string
	}{
		{name: "most applied", want: "etcd3"},
		{name: "the target version first", prefer: "3.6.16", want: "etcd2"},
		{name: "v prefix", prefer: "v3.6.16", want: "etcd2"},
		{name: "not an unhealthy one", prefer: "3.6.16", change: func(ms []*Member) { ms[1].Healthy = false }, want: "etcd3"},
		{name: "not a learner", change: func(ms []*Member) { ms[2].IsLearner = true }, want: "etcd2"},
		{name: "by name when equal", change: func(ms []*Member) { ms[2].RaftApplied = 990 }, want: "etcd2"},
		{name: "none", change: func(ms []*Member) { ms[1].Healthy, ms[2].IsLearner = false, true }, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := members3()
			if tt.change != nil {
				tt.change(ms)
			}
			got := ""
			if m := Transferee(ms, ms[0], tt.prefer); m != nil {
				got = m.Name
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name    string
		change  func(v *View)
		expect  Expect
		missing []string // substrings, one per sentence expected
	}{
		{name: "ready", expect: Expect{MaxLag: 10}},
		{name: "lagging", expect: Expect{MaxLag: 5}, missing: []string{"etcd2 (b) has applied raft index 990, 10 behind the leader's 1000 (max_lag 5)"}},
		{name: "applied unknown (0): the committed index stands for it", expect: Expect{MaxLag: 5},
			change: func(v *View) { v.Members[1].RaftApplied = 0 }},
		{name: "down", expect: Expect{MaxLag: 10}, change: func(v *View) { v.Members[2].Healthy, v.Members[2].Problem = false, "did not answer" },
			missing: []string{"etcd3 (c) is not healthy: did not answer"}},
		{name: "no leader", expect: Expect{MaxLag: 10}, change: func(v *View) { v.LeaderID = 0 }, missing: []string{"no leader is known"}},
		{name: "member at version", expect: Expect{MaxLag: 10, Version: "3.6.16", Member: &Member{ID: 0xb}}},
		{name: "member not at version", expect: Expect{MaxLag: 10, Version: "3.6.16", Member: &Member{ID: 0xc, Name: "etcd3"}},
			missing: []string{"etcd3 (c) runs etcd 3.5.35, not 3.6.16"}},
		{name: "member gone", expect: Expect{MaxLag: 10, Version: "3.6.16", Member: &Member{ID: 0xd, Name: "etcd4"}},
			missing: []string{"etcd4 (d) is no longer a member"}},
		{name: "all at version, cluster version behind", expect: Expect{MaxLag: 10, Version: "3.6.16"},
			change: func(v *View) {
				for _, m := range v.Members {
					m.Version = "3.6.16"
				}
			}, missing: []string{"the cluster version is 3.5.0, not yet 3.6"}},
		{name: "all at version and the cluster version", expect: Expect{MaxLag: 10, Version: "3.6.16"},
			change: func(v *View) {
				for _, m := range v.Members {
					m.Version = "3.6.16"
				}
				v.ClusterVersion = "3.6.0"
			}},
		{name: "not all at version, cluster version unknown", expect: Expect{MaxLag: 10, Version: "3.6.16"},
			change:  func(v *View) { v.ClusterVersion = "" },
			missing: []string{"etcd1 (a) runs etcd 3.5.35, not 3.6.16", "etcd3 (c) runs etcd 3.5.35", "cluster version is unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{LeaderID: 0xa, ClusterVersion: "3.5.0", Members: members3()}
			if tt.change != nil {
				tt.change(v)
			}
			got := Readiness(v, tt.expect)
			if len(got) != len(tt.missing) {
				t.Fatalf("got %q, want %d sentences like %q", got, len(tt.missing), tt.missing)
			}
			for i, w := range tt.missing {
				if !strings.Contains(got[i], w) {
					t.Errorf("sentence %d: %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// TestLeaderMovedAndHealthy moves leadership away from the leader of a real
// cluster (check mode first, which moves nothing), finds nothing to do for
// a follower, and waits for the cluster with state=healthy: ready at once,
// at the version the members run, and not ready while a member is down.
func TestLeaderMovedAndHealthy(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	leader := c.Leader()
	st := execute(t, c)
	version := st.member(leader.Name).Version
	var follower string
	for _, m := range c.Members {
		if m != leader {
			follower = m.Name
			break
		}
	}

	pred := execute(t, c, "state", "leader_moved", "member", leader.Name, "_ansible_check_mode", true)
	if pred.Failed || !pred.Changed || !strings.Contains(pred.Msg, "would move leadership from "+leader.Name) || c.Leader() != leader {
		t.Fatalf("check mode: %+v (leader now %s)", pred, c.Leader().Name)
	}
	none := execute(t, c, "state", "leader_moved", "member", follower)
	if none.Failed || none.Changed || !strings.Contains(none.Msg, "does not lead") {
		t.Fatalf("a follower: %+v", none)
	}
	moved := execute(t, c, "state", "leader_moved", "member", st.member(leader.Name).ID, "version", version)
	if moved.Failed || !moved.Changed || !strings.Contains(moved.Msg, "moved leadership from "+leader.Name) {
		t.Fatalf("move: %+v", moved)
	}
	if now := c.Leader(); now == leader {
		t.Fatalf("%s still leads after the move", leader.Name)
	}
	if again := execute(t, c, "state", "leader_moved", "member", leader.Name); again.Failed || again.Changed {
		t.Fatalf("second move: %+v", again)
	}
	if bad := execute(t, c, "state", "leader_moved", "member", "nobody"); !bad.Failed || !strings.Contains(bad.Msg, "not in the member list") {
		t.Fatalf("unknown member: %+v", bad)
	}

	ok := execute(t, c, "state", "healthy", "member", follower, "version", version, "wait_timeout", 10)
	if ok.Failed || ok.Changed || !strings.Contains(ok.Msg, "every member is healthy and caught up") {
		t.Fatalf("healthy: %+v", ok)
	}
	if all := execute(t, c, "state", "healthy", "version", version, "wait_timeout", 10); all.Failed {
		t.Fatalf("healthy at %s with the cluster version %s: %+v", version, all.ClusterVersion, all)
	}
	// Another patch release than the members run: not ready, except in
	// check mode, which does not wait for the version.
	other, _ := ParseVersion(version)
	other.Patch++
	start := time.Now()
	notYet := execute(t, c, "state", "healthy", "member", follower, "version", other.String(), "wait_timeout", 2)
	if !notYet.Failed || !strings.Contains(notYet.Msg, "runs etcd "+version+", not "+other.String()) || time.Since(start) < 2*time.Second {
		t.Fatalf("another version: %+v", notYet)
	}
	if pred := execute(t, c, "state", "healthy", "member", follower, "version", other.String(), "wait_timeout", 2, "_ansible_check_mode", true); pred.Failed {
		t.Fatalf("check mode, another version: %+v", pred)
	}

	// One member down: not ready within the wait, and back when it is.
	stopped := c.Members[0]
	c.Stop(stopped)
	down := execute(t, c, "state", "healthy", "wait_timeout", 2)
	if !down.Failed || !strings.Contains(down.Msg, stopped.Name) || !strings.Contains(down.Msg, "not healthy") {
		t.Fatalf("a member down: %+v", down)
	}
	go func() {
		time.Sleep(time.Second)
		if err := c.Restart(stopped); err != nil {
			t.Error(err)
		}
	}()
	back := execute(t, c, "state", "healthy", "wait_timeout", 30)
	if back.Failed {
		t.Fatalf("after the restart: %+v", back)
	}
	t.Logf("back: %s", back.Msg)
}

// TestDefragmentLock: with lock=true a defragmentation waits for the etcd
// lock another holds (and gives up after defrag_timeout), and two at once
// take turns.
func TestDefragmentLock(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	cli := client(t, c)
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	mu := concurrency.NewMutex(s, LockKey)
	if err := mu.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := execute(t, c, "state", "defragmented", "force", true, "lock", true, "defrag_timeout", 2)
	if !held.Failed || !strings.Contains(held.Msg, "another defragmentation holds it") || len(held.Defragmented) != 0 {
		t.Fatalf("while the lock is held: %+v", held)
	}
	if err := mu.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()

	var wg sync.WaitGroup
	out := make([]result, 2)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = execute(t, c, "state", "defragmented", "force", true, "lock", true)
		}()
	}
	wg.Wait()
	for i, r := range out {
		if r.Failed || len(r.Defragmented) != 3 {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	if pred := execute(t, c, "state", "defragmented", "lock", true, "_ansible_check_mode", true); pred.Failed {
		t.Fatalf("check mode takes no lock and fails not: %+v", pred)
	}
	resp, err := cli.Get(context.Background(), LockKey, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("the lock is left behind: %v %v", err, resp)
	}
}
