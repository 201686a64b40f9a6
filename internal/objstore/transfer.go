package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/etcdops/etcdops/internal/codec"
)

// uploadThreads is how many parts of a plain file go up at once (read
// straight from the file: no buffer per part).
const uploadThreads = 4

// attempts is how many times a whole upload is tried; each request in it
// is already retried by minio-go.
const attempts = 3

// Upload puts the snapshot file at path under key, encoded with l, its
// metadata meta, and checks the object afterwards: its size is what was
// sent and its metadata is meta. A plain file goes up in parallel parts
// read from the file; an encoded one streams through the layers, one part
// in memory at a time. A failed upload is tried again, up to three times
// in all, unless the store's answer says retrying cannot help.
func (s *Store) Upload(ctx context.Context, key, path string, l codec.Layers, meta Meta) (Object, error) {
	o, ok := s.parseKey(key)
	if !ok {
		return Object{}, fmt.Errorf("key %q is not a snapshot key under prefix %q", key, s.cfg.Prefix)
	}
	if err := l.Validate(); err != nil {
		return Object{}, err
	}
	var err error
	for try := 1; ; try++ {
		var sent int64
		sent, err = s.put(ctx, key, path, l, meta)
		if err == nil {
			return s.verify(ctx, o, sent, meta)
		}
		if try == attempts || permanent(err) {
			break
		}
		select {
		case <-ctx.Done():
			return Object{}, err
		case <-time.After(time.Duration(try) * time.Second):
		}
	}
	return Object{}, err
}

// put uploads once and returns the bytes sent.
func (s *Store) put(ctx context.Context, key, path string, l codec.Layers, meta Meta) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	opts := minio.PutObjectOptions{
		UserMetadata: meta.headers(l),
		ContentType:  "application/octet-stream",
		PartSize:     s.cfg.PartSize,
		NumThreads:   uploadThreads,
	}
	op := "upload " + path + " to " + s.URL(key)
	if l.Plain() {
		up, err := s.cli.PutObject(ctx, s.cfg.Bucket, key, f, info.Size(), opts)
		if err != nil {
			return 0, s.describe(op, err)
		}
		return up.Size, nil
	}
	pr, pw := io.Pipe()
	encErr := make(chan error, 1)
	go func() {
		enc, err := codec.Encode(pw, l)
		if err == nil {
			_, err = io.Copy(enc, f)
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
		encErr <- err
	}()
	cr := &countingReader{r: pr}
	_, err = s.cli.PutObject(ctx, s.cfg.Bucket, key, cr, -1, opts)
	pr.CloseWithError(errors.New("upload ended"))
	if eerr := <-encErr; eerr != nil && err == nil {
		err = fmt.Errorf("encode %s: %w", path, eerr)
	}
	if err != nil {
		return 0, s.describe(op, err)
	}
	return cr.n.Load(), nil
}

// verify checks the object just uploaded against what was sent.
func (s *Store) verify(ctx context.Context, o Object, sent int64, meta Meta) (Object, error) {
	info, err := s.cli.StatObject(ctx, s.cfg.Bucket, o.Key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s.describe("check "+o.URL+" after the upload", err)
	}
	got := fromInfo(o, info)
	var bad string
	switch {
	case got.Size != sent:
		bad = fmt.Sprintf("it has %d bytes, %d were sent", got.Size, sent)
	case got.SHA256 != meta.SHA256:
		bad = fmt.Sprintf("its metadata says sha256 %q, the snapshot's is %s", got.SHA256, meta.SHA256)
	case got.Revision != meta.Revision:
		bad = fmt.Sprintf("its metadata says revision %d, the snapshot's is %d", got.Revision, meta.Revision)
	}
	if bad != "" {
		s.cli.RemoveObject(ctx, s.cfg.Bucket, o.Key, minio.RemoveObjectOptions{})
		return Object{}, fmt.Errorf("check %s after the upload: %s; the object was deleted", o.URL, bad)
	}
	return got, nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Fetch writes the plain snapshot of key to w: decrypted with identities
// (if encrypted), decompressed, and checked against the sha256 in its
// metadata.
func (s *Store) Fetch(ctx context.Context, key string, w io.Writer, identities []age.Identity) (Object, error) {
	o, err := s.Stat(ctx, key)
	if err != nil {
		return o, err
	}
	if o.SHA256 == "" {
		return o, fmt.Errorf("%s has no sha256 in its metadata: it was not uploaded by this tool", o.URL)
	}
	obj, err := s.cli.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return o, s.describe("download "+o.URL, err)
	}
	defer obj.Close()
	plain, err := codec.Decode(obj, o.Layers(), identities)
	if err != nil {
		return o, fmt.Errorf("%s: %w", o.URL, err)
	}
	defer plain.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), plain); err != nil {
		var se *Error
		if errors.As(err, &se) || minio.ToErrorResponse(err).Code != "" {
			return o, s.describe("download "+o.URL, err)
		}
		return o, fmt.Errorf("download %s: %w", o.URL, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != o.SHA256 {
		return o, fmt.Errorf("%s: the snapshot's sha256 is %s, its metadata says %s: the object is damaged", o.URL, sum, o.SHA256)
	}
	return o, nil
}
