package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/etcdops/etcdops/internal/fsutil"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/snapshot"
)

// Fetched is what Fetch wrote.
type Fetched struct {
	Object  objstore.Object
	Dest    string
	Changed bool
	Status  snapshot.Status
}

// Fetch downloads the snapshot of key to dest: decrypted, decompressed,
// checked against the sha256 in its metadata and by etcd's own integrity
// check (the sha256 trailer, bbolt's check), written to a temporary file
// beside dest (0600), fsynced and renamed. Nothing is written when dest
// already holds that snapshot.
func Fetch(ctx context.Context, store *objstore.Store, key, dest string, identities []age.Identity) (Fetched, error) {
	f := Fetched{Dest: dest}
	o, err := store.Stat(ctx, key)
	if err != nil {
		return f, err
	}
	f.Object = o
	if sum, err := fileSHA256(dest); err == nil && sum == o.SHA256 {
		f.Status, err = snapshot.ReadStatus(dest)
		if err == nil {
			return f, nil
		}
	}
	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".part-*")
	if err != nil {
		return f, fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := store.Fetch(ctx, key, tmp, identities); err != nil {
		return f, err
	}
	if err := tmp.Sync(); err != nil {
		return f, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return f, err
	}
	st, err := snapshot.ReadStatus(tmp.Name())
	if err != nil {
		return f, fmt.Errorf("%s: the downloaded snapshot does not check out: %w", o.URL, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return f, err
	}
	ok = true
	st.Path = dest
	f.Status, f.Changed = st, true
	return f, fsutil.SyncDir(dir)
}

func fileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
