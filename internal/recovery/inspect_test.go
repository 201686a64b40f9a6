package recovery

import (
	"context"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

// TestInspectWithoutQuorum checks on real etcd what the recovery relies
// on: a member that lost its quorum still answers Status and its member
// list, its linearizable read does not answer, and once it is stopped its
// database file gives the same applied index and revision.
func TestInspectWithoutQuorum(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	ctx := context.Background()
	if err := c.Put(ctx, "k/", 50, []byte("v")); err != nil {
		t.Fatal(err)
	}
	m0 := c.Members[0]
	o := c.Options(m0)
	o.DialTimeout = 2

	healthy, err := Inspect(ctx, o, m0.Name, m0.DataDir)
	if err != nil || !healthy.Quorum || !healthy.Running || len(healthy.Members) != 3 {
		t.Fatalf("healthy cluster: %+v, %v", healthy, err)
	}

	c.Stop(c.Members[1])
	c.Stop(c.Members[2])
	time.Sleep(2 * time.Second) // the leader steps down after an election timeout
	lost, err := Inspect(ctx, o, m0.Name, m0.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !lost.Running || lost.Source != "status" || lost.Quorum || lost.LeaderID != "" || len(lost.Members) != 3 {
		t.Fatalf("without quorum: %+v", lost)
	}
	if lost.Revision < 51 || lost.AppliedIndex == 0 || lost.MemberID != healthy.MemberID {
		t.Fatalf("without quorum: revision %d, applied %d, member %s", lost.Revision, lost.AppliedIndex, lost.MemberID)
	}

	c.Stop(m0)
	stopped, err := Inspect(ctx, o, m0.Name, m0.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Running || stopped.Source != "data" || stopped.Revision != lost.Revision {
		t.Fatalf("stopped: %+v, want revision %d from its data", stopped, lost.Revision)
	}
	// The backend commits its consistent index at least as far as the
	// revision it holds; it may trail the applied index by entries that
	// changed no key (elections, member attributes).
	if stopped.AppliedIndex == 0 || stopped.AppliedIndex > lost.AppliedIndex {
		t.Fatalf("stopped: consistent index %d, the running member applied %d", stopped.AppliedIndex, lost.AppliedIndex)
	}

	c.Stop(c.Members[0])
	if _, err := Inspect(ctx, o, m0.Name, t.TempDir()); err == nil {
		t.Fatal("no etcd and no data: no error")
	}
}
