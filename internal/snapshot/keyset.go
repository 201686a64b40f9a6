package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
)

// keySet counts the keys alive at the end of a revision-ordered run of
// puts and deletes: etcdutl's total_keys, which it computes with a set of
// every key in memory. Here keys are 128-bit hashes, held in memory up to
// a limit; past it the set and every later operation are appended to a
// temporary file, and the count reads that file back in as many passes as
// it takes to hold at most about twice the limit in memory, each pass
// taking the keys whose hash falls in its share. So memory stays bounded
// whatever the number of keys (a 1 GiB database of small keys can hold
// ten million of them: ~500 MB as a map).
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
	// pass holds about 2*limit at most.
	passes := uint64(max(1, (s.records+2*s.limit-1)/max(1, 2*s.limit)))
	total := 0
	set := make(map[[16]byte]struct{}, min(s.records, 2*s.limit))
	for pass := uint64(0); pass < passes; pass++ {
		r := bufio.NewReaderSize(io.NewSectionReader(s.spilled, 0, int64(s.records)*recordSize), 256<<10)
		var rec [recordSize]byte
		for {
			if _, err := io.ReadFull(r, rec[:]); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return 0, fmt.Errorf("read the spilled key set: %w", err)
			}
			id := [16]byte(rec[1:])
			if binary.LittleEndian.Uint64(id[0:8])%passes != pass {
				continue
			}
			if rec[0] == opPut {
				set[id] = struct{}{}
			} else {
				delete(set, id)
			}
		}
		total += len(set)
		clear(set)
	}
	return total, nil
}

// close removes the spill file.
func (s *keySet) close() {
	if s.spilled != nil {
		s.spilled.Close()
		os.Remove(s.spilled.Name())
	}
}
