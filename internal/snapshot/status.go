// Package snapshot is the etcd_snapshot Ansible module: it streams a
// snapshot from a running member to a file (verifying the sha256 etcd
// appends, then renaming atomically), reports a snapshot file's status the
// way `etcdutl snapshot status` does, keeps a "latest" name pointing at the
// newest snapshot and prunes old ones.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// Status is what a snapshot file holds, with the numbers etcdutl prints.
type Status struct {
	Path string
	Size int64
	// SHA256 is the hash of the whole file, trailer included (what
	// sha256sum prints).
	SHA256 string
	// HasTrailer reports whether the file ends with the sha256 of the rest
	// (as a snapshot streamed from etcd does; a copy of a member's db file
	// does not), which then was verified.
	HasTrailer bool
	Hash       uint32 // etcdutl's hash: CRC-32C of every bucket name, key and value
	Revision   int64
	TotalKeys  int
	TotalSize  int64
	Version    string // storage version, empty before etcd 3.6
}

const (
	trailerLen  = sha256.Size
	boltMagic   = 0xED0CDAED
	pageHeader  = 16 // bbolt page header: id, flags, count, overflow
	metaMinSize = pageHeader + 64
)

// ErrNotSnapshot, ErrTruncated and ErrCorrupt say what is wrong with a
// file that fails ReadStatus.
var (
	ErrNotSnapshot = errors.New("not an etcd snapshot")
	ErrTruncated   = errors.New("truncated")
	ErrCorrupt     = errors.New("sha256 mismatch: the file is corrupt or was modified")
)

// boltMeta is what ReadStatus needs from a bbolt meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high water mark: pages in use
	txid     uint64
}

// readMeta reads the newest valid meta page of a bbolt file.
func readMeta(f *os.File) (boltMeta, error) {
	var best boltMeta
	found := false
	buf := make([]byte, metaMinSize)
	offsets := []int64{0}
	for i := 0; i < len(offsets); i++ {
		if _, err := f.ReadAt(buf, offsets[i]); err != nil {
			continue
		}
		m := buf[pageHeader:]
		if binary.LittleEndian.Uint32(m[0:4]) != boltMagic {
			continue
		}
		meta := boltMeta{
			pageSize: binary.LittleEndian.Uint32(m[8:12]),
			pgid:     binary.LittleEndian.Uint64(m[40:48]),
			txid:     binary.LittleEndian.Uint64(m[48:56]),
		}
		if meta.pageSize < 512 || meta.pageSize > 1<<20 || meta.pageSize&(meta.pageSize-1) != 0 {
			continue
		}
		if i == 0 {
			offsets = append(offsets, int64(meta.pageSize))
		}
		if !found || meta.txid > best.txid {
			best, found = meta, true
		}
	}
	if !found {
		return best, fmt.Errorf("%w: no bbolt database header", ErrNotSnapshot)
	}
	return best, nil
}

// ReadStatus checks a snapshot file — its bbolt header, its length, the
// sha256 trailer, bbolt's own consistency check — and computes what
// `etcdutl snapshot status` prints. It streams the file for the sha256 and
// reads the database through bbolt's read-only memory map, dropping the
// pages it has read from the map as it goes and running the check on a
// cold page cache, so that its memory does not grow with the file;
// distinct keys are counted by a 128-bit hash of each, in a set that
// spills to a file when large (keySet).
func ReadStatus(path string) (Status, error) {
	return readStatus(path, "")
}

// readStatus is ReadStatus; a non-empty wholeSHA256 is the file's sha256,
// already computed, and its trailer verified, while the file was streamed
// from etcd: the bytes are then known to be the ones etcd sent, so neither
// the hash nor bbolt's consistency check (which guards against damage at
// rest) is repeated, and only etcdutl's numbers are computed.
func readStatus(path, wholeSHA256 string) (Status, error) {
	return readStatusKeys(path, wholeSHA256, defaultKeySetLimit)
}

// readStatusKeys is readStatus with the number of keys counted in memory
// before the count spills to a file.
func readStatusKeys(path, wholeSHA256 string, keyLimit int) (Status, error) {
	st := Status{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return st, err
	}
	if !info.Mode().IsRegular() {
		return st, fmt.Errorf("%s is not a regular file", path)
	}
	st.Size = info.Size()
	meta, err := readMeta(f)
	if err != nil {
		return st, err
	}
	dbLen := int64(meta.pgid) * int64(meta.pageSize)
	switch {
	case st.Size == dbLen+trailerLen:
		st.HasTrailer = true
	case st.Size < dbLen:
		return st, fmt.Errorf("%w: %d bytes, but its database header says %d (%d pages of %d bytes)",
			ErrTruncated, st.Size, dbLen, meta.pgid, meta.pageSize)
	case st.Size == dbLen, st.Size%int64(meta.pageSize) == 0:
		// A database file without trailer (a member's db, or one that has
		// pages beyond its high water mark): nothing to verify it against.
	default:
		return st, fmt.Errorf("%w: %d bytes is neither the database's %d bytes nor that plus a %d-byte sha256",
			ErrTruncated, st.Size, dbLen, trailerLen)
	}

	if wholeSHA256 != "" {
		// Streamed from etcd and its trailer verified: only the numbers.
		st.SHA256 = wholeSHA256
		return st, st.withDB(path, func(db *bolt.DB, md *mapDropper) error { return st.readNumbers(db, md, keyLimit) })
	}
	// The sha256 first: bbolt is never run on a file whose trailer says it
	// is damaged (its check can crash on a damaged database, in a goroutine
	// of its own where nothing can recover).
	th := &tailHasher{sum: sha256.New()}
	if _, err := io.Copy(th, io.NewSectionReader(f, 0, st.Size)); err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	body, whole, ok := th.sums()
	if st.HasTrailer && (!ok || !bytes.Equal(body, th.tail[:])) {
		return st, fmt.Errorf("%w (the sha256 of its first %d bytes is not the one stored in its last %d)",
			ErrCorrupt, st.Size-trailerLen, trailerLen)
	}
	st.SHA256 = hex.EncodeToString(whole)
	// Then bbolt's check on a cold page cache (see evictCache), then the
	// numbers, which read everything: the kernel may read ahead for them.
	evictCache(f)
	return st, st.withDB(path, func(db *bolt.DB, md *mapDropper) error {
		if !st.HasTrailer {
			// Nothing vouches for these bytes: walk the trees first where
			// a damaged page's panic can be recovered.
			if err := walkDB(db, md); err != nil {
				return err
			}
		}
		if problems := checkDB(db, md); len(problems) > 0 {
			return fmt.Errorf("%w: bbolt consistency check failed: %s", ErrNotSnapshot, strings.Join(problems, "; "))
		}
		md.sequential()
		return st.readNumbers(db, md, keyLimit)
	})
}

// evictCache writes out and drops the file's pages from the page cache.
// bbolt's check reads the database through its memory map, and in a page
// that is cached the kernel maps the neighbouring cached pages with it
// (fault-around, 64 KiB, whatever madvise says): on a cached 1 GiB
// snapshot the check alone made the whole file resident in this process.
// From a cold cache each page it touches is read and mapped alone (bbolt
// asks for random access), which is a few percent of the file. Best
// effort: where it fails, the check still runs, only with more mapped.
func evictCache(f *os.File) {
	f.Sync() // only clean pages can be dropped
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// withDB opens the database read-only for f.
func (st *Status) withDB(path string, f func(*bolt.DB, *mapDropper) error) error {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: bbolt cannot open it: %v", ErrNotSnapshot, err)
	}
	defer db.Close()
	return f(db, newMapDropper(db, st.Size))
}

// checkDB runs bbolt's consistency check (what etcdutl runs before it
// computes its numbers) and returns the first problems it finds, and how
// many more there were.
func checkDB(db *bolt.DB, md *mapDropper) []string {
	var problems []string
	more := 0
	db.View(func(tx *bolt.Tx) error {
		md.during(func() {
			// Every problem is received: the check's goroutine would
			// otherwise block for ever on its channel.
			for err := range tx.Check() {
				if len(problems) < 5 {
					problems = append(problems, err.Error())
				} else {
					more++
				}
			}
		})
		return nil
	})
	if more > 0 {
		problems = append(problems, fmt.Sprintf("and %d more", more))
	}
	return problems
}

// walkDB visits every key of every bucket through bbolt's cursors, which
// reads every branch and leaf page that bbolt's check will visit, on this
// goroutine. bbolt's check cannot be stopped from crashing the process on
// a damaged database: it first lists the free pages (etcd does not store
// its freelist) by walking the trees on a goroutine of its own, with no
// recover. Here the same bad page number or offset panics where it is
// recovered, or faults where SetPanicOnFault makes that a panic too.
func walkDB(db *bolt.DB, md *mapDropper) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: its database is damaged (reading its pages failed: %v)", ErrNotSnapshot, r)
		}
	}()
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			md.read(len(k) + 64) // the key and its share of its page
			if v == nil {
				if child := b.Bucket(k); child != nil {
					walk(child)
				}
			}
		}
	}
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			walk(b)
			return nil
		})
	})
}

// readNumbers computes etcdutl's numbers: the hash, revision, total keys,
// size and storage version.
func (st *Status) readNumbers(db *bolt.DB, md *mapDropper, keyLimit int) error {
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	return db.View(func(tx *bolt.Tx) error {
		st.TotalSize = tx.Size()
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			st.Version = storageVersion(meta.Get([]byte("storageVersion")))
		}
		keys := newKeySet(keyLimit)
		defer keys.close()
		feed := keys.feed()
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("%w: %q is not a bucket", ErrNotSnapshot, name)
			}
			crc.Write(name)
			isKey := string(name) == "key"
			err := b.ForEach(func(k, v []byte) error {
				crc.Write(k)
				crc.Write(v)
				md.read(len(k) + len(v))
				if isKey {
					return st.countKey(feed, k, v)
				}
				return nil
			})
			if err != nil {
				feed.finish()
				return err
			}
		}
		md.drop()
		if err := feed.finish(); err != nil {
			return err
		}
		n, err := keys.count()
		st.TotalKeys, st.Hash = n, crc.Sum32()
		return err
	})
}

// countKey follows one revision of the key bucket: the newest revision is
// the snapshot's, a tombstone (an 18-byte revision ending in 't') deletes
// the key. Only the key field of the mvccpb.KeyValue is read, in place:
// decoding the whole message would copy every value.
func (st *Status) countKey(keys *keyFeed, rev, value []byte) error {
	if len(rev) < 17 {
		return fmt.Errorf("%w: revision key %x is too short", ErrNotSnapshot, rev)
	}
	st.Revision = int64(binary.BigEndian.Uint64(rev[0:8]))
	key, err := kvKey(value)
	if err != nil {
		return fmt.Errorf("%w: revision %d: %v", ErrNotSnapshot, st.Revision, err)
	}
	keys.add(len(rev) == 18 && rev[17] == 't', keys.set.id(key))
	return nil
}

// kvKey returns field 1 (key) of an encoded mvccpb.KeyValue.
func kvKey(b []byte) ([]byte, error) {
	var key []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			key, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return key, nil
}

// storageVersion formats the meta bucket's storageVersion as etcdutl does
// (major.minor.patch), or "" when absent or not a version.
func storageVersion(v []byte) string {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return ""
	}
	var major, minor, patch int
	if n, _ := fmt.Sscanf(s, "%d.%d.%d", &major, &minor, &patch); n < 2 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", major, minor, patch)
}
