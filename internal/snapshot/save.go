package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// tailHasher hashes everything written to it except the last 32 bytes,
// which it keeps: etcd's snapshot stream ends with the sha256 of the rest.
type tailHasher struct {
	tail [sha256.Size]byte
	n    int // bytes held in tail
	sum  hash.Hash
}

func (t *tailHasher) Write(p []byte) (int, error) {
	if len(p) >= sha256.Size {
		t.sum.Write(t.tail[:t.n])
		t.sum.Write(p[:len(p)-sha256.Size])
		t.n = copy(t.tail[:], p[len(p)-sha256.Size:])
		return len(p), nil
	}
	// Fewer than 32 new bytes: the oldest held bytes are no longer the tail.
	if over := t.n + len(p) - sha256.Size; over > 0 {
		t.sum.Write(t.tail[:over])
		copy(t.tail[:], t.tail[over:t.n])
		t.n -= over
	}
	t.n += copy(t.tail[t.n:], p)
	return len(p), nil
}

// sums returns the sha256 of all but the last 32 bytes, and of everything
// (one pass: Sum leaves the state as it was, so the whole is the body's
// state continued with the tail). ok is false when fewer than 32 bytes
// were written. The hasher is spent afterwards.
func (t *tailHasher) sums() (body, whole []byte, ok bool) {
	body = t.sum.Sum(nil)
	t.sum.Write(t.tail[:t.n])
	return body, t.sum.Sum(nil), t.n == sha256.Size
}

// StreamError is a snapshot stream that broke after Received bytes.
type StreamError struct {
	Received int64
	Err      error
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("stream the snapshot: %v (after %d bytes)", e.Err, e.Received)
}

func (e *StreamError) Unwrap() error { return e.Err }

// Saved is what Save wrote.
type Saved struct {
	Size   int64
	SHA256 string // of the whole file, as sha256sum prints it
}

// chunkSource yields a stream piece by piece: next appends the next piece
// to buf (growing it only if it must) and returns it, with io.EOF after
// the last.
type chunkSource interface {
	next(buf []byte) ([]byte, error)
}

// writeSize is the size of each write to the file: two of etcd's 32 KiB
// pieces. On Linux (6.x, ext4) writes of 128 KiB and more ask the page
// cache for large folios, and on a virtual machine those are often memory
// the host must first fault in: writing 1 GiB took 0.25 to 3 s in 1 MiB
// writes, a steady 0.27 s in 64 KiB ones (and 0.33 s in 32 KiB ones).
const writeSize = 64 << 10

// copyHashed copies src to dst in writes of about writeSize bytes, each
// then hashed by th, calling alive with the bytes of each. (Hashing on a
// goroutine of its own did not make a save faster in make bench.)
func copyHashed(dst io.Writer, src chunkSource, th *tailHasher, alive func(n int)) (int64, error) {
	var total int64
	buf := make([]byte, 0, writeSize)
	for {
		var rerr error
		buf, rerr = src.next(buf)
		if len(buf) > 0 && (rerr != nil || len(buf) > writeSize/2) {
			n, err := dst.Write(buf)
			total += int64(n)
			alive(n)
			if err != nil {
				return total, err
			}
			th.Write(buf)
			buf = buf[:0]
		}
		switch {
		case rerr == io.EOF:
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// writeBehind writes to a file and asks the kernel to start writing out
// each 8 MiB as soon as it is written (sync_file_range), so that the fsync
// after the stream finds little left to do: on 1 GiB it took 2–24 ms
// instead of 0.47–0.51 s.
type writeBehind struct {
	f             *os.File
	written, sent int64
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if w.written += int64(n); w.written-w.sent >= 8<<20 {
		unix.SyncFileRange(int(w.f.Fd()), w.sent, w.written-w.sent, unix.SYNC_FILE_RANGE_WRITE)
		w.sent = w.written
	}
	return n, err
}

// Save streams a snapshot from the client's (single) endpoint into path:
// a temporary file in the same directory, its sha256 trailer verified,
// fsynced and at the same time checked by check (if not nil; it gets the
// temporary file's name), then renamed over path and the directory
// fsynced. On any error nothing is left behind and path is untouched. The stream has no overall
// deadline (a large database takes as long as it takes) but fails when no
// byte arrives for stall.
func Save(ctx context.Context, cli *clientv3.Client, path string, mode os.FileMode, stall time.Duration,
	check func(tmp string, saved Saved) error) (saved Saved, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return Saved{}, fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return Saved{}, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(stall, func() { cancel(fmt.Errorf("no data for %s", stall)) })
	defer idle.Stop()

	src, err := openStream(ctx, cli)
	if err != nil {
		return Saved{}, fmt.Errorf("start the snapshot: %w", err)
	}
	th := &tailHasher{sum: sha256.New()}
	n, err := copyHashed(&writeBehind{f: tmp}, src, th, func(int) { idle.Reset(stall) })
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return Saved{}, &StreamError{Received: n, Err: err}
	}
	body, whole, ok := th.sums()
	if n < sha256.Size+1 || !ok {
		return Saved{}, fmt.Errorf("stream the snapshot: only %d bytes arrived", n)
	}
	if !bytes.Equal(body, th.tail[:]) {
		return Saved{}, fmt.Errorf("the snapshot stream is corrupt: its sha256 trailer does not match the %d bytes before it", n-sha256.Size)
	}
	saved = Saved{Size: n, SHA256: hex.EncodeToString(whole)}
	// The check reads the file from the page cache while fsync writes it
	// out: the two take about as long as each other on a large snapshot.
	checked := make(chan error, 1)
	go func() {
		// A damaged database can make bbolt panic; on this goroutine the
		// module runtime would not see it.
		defer func() {
			if r := recover(); r != nil {
				checked <- fmt.Errorf("%w: reading it failed: %v", ErrNotSnapshot, r)
			}
		}()
		if check == nil {
			checked <- nil
			return
		}
		checked <- check(tmp.Name(), saved)
	}()
	serr := tmp.Sync()
	cerr := <-checked
	switch {
	case serr != nil:
		return Saved{}, fmt.Errorf("fsync %s: %w", tmp.Name(), serr)
	case cerr != nil:
		return Saved{}, cerr
	}
	if err := tmp.Close(); err != nil {
		return Saved{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Saved{}, err
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return Saved{}, err
	}
	return saved, nil
}
