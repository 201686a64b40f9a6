package recovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Backend is what a stopped member's database file says about how far it
// got: the raft index of the last entry applied to it, the term of that
// entry (etcd 3.5 and later record it) and the newest revision.
type Backend struct {
	Path            string
	ConsistentIndex uint64
	Term            uint64
	Revision        int64
}

// DBPath is the database file under a member's data directory.
func DBPath(dataDir string) string { return filepath.Join(dataDir, "member", "snap", "db") }

// errInUse: the file is locked, so an etcd has it open.
var errInUse = errors.New("the database is open in a running etcd")

// ReadBackend opens a database file read-only (waiting at most a second for
// etcd's lock: a running etcd holds it) and reads the consistent index etcd
// keeps in its meta bucket and the newest revision of its key bucket. The
// file is not changed.
func ReadBackend(path string) (Backend, error) {
	if _, err := os.Stat(path); err != nil {
		return Backend{}, err
	}
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return Backend{}, fmt.Errorf("%s: %w", path, errInUse)
	}
	if err != nil {
		return Backend{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	b := Backend{Path: path}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return errors.New("no meta bucket: not an etcd database")
		}
		if v := meta.Get([]byte("consistent_index")); len(v) == 8 {
			b.ConsistentIndex = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get([]byte("term")); len(v) == 8 {
			b.Term = binary.BigEndian.Uint64(v)
		}
		if keys := tx.Bucket([]byte("key")); keys != nil {
			// Keys are revisions: 8 bytes of main revision, '_', 8 of sub.
			if k, _ := keys.Cursor().Last(); len(k) >= 8 {
				b.Revision = int64(binary.BigEndian.Uint64(k[:8]))
			}
		}
		return nil
	})
	if err != nil {
		return Backend{}, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
