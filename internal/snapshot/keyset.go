package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"sync"
)

// keySet counts the keys alive at the end of a revision-ordered run of
// puts and deletes: etcdutl's total_keys, which it computes with a set of
// every key in memory. Here keys are 128-bit hashes, held in memory up to
// a limit; past it the set and every later operation are appended to a
// temporary file, and the count reads that file back in as many passes as
// it takes to hold about the limit in memory, each pass taking the keys
// whose hash falls in its share. So memory stays bounded whatever the
// number of keys (a 1 GiB database of small keys can hold ten million of
// them: ~500 MB as a map).
type keySet struct {
	seeds   [2]maphash.Seed // the two halves of a key's hash
	mem     map[[16]byte]struct{}
	limit   int      // keys held in memory before spilling
	spilled *os.File // nil until the first spill
	w       *bufio.Writer
	records int // records in spilled
}

// Spill record: one operation byte and the key's hash.
const (
	opPut      = 'p'
	opDel      = 'd'
	recordSize = 1 + 16
)

// defaultKeySetLimit keeps the in-memory set to about 8 MiB.
const defaultKeySetLimit = 1 << 18

func newKeySet(limit int) *keySet {
	return &keySet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		mem: map[[16]byte]struct{}{}, limit: limit}
}

// id is the key's 128-bit hash: two seeded 64-bit hashes, random for each
// set, which is all that counting within one run needs.
func (s *keySet) id(key []byte) [16]byte {
	var id [16]byte
	binary.LittleEndian.PutUint64(id[0:8], maphash.Bytes(s.seeds[0], key))
	binary.LittleEndian.PutUint64(id[8:16], maphash.Bytes(s.seeds[1], key))
	return id
}

func (s *keySet) put(id [16]byte) error {
	if s.spilled != nil {
		return s.spill(opPut, id)
	}
	s.mem[id] = struct{}{}
	if len(s.mem) > s.limit {
		return s.startSpilling()
	}
	return nil
}

func (s *keySet) del(id [16]byte) error {
	if s.spilled != nil {
		return s.spill(opDel, id)
	}
	delete(s.mem, id)
	return nil
}

// startSpilling writes the set out as puts; every later operation is
// appended after them.
func (s *keySet) startSpilling() error {
	f, err := os.CreateTemp("", "etcd_snapshot-keys-")
	if err != nil {
		return fmt.Errorf("spill the key set: %w", err)
	}
	s.spilled, s.w = f, bufio.NewWriterSize(f, 64<<10)
	for id := range s.mem {
		if err := s.spill(opPut, id); err != nil {
			return err
		}
	}
	s.mem = nil
	return nil
}

func (s *keySet) spill(op byte, id [16]byte) error {
	var rec [recordSize]byte
	rec[0] = op
	copy(rec[1:], id[:])
	if _, err := s.w.Write(rec[:]); err != nil {
		return fmt.Errorf("spill the key set: %w", err)
	}
	s.records++
	return nil
}

// count returns the number of keys in the set.
func (s *keySet) count() (int, error) {
	if s.spilled == nil {
		return len(s.mem), nil
	}
	if err := s.w.Flush(); err != nil {
		return 0, fmt.Errorf("spill the key set: %w", err)
	}
	// Every put record may be a distinct key: share them out so that a
	// pass holds about limit keys at most. Two passes run at a time, one
	// for each of the two cores this is meant to run well on.
	perPass := max(s.limit, 4096) // a tiny limit should not mean a pass per key
	passes := uint64(max(1, (s.records+perPass-1)/perPass))
	const workers = 2
	counts := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set := make(map[[16]byte]struct{}, min(s.records, s.limit))
			for pass := uint64(w); pass < passes; pass += workers {
				n, err := s.countPass(set, pass, passes)
				if err != nil {
					errs[w] = err
					return
				}
				counts[w] += n
				clear(set)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return total, nil
}

// countPass replays the spilled operations on the keys whose hash falls
// in this pass's share and returns how many are left.
func (s *keySet) countPass(set map[[16]byte]struct{}, pass, passes uint64) (int, error) {
	buf := make([]byte, recordSize*(64<<10))
	size := int64(s.records) * recordSize
	for off := int64(0); off < size; {
		n, err := s.spilled.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n%recordSize != 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return 0, fmt.Errorf("read the spilled key set: %d bytes at %d: %v", n, off, err)
		}
		for rec := buf[:n]; len(rec) > 0; rec = rec[recordSize:] {
			id := [16]byte(rec[1:recordSize])
			if binary.LittleEndian.Uint64(id[0:8])%passes != pass {
				continue
			}
			if rec[0] == opPut {
				set[id] = struct{}{}
			} else {
				delete(set, id)
			}
		}
		off += int64(n)
	}
	return len(set), nil
}

// close removes the spill file.
func (s *keySet) close() {
	if s.spilled != nil {
		s.spilled.Close()
		os.Remove(s.spilled.Name())
	}
}

// keyFeed applies operations to a keySet on its own goroutine, in
// batches, so that reading the database (on the caller's goroutine) and
// updating the set (on this one) use both cores.
type keyFeed struct {
	set   *keySet
	batch []keyOp
	work  chan []keyOp
	free  chan []keyOp
	done  chan error
}

type keyOp struct {
	del bool
	id  [16]byte
}

const keyBatch = 4096

func (s *keySet) feed() *keyFeed {
	f := &keyFeed{set: s, work: make(chan []keyOp, 2), free: make(chan []keyOp, 3), done: make(chan error, 1)}
	for range 3 {
		f.free <- make([]keyOp, 0, keyBatch)
	}
	f.batch = <-f.free
	go func() {
		var err error
		for b := range f.work {
			for _, op := range b {
				if err != nil {
					break // drain: the reader learns of the error at finish
				}
				if op.del {
					err = s.del(op.id)
				} else {
					err = s.put(op.id)
				}
			}
			f.free <- b[:0]
		}
		f.done <- err
	}()
	return f
}

func (f *keyFeed) add(del bool, id [16]byte) {
	f.batch = append(f.batch, keyOp{del, id})
	if len(f.batch) == keyBatch {
		f.work <- f.batch
		f.batch = <-f.free
	}
}

// finish applies what is left and returns the first error of any
// operation.
func (f *keyFeed) finish() error {
	if len(f.batch) > 0 {
		f.work <- f.batch
	}
	close(f.work)
	return <-f.done
}
