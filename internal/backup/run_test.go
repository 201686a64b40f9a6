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
