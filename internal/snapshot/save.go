package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// tailHasher hashes everything written to it except the last 32 bytes,
// which it keeps: etcd's snapshot stream ends with the sha256 of the rest.
type tailHasher struct {
	body  [sha256.Size]byte
	n     int // bytes held in body
	sum   hash.Hash
	total int64
}

func (t *tailHasher) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	if len(p) >= sha256.Size {
		t.sum.Write(t.body[:t.n])
		t.sum.Write(p[:len(p)-sha256.Size])
		t.n = copy(t.body[:], p[len(p)-sha256.Size:])
		return len(p), nil
	}
	// Fewer than 32 new bytes: the oldest held bytes are no longer the tail.
	if over := t.n + len(p) - sha256.Size; over > 0 {
		t.sum.Write(t.body[:over])
		copy(t.body[:], t.body[over:t.n])
		t.n -= over
	}
	t.n += copy(t.body[t.n:], p)
	return len(p), nil
}

// progress counts bytes so a watchdog can tell a stalled stream.
type progress struct{ n atomic.Int64 }

func (p *progress) Write(b []byte) (int, error) {
	p.n.Add(int64(len(b)))
	return len(b), nil
}

// Save streams a snapshot from the client's (single) endpoint into path:
// a temporary file in the same directory, fsynced, its sha256 trailer
// verified, then renamed over path and the directory fsynced. On any error
// nothing is left behind and path is untouched. The stream has no overall
// deadline (a large database takes as long as it takes) but fails when no
// byte arrives for stall.
func Save(ctx context.Context, cli *clientv3.Client, path string, mode os.FileMode, stall time.Duration) (written int64, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return 0, fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return 0, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{}
	go func() {
		last := int64(-1)
		tick := time.NewTicker(stall / 4)
		defer tick.Stop()
		idle := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if n := prog.n.Load(); n != last {
					last, idle = n, 0
					continue
				}
				if idle += stall / 4; idle >= stall {
					cancel(fmt.Errorf("no data for %s after %d bytes", stall, last))
					return
				}
			}
		}
	}()

	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("start the snapshot: %w", err)
	}
	defer rc.Close()
	th := &tailHasher{sum: sha256.New()}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, th, prog), rc, buf)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return n, fmt.Errorf("stream the snapshot: %w (after %d bytes)", err, n)
	}
	if n < sha256.Size+1 || th.n != sha256.Size {
		return n, fmt.Errorf("stream the snapshot: only %d bytes arrived", n)
	}
	if !bytes.Equal(th.sum.Sum(nil), th.body[:]) {
		return n, fmt.Errorf("the snapshot stream is corrupt: its sha256 trailer does not match the %d bytes before it", n-sha256.Size)
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, err
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return n, err
	}
	return n, nil
}
