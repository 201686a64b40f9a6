// Package snapshot is the etcd_snapshot Ansible module: it streams a
// snapshot from a running member to a file (verifying the sha256 etcd
// appends, then renaming atomically), reports a snapshot file's status the
// way `etcdutl snapshot status` does, keeps a "latest" name pointing at the
// newest snapshot and prunes old ones.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/etcdops/etcdops/internal/keycount"
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
// `etcdutl snapshot status` prints. The file is hashed here while a child
// process runs bbolt's check and reads the numbers (checkInChild), so that
// a damaged database cannot crash this one.
func ReadStatus(path string) (Status, error) {
	st, f, err := openStatus(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	child := make(chan error, 1)
	go func() { child <- st.checkInChild(ctx, path) }()
	th := &tailHasher{sum: sha256.New()}
	_, err = io.Copy(th, io.NewSectionReader(f, 0, st.Size))
	body, whole, ok := th.sums()
	corrupt := st.HasTrailer && (!ok || !bytes.Equal(body, th.tail[:]))
	if err != nil || corrupt {
		stop() // what bbolt would say no longer matters
	}
	cerr := <-child
	if err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	// A trailer that does not match says what happened, whatever bbolt says.
	if corrupt {
		return st, fmt.Errorf("%w (the sha256 of its first %d bytes is not the one stored in its last %d)",
			ErrCorrupt, st.Size-trailerLen, trailerLen)
	}
	st.SHA256 = hex.EncodeToString(whole)
	return st, cerr
}

// readStatus computes the numbers of a file just streamed from etcd, whose
// sha256 (wholeSHA256) was computed and trailer verified as it came: the
// bytes are the ones etcd sent, so neither the hash nor bbolt's check
// (which guards against damage at rest) is repeated.
func readStatus(path, wholeSHA256 string) (Status, error) {
	return readStatusKeys(path, wholeSHA256, keycount.DefaultLimit)
}

// readStatusKeys is readStatus with the number of keys counted in memory
// before the count spills to a file.
func readStatusKeys(path, wholeSHA256 string, keyLimit int) (Status, error) {
	st, f, err := openStatus(path)
	if err != nil {
		return st, err
	}
	f.Close()
	st.SHA256 = wholeSHA256
	return st, withDB(path, func(db *bolt.DB) error { return st.readNumbers(db, keyLimit) })
}

// openStatus opens a snapshot file and checks its length against its
// bbolt header: Size and HasTrailer are set.
func openStatus(path string) (Status, *os.File, error) {
	st := Status{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return st, nil, err
	}
	err = st.checkLength(f)
	if err != nil {
		f.Close()
		return st, nil, err
	}
	return st, f, nil
}

func (st *Status) checkLength(f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", st.Path)
	}
	st.Size = info.Size()
	meta, err := readMeta(f)
	if err != nil {
		return err
	}
	dbLen := int64(meta.pgid) * int64(meta.pageSize)
	switch {
	case st.Size == dbLen+trailerLen:
		st.HasTrailer = true
	case st.Size < dbLen:
		return fmt.Errorf("%w: %d bytes, but its database header says %d (%d pages of %d bytes)",
			ErrTruncated, st.Size, dbLen, meta.pgid, meta.pageSize)
	case st.Size == dbLen, st.Size%int64(meta.pageSize) == 0:
		// A database file without trailer (a member's db, or one that has
		// pages beyond its high water mark): nothing to verify it against.
	default:
		return fmt.Errorf("%w: %d bytes is neither the database's %d bytes nor that plus a %d-byte sha256",
			ErrTruncated, st.Size, dbLen, trailerLen)
	}
	return nil
}

// withDB opens the database read-only for f.
func withDB(path string, f func(*bolt.DB) error) error {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: bbolt cannot open it: %v", ErrNotSnapshot, err)
	}
	defer db.Close()
	return f(db)
}

// readNumbers computes etcdutl's numbers: the hash, revision, total keys,
// size and storage version.
func (st *Status) readNumbers(db *bolt.DB, keyLimit int) error {
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	return db.View(func(tx *bolt.Tx) error {
		st.TotalSize = tx.Size()
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			st.Version = storageVersion(meta.Get([]byte("storageVersion")))
		}
		keys := keycount.New(keyLimit)
		defer keys.Close()
		feed := keys.Feed()
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
				if isKey {
					return st.countKey(feed, k, v)
				}
				return nil
			})
			if err != nil {
				feed.Finish()
				return err
			}
		}
		if err := feed.Finish(); err != nil {
			return err
		}
		n, err := keys.Count()
		st.TotalKeys, st.Hash = n, crc.Sum32()
		return err
	})
}

// countKey follows one revision of the key bucket: the newest revision is
// the snapshot's, a tombstone (an 18-byte revision ending in 't') deletes
// the key. Only the key field of the mvccpb.KeyValue is read, in place:
// decoding the whole message would copy every value.
func (st *Status) countKey(keys *keycount.Feed, rev, value []byte) error {
	if len(rev) < 17 {
		return fmt.Errorf("%w: revision key %x is too short", ErrNotSnapshot, rev)
	}
	st.Revision = int64(binary.BigEndian.Uint64(rev[0:8]))
	key, err := kvKey(value)
	if err != nil {
		return fmt.Errorf("%w: revision %d: %v", ErrNotSnapshot, st.Revision, err)
	}
	keys.Add(key, len(rev) == 18 && rev[17] == 't')
	return nil
}

// kvKey returns field 1 (key) of an encoded mvccpb.KeyValue. etcd
// marshals it first and once, so the fields after it (the value above
// all) are not read: reading them took a quarter of the numbers' CPU on
// 2M small keys.
func kvKey(b []byte) ([]byte, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			key, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			return key, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil, nil
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
