package objstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
)

// file writes n bytes, half random and half zeros (so zstd has work), and
// returns its path and sha256.
func file(t *testing.T, n int) (string, string) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data[:n/2])
	p := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return p, hex.EncodeToString(sum[:])
}

func TestUploadFetchEveryLayer(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	srv := s3test.Start(t, s3test.TLS())
	st := srv.Store(t, "c1/")
	path, sum := file(t, 12<<20+123) // three 5 MiB parts
	ctx := context.Background()
	for i, l := range []codec.Layers{
		{Compression: codec.None},
		{Compression: codec.Zstd},
		{Compression: codec.None, Recipient: id.Recipient().String()},
		{Compression: codec.Zstd, Recipient: id.Recipient().String()},
	} {
		t.Run("layers"+l.Suffix(), func(t *testing.T) {
			at := time.Date(2026, 1, 2, 3, 4, i, 0, time.UTC)
			key, err := st.Key(at, "etcd1", l)
			if err != nil {
				t.Fatal(err)
			}
			meta := objstore.Meta{SHA256: sum, Revision: 42 + int64(i), Member: "etcd1", ClusterID: "abc", EtcdVersion: "3.6.16"}
			o, err := st.Upload(ctx, key, path, l, meta)
			if err != nil {
				t.Fatal(err)
			}
			if o.SHA256 != sum || o.Revision != meta.Revision || o.Member != "etcd1" || o.Encrypted != (l.Recipient != "") || o.Compression != l.Compression {
				t.Errorf("uploaded object %+v", o)
			}
			if l.Compression == codec.Zstd && o.Size >= 12<<20 {
				t.Errorf("zstd object has %d bytes: not compressed", o.Size)
			}
			var buf bytes.Buffer
			got, err := st.Fetch(ctx, key, &buf, []age.Identity{id})
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(buf.Bytes())
			if hex.EncodeToString(h[:]) != sum || got.Key != key {
				t.Errorf("fetched %d bytes that do not match", buf.Len())
			}
			if l.Recipient != "" {
				if _, err := st.Fetch(ctx, key, &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), "age_identity_file") {
					t.Errorf("fetch of an encrypted object without identity: %v", err)
				}
			}
		})
	}
	objs, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 4 || !strings.HasSuffix(objs[0].Key, ".zst.age") || objs[3].Revision != 42 {
		t.Errorf("list: %+v", objs)
	}
}

func TestFetchRefusesADamagedObject(t *testing.T) {
	srv := s3test.Start(t)
	st := srv.Store(t, "")
	path, sum := file(t, 1<<20)
	key, _ := st.Key(time.Now(), "m", codec.Layers{Compression: codec.None})
	wrong := strings.Repeat("0", 64)
	if _, err := st.Upload(context.Background(), key, path, codec.Layers{Compression: codec.None}, objstore.Meta{SHA256: wrong}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Fetch(context.Background(), key, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("fetch of an object whose content is not its sha256: %v", err)
	}
}

func TestRetentionKeepsNewestAndStaysInPrefix(t *testing.T) {
	srv := s3test.Start(t)
	for _, k := range []string{
		"c1/snapshot_20260101T000000Z_a.db", "c1/snapshot_20260102T000000Z_b.db.zst",
		"c1/snapshot_20260103T000000Z_a.db.age", "c1/snapshot_20260104T000000Z_c.db.zst.age",
		"c1/other.db", "c1/snapshot_20250101T000000Z_a.db.bak", "c1/sub/snapshot_20200101T000000Z_a.db",
		"c2/snapshot_20200101T000000Z_a.db", "snapshot_20200101T000000Z_a.db",
	} {
		srv.Put(t, k, []byte("x"))
	}
	st := srv.Store(t, "c1/")
	for _, tc := range []struct {
		keep    int
		removed []string
	}{
		{3, []string{"c1/snapshot_20260101T000000Z_a.db"}},
		{3, nil},
		{1, []string{"c1/snapshot_20260103T000000Z_a.db.age", "c1/snapshot_20260102T000000Z_b.db.zst"}},
	} {
		got, err := st.Retain(context.Background(), tc.keep)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.removed) {
			t.Errorf("keep %d removed %v, want %v", tc.keep, got, tc.removed)
		}
	}
	if _, err := st.Retain(context.Background(), 0); err == nil {
		t.Error("keep 0 was accepted")
	}
	want := []string{"c1/other.db", "c1/snapshot_20250101T000000Z_a.db.bak", "c1/snapshot_20260104T000000Z_c.db.zst.age",
		"c1/sub/snapshot_20200101T000000Z_a.db", "c2/snapshot_20200101T000000Z_a.db", "snapshot_20200101T000000Z_a.db"}
	if got := srv.Keys(t); !slices.Equal(got, want) {
		t.Errorf("left in the bucket %v, want %v", got, want)
	}
}

// An upload cut off half way (its context cancelled, as when the process
// is stopped) leaves nothing under the final key; the next run aborts the
// unfinished multipart upload.
func TestInterruptedUploadLeavesNoObject(t *testing.T) {
	srv := s3test.Start(t)
	st := srv.Store(t, "p/")
	path, sum := file(t, 40<<20)
	for _, l := range []codec.Layers{{Compression: codec.None}, {Compression: codec.Zstd}} {
		key, _ := st.Key(time.Now(), "m"+l.Compression, l)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := st.Upload(ctx, key, path, l, objstore.Meta{SHA256: sum})
			done <- err
		}()
		// Cancel once the first part is stored.
		deadline := time.Now().Add(20 * time.Second)
		for !hasUpload(t, st, key) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("%s: the upload finished before it was cut off", key)
		}
		if _, err := st.Stat(context.Background(), key); !objstore.IsNotFound(err) {
			t.Errorf("%s after an interrupted upload: %v, want not found", key, err)
		}
	}
	if _, err := st.AbortStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	for u := range st.Client().ListIncompleteUploads(context.Background(), srv.Bucket, "p/", true) {
		t.Errorf("unfinished upload left: %s %v", u.Key, u.Err)
	}
}

func hasUpload(t *testing.T, st *objstore.Store, key string) bool {
	for u := range st.Client().ListIncompleteUploads(context.Background(), st.Bucket(), key, false) {
		if u.Err == nil && u.Key == key {
			return true
		}
	}
	return false
}

// Refused credentials, a wrong secret or an access key the store does not
// know, are said to be that, with where, by an upload (not retried) and by
// a look-up (whose HEAD answer has no error code), without the secret.
func TestWrongCredentialsSayWhyWithoutTheSecret(t *testing.T) {
	srv := s3test.Start(t)
	path, sum := file(t, 1000)
	for _, tc := range []struct {
		name        string
		key, secret string
	}{
		{"wrong secret", srv.AccessKey, "not-the-secret-XYZZY-1234"},
		{"unknown access key", "unknownAccessKey42", "unknown-SECRET-5678"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.Config("")
			cfg.AccessKey, cfg.SecretKey = tc.key, tc.secret
			st, err := objstore.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			key, _ := st.Key(time.Now(), "m", codec.Layers{Compression: codec.None})
			start := time.Now()
			_, err = st.Upload(context.Background(), key, path, codec.Layers{Compression: codec.None}, objstore.Meta{SHA256: sum})
			if err == nil {
				t.Fatal("upload with refused credentials succeeded")
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("a refused credential was retried for %s", time.Since(start))
			}
			var oe *objstore.Error
			if !errors.As(err, &oe) {
				t.Errorf("error %T is not an objstore.Error", err)
			}
			_, serr := st.Stat(context.Background(), key)
			for _, e := range []error{err, serr} {
				msg := fmt.Sprint(e)
				if !strings.Contains(msg, "refused the credentials for bucket "+srv.Bucket) || !strings.Contains(msg, srv.Endpoint) ||
					strings.Contains(msg, cfg.SecretKey) || strings.Contains(msg, srv.SecretKey) {
					t.Errorf("error: %s", msg)
				}
			}
			if objstore.IsNotFound(serr) {
				t.Errorf("refused credentials taken for a missing object: %v", serr)
			}
		})
	}
}

// LimitMemory sets one part and 24 MiB as the soft limit, keeps a limit
// GOMEMLIMIT (or anyone) set, and its restore puts the previous one back.
func TestLimitMemory(t *testing.T) {
	const unset = math.MaxInt64
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tc := range []struct {
		name string
		prev int64
		part uint64
		want int64
	}{
		{"default part", unset, 0, 40 << 20},
		{"configured part", unset, 64 << 20, 88 << 20},
		{"limit set before", 100 << 20, 0, 100 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(tc.prev)
			restore := objstore.LimitMemory(objstore.Config{PartSize: tc.part})
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("limit %d MiB, want %d MiB", got>>20, tc.want>>20)
			}
			restore()
			if got := debug.SetMemoryLimit(-1); got != tc.prev {
				t.Errorf("restored limit %d, want %d", got, tc.prev)
			}
		})
	}
}
