package maint

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

// TestDefragTiming measures the defragmentation of one member's database
// of ETCDOPS_DEFRAG_MIB MiB, half of it free after deleting every other
// key and compacting (skipped without it: it writes that much to disk).
func TestDefragTiming(t *testing.T) {
	mib, err := strconv.Atoi(os.Getenv("ETCDOPS_DEFRAG_MIB"))
	if err != nil || mib <= 0 {
		t.Skip("set ETCDOPS_DEFRAG_MIB to the database size to measure")
	}
	c := etcdtest.NewCluster(t, 1, etcdtest.QuotaBackendBytes(int64(mib+64)<<20))
	cli := client(t, c)
	ctx := context.Background()
	value := strings.Repeat("x", 64<<10)
	n := mib * 16
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := cli.Put(ctx, fmt.Sprintf("/fill/%07d", i), value); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB in %v", mib, time.Since(start))
	// Every other key deleted: half the database stays live, spread over
	// every page, which the defragmentation copies.
	start = time.Now()
	errs = make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 2 * w; i < n; i += 16 {
				if _, err := cli.Delete(ctx, fmt.Sprintf("/fill/%07d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted every other key in %v", time.Since(start))
	res := execute(t, c, "state", "defragmented", "compact", true, "command_timeout", 60, "min_free_share", 0.2)
	if res.Failed || len(res.Defragmented) != 1 {
		t.Fatalf("%+v", res)
	}
	d := res.Defragmented[0]
	t.Logf("compacted to %d; defragmented %s: %d → %d bytes in %.2f s", res.CompactedRevision, d.Name, d.DBSizeBefore, d.DBSizeAfter, d.Seconds)
}
