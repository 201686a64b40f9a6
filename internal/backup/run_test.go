package backup

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
	"github.com/etcdops/etcdops/internal/snapdir"
	"github.com/etcdops/etcdops/internal/snapshot"
)

func TestMain(m *testing.M) {
	if snapshot.RunCheckChildIfAsked() || runChildIfAsked() {
		return
	}
	os.Exit(m.Run())
}

// Three members fire at the same second: exactly one object is made, and
// the two others see who made it.
func TestRaceMakesExactlyOneObject(t *testing.T) {
	cl := etcdtest.NewCluster(t, 3)
	srv := s3test.Start(t)
	now := time.Now()
	var wg sync.WaitGroup
	results := make([]Result, 3)
	errs := make([]error, 3)
	for i, m := range cl.Members {
		s3 := srv.Config("c1/")
		c := Config{Etcd: cl.Options(), Period: time.Hour, Member: m.Name, LockTTL: 5, LockWait: time.Minute,
			Dir: t.TempDir(), Keep: 2, S3: &s3, S3Keep: 3, Layers: codec.Layers{Compression: codec.Zstd}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(context.Background(), c, now)
		}()
	}
	wg.Wait()
	taken := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if results[i].Taken != nil {
			taken++
		}
		t.Log(results[i].Line())
	}
	keys := srv.Keys(t)
	if taken != 1 || len(keys) != 1 || !strings.HasSuffix(keys[0], ".db.zst") {
		t.Errorf("taken by %d runs, objects %v", taken, keys)
	}
}

// Snapshots left pending are judged by the period of the settings the run
// has, not by the one they were taken under: after the period changes from
// 1h to 20s, two pending snapshots of the same 20 s are one period's, so
// the store gets one object for it, and the other is superseded.
func TestPendingSnapshotsJudgedByTheCurrentPeriod(t *testing.T) {
	cl := etcdtest.NewCluster(t, 1)
	srv := s3test.Start(t)
	s3 := srv.Config("c1/")
	c := Config{Etcd: cl.Options(), Period: 20 * time.Second, Member: "m0", LockTTL: 5, LockWait: time.Minute,
		Dir: t.TempDir(), Keep: 10, S3: &s3, S3Keep: 10, Layers: codec.Layers{Compression: codec.None}}
	base := time.Date(2026, 12, 3, 17, 7, 0, 0, time.UTC)
	var locals []Local
	for _, sec := range []int{18, 41, 43} {
		at := base.Add(time.Duration(sec) * time.Second)
		l := Local{Path: snapdir.NewName(c.Dir, at), Time: at, Period: PeriodOf(at, time.Hour), Member: "m0", Revision: int64(sec)}
		if err := os.WriteFile(l.Path, []byte("snapshot taken at "+at.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if l.SHA256, err = fileSHA256(l.Path); err != nil {
			t.Fatal(err)
		}
		if err := markPending(l); err != nil {
			t.Fatal(err)
		}
		locals = append(locals, l)
	}
	// At 17:07:50 the run's period holds :41 and :43: the newest goes up as
	// the period's, :18 as its own period's.
	res, err := Run(context.Background(), c, base.Add(50*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Taken == nil || !res.Taken.Time.Equal(locals[2].Time) {
		t.Fatalf("the run's snapshot is %+v, want the pending one of 17:07:43", res.Taken)
	}
	// The next period's run takes its own snapshot and finds :41's period
	// in the store already.
	if _, err := Run(context.Background(), c, base.Add(65*time.Second)); err != nil {
		t.Fatal(err)
	}
	periods := map[time.Time]int{}
	objs, err := srv.Store(t, "c1/").List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		periods[PeriodOf(o.Time, c.Period)]++
	}
	want := map[time.Time]int{base: 1, base.Add(40 * time.Second): 1, base.Add(60 * time.Second): 1}
	if len(periods) != len(want) {
		t.Fatalf("objects by period %v, want %v", periods, want)
	}
	for p, n := range want {
		if periods[p] != n {
			t.Fatalf("objects by period %v, want %v", periods, want)
		}
	}
	if left, _ := pending(c.Dir); len(left) != 0 {
		t.Errorf("still pending: %+v", left)
	}
	var l Local
	if ok, err := readJSON(companion(locals[1].Path, uploadedExt), &l); !ok || err != nil || l.SupersededBy == "" {
		t.Errorf("the snapshot of 17:07:41 is not recorded as superseded: %+v %v %v", l, ok, err)
	}
}

// The period is recorded done once its snapshot is in the store: when an
// earlier period's upload then fails, the run fails, but another member
// firing in the same period takes no second backup.
func TestFailedCatchUpStillRecordsThePeriod(t *testing.T) {
	cl := etcdtest.NewCluster(t, 1)
	srv := s3test.Start(t)
	s3 := srv.Config("c1/")
	cfg := func(member string) Config {
		return Config{Etcd: cl.Options(), Period: 20 * time.Second, Member: member, LockTTL: 5, LockWait: time.Minute,
			Dir: t.TempDir(), Keep: 10, S3: &s3, S3Keep: 10, Layers: codec.Layers{Compression: codec.None}}
	}
	base := time.Date(2026, 12, 3, 17, 7, 0, 0, time.UTC)
	a, b := cfg("m0"), cfg("m1")
	// An earlier period's pending snapshot that cannot be read: a directory
	// where the file should be.
	old := Local{Path: snapdir.NewName(a.Dir, base.Add(18*time.Second)), Time: base.Add(18 * time.Second), Member: "m0"}
	if err := os.Mkdir(old.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := markPending(old); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), a, base.Add(50*time.Second)); err == nil {
		t.Fatal("a run whose earlier upload failed succeeded")
	}
	res, err := Run(context.Background(), b, base.Add(55*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped == nil || res.Skipped.Member != "m0" {
		t.Fatalf("the second member's run in the same period: %s", res.Line())
	}
	if keys := srv.Keys(t); len(keys) != 1 {
		t.Errorf("objects %v, want the first run's one", keys)
	}
}
