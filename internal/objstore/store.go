// Package objstore keeps etcd snapshots in an S3-compatible bucket with
// minio-go: uploads (multipart for large files, with retries) whose
// metadata carries the snapshot's sha256 and revision and which are checked
// after the upload, the list of the snapshots under a prefix, retention,
// and fetching one back.
//
// A broken upload never shows under its final key: a file larger than one
// part goes up as a multipart upload, which the store makes visible only
// when the upload is completed, all at once; a smaller one as a single PUT,
// which the store keeps whole or not at all. An upload that fails is
// aborted; one whose process died is aborted by the next run (AbortStale).
package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/etcdops/etcdops/internal/codec"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	Endpoint  string // https://host:port or http://host:port
	Bucket    string
	Prefix    string // "" or ending with "/" (or any string: keys start with it)
	Region    string
	PathStyle bool
	CAFile    string // PEM CA certificates trusted besides the system's
	AccessKey string
	SecretKey string
	PartSize  uint64 // multipart part size; 0 is DefaultPartSize
}

// DefaultPartSize is the multipart part size when none is configured: an
// encoded stream buffers one part in memory.
const DefaultPartSize = 16 << 20

// LimitMemory sets the Go runtime's soft memory limit of a command that
// uploads with cfg, unless GOMEMLIMIT set one, and returns the function
// that sets it back: one part (an encoded upload holds one in memory) and
// 24 MiB for the rest. Without it the collector lets the heap grow to
// twice what is live, to 64 MiB with 16 MiB parts. For a command's main.
func LimitMemory(cfg Config) (restore func()) {
	prev := debug.SetMemoryLimit(-1)
	if prev != math.MaxInt64 {
		return func() {}
	}
	part := cfg.PartSize
	if part == 0 {
		part = DefaultPartSize
	}
	debug.SetMemoryLimit(int64(part) + 24<<20)
	return func() { debug.SetMemoryLimit(prev) }
}

// minPartSize is S3's smallest part.
const minPartSize = 5 << 20

// Store is a bucket prefix holding snapshots.
type Store struct {
	cli *minio.Client
	cfg Config
}

// New checks the configuration and makes a client; it does not connect.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("s3 endpoint %q: give a URL like https://s3.example.com:9000", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3 bucket: a bucket name is needed")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("s3 credentials: access_key_id and secret_access_key are both needed")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("s3 part_size: at least 5 MiB (the smallest part S3 accepts), got %d bytes", cfg.PartSize)
	}
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, err
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	cli, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   5,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return &Store{cli: cli, cfg: cfg}, nil
}

// Client is the minio-go client (for tests and the benchmark baseline).
func (s *Store) Client() *minio.Client { return s.cli }

// Bucket is the configured bucket.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// URL is s3://bucket/key.
func (s *Store) URL(key string) string { return "s3://" + s.cfg.Bucket + "/" + key }

// KeyFromURL returns the key of s3://bucket/key, which must name this
// store's bucket.
func (s *Store) KeyFromURL(raw string) (string, error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	bucket, key, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || key == "" {
		return "", fmt.Errorf("url %q: give s3://<bucket>/<key>", raw)
	}
	if bucket != s.cfg.Bucket {
		return "", fmt.Errorf("url %q: the bucket configured is %s, not %s", raw, s.cfg.Bucket, bucket)
	}
	return key, nil
}

// Object is one snapshot in the bucket.
type Object struct {
	Key         string    `json:"key"`
	URL         string    `json:"url"`
	Time        time.Time `json:"time"`
	Revision    int64     `json:"revision"`
	Size        int64     `json:"size"`
	Member      string    `json:"member"`
	Compression string    `json:"compression"`
	Encrypted   bool      `json:"encrypted"`
	SHA256      string    `json:"sha256"`
	ClusterID   string    `json:"cluster_id"`
	EtcdVersion string    `json:"etcd_version"`
}

// Layers is how the object is encoded.
func (o Object) Layers() codec.Layers {
	l := codec.Layers{Compression: o.Compression}
	if o.Encrypted {
		l.Recipient = "?"
	}
	return l
}

// keyTimeLayout is the time in a key: UTC, to the second.
const keyTimeLayout = "20060102T150405Z"

// keyPattern is the name (after the prefix) of every object this package
// makes, and the only names it ever lists or deletes.
var keyPattern = regexp.MustCompile(`^snapshot_([0-9]{8}T[0-9]{6}Z)_([A-Za-z0-9._-]+?)\.db(\.zst)?(\.age)?$`)

var memberPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Key is the object key of a snapshot taken at t by member.
func (s *Store) Key(t time.Time, member string, l codec.Layers) (string, error) {
	if !memberPattern.MatchString(member) {
		return "", fmt.Errorf("member name %q cannot go into an object key: letters, digits, '.', '_' and '-' only", member)
	}
	return s.cfg.Prefix + "snapshot_" + t.UTC().Format(keyTimeLayout) + "_" + member + ".db" + l.Suffix(), nil
}

// KeyTime returns the time in a snapshot key's name (the part after the
// last '/'), whatever its prefix.
func KeyTime(key string) (time.Time, bool) {
	m := keyPattern.FindStringSubmatch(key[strings.LastIndex(key, "/")+1:])
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(keyTimeLayout, m[1])
	return t, err == nil
}

// parseKey reads time, member and layers from a key under the prefix.
func (s *Store) parseKey(key string) (Object, bool) {
	name, ok := strings.CutPrefix(key, s.cfg.Prefix)
	if !ok || strings.Contains(name, "/") {
		return Object{}, false
	}
	m := keyPattern.FindStringSubmatch(name)
	if m == nil {
		return Object{}, false
	}
	t, err := time.Parse(keyTimeLayout, m[1])
	if err != nil {
		return Object{}, false
	}
	o := Object{Key: key, URL: s.URL(key), Time: t, Member: m[2], Compression: codec.None, Encrypted: m[4] != ""}
	if m[3] != "" {
		o.Compression = codec.Zstd
	}
	return o, true
}

// Meta is the user metadata stored with each object.
type Meta struct {
	SHA256      string // of the plain snapshot
	Revision    int64
	Member      string
	ClusterID   string
	EtcdVersion string
}

func (m Meta) headers(l codec.Layers) map[string]string {
	return map[string]string{
		"sha256": m.SHA256, "revision": fmt.Sprint(m.Revision), "member": m.Member,
		"cluster-id": m.ClusterID, "etcd-version": m.EtcdVersion,
		"compression": l.Compression, "encrypted": fmt.Sprint(l.Recipient != ""),
	}
}

// fromInfo completes o with what the store says of the object.
func fromInfo(o Object, info minio.ObjectInfo) Object {
	get := func(k string) string {
		for mk, v := range info.UserMetadata {
			if strings.EqualFold(mk, k) || strings.EqualFold(mk, "X-Amz-Meta-"+k) {
				return v
			}
		}
		return ""
	}
	o.Size = info.Size
	o.SHA256 = get("sha256")
	fmt.Sscan(get("revision"), &o.Revision)
	if m := get("member"); m != "" {
		o.Member = m
	}
	o.ClusterID, o.EtcdVersion = get("cluster-id"), get("etcd-version")
	return o
}

// Stat returns the object of key, with its metadata.
func (s *Store) Stat(ctx context.Context, key string) (Object, error) {
	o, ok := s.parseKey(key)
	if !ok {
		return Object{}, fmt.Errorf("%s is not a snapshot this tool made (snapshot_<time>_<member>.db[.zst][.age] under prefix %q)", s.URL(key), s.cfg.Prefix)
	}
	info, err := s.cli.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
			// The answer to a HEAD has no body: a store that refuses an
			// unknown access key with a 404 (versitygw) looks like a
			// missing object. A listing says which it is.
			if lerr := s.probe(ctx, key); lerr != nil {
				err = lerr
			}
		}
		return Object{}, s.describe("look up "+s.URL(key), err)
	}
	return fromInfo(o, info), nil
}

// probe lists at most one key from prefix and returns the store's error.
func (s *Store) probe(ctx context.Context, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for info := range s.cli.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1}) {
		return info.Err
	}
	return nil
}

// List returns the snapshots under the prefix, newest first, with their
// metadata.
func (s *Store) List(ctx context.Context) ([]Object, error) {
	objs, err := s.names(ctx)
	if err != nil {
		return nil, err
	}
	type res struct {
		i   int
		o   Object
		err error
	}
	ch := make(chan res)
	sem := make(chan struct{}, 4)
	for i, o := range objs {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			info, err := s.cli.StatObject(ctx, s.cfg.Bucket, o.Key, minio.StatObjectOptions{})
			ch <- res{i, fromInfo(o, info), err}
		}()
	}
	var errs []error
	for range objs {
		r := <-ch
		if r.err != nil {
			errs = append(errs, s.describe("look up "+s.URL(r.o.Key), r.err))
			continue
		}
		objs[r.i] = r.o
	}
	return objs, errors.Join(errs...)
}

// names lists the keys under the prefix that match the pattern, newest
// first (by the time in the key, then the key).
func (s *Store) names(ctx context.Context) ([]Object, error) {
	var objs []Object
	for info := range s.cli.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix}) {
		if info.Err != nil {
			return nil, s.describe(fmt.Sprintf("list s3://%s/%s", s.cfg.Bucket, s.cfg.Prefix), info.Err)
		}
		if o, ok := s.parseKey(info.Key); ok {
			o.Size = info.Size
			objs = append(objs, o)
		}
	}
	sort.Slice(objs, func(i, j int) bool {
		if !objs[i].Time.Equal(objs[j].Time) {
			return objs[i].Time.After(objs[j].Time)
		}
		return objs[i].Key > objs[j].Key
	})
	return objs, nil
}

// Prunable returns the snapshots beyond the newest keep (keep is at least
// 1: the newest is never among them).
func Prunable(objs []Object, keep int) []Object {
	keep = max(keep, 1)
	if len(objs) <= keep {
		return nil
	}
	return objs[keep:]
}

// Retain deletes the snapshots under the prefix beyond the newest keep and
// returns their keys. Nothing outside the prefix or not named as this
// package names snapshots is ever touched, and the newest is always kept.
func (s *Store) Retain(ctx context.Context, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("s3 keep must be at least 1, got %d", keep)
	}
	objs, err := s.names(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, o := range Prunable(objs, keep) {
		if err := s.cli.RemoveObject(ctx, s.cfg.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			return removed, s.describe("delete "+o.URL, err)
		}
		removed = append(removed, o.Key)
	}
	return removed, nil
}

// AbortStale aborts the unfinished multipart uploads of snapshot keys
// under the prefix: those of a process that died mid-upload. Call it only
// while holding the backup lock (no other upload is then under way).
func (s *Store) AbortStale(ctx context.Context) ([]string, error) {
	var keys []string
	for u := range s.cli.ListIncompleteUploads(ctx, s.cfg.Bucket, s.cfg.Prefix, true) {
		if u.Err != nil {
			return keys, s.describe("list unfinished uploads", u.Err)
		}
		if _, ok := s.parseKey(u.Key); !ok {
			continue
		}
		if err := s.cli.RemoveIncompleteUpload(ctx, s.cfg.Bucket, u.Key); err != nil {
			return keys, s.describe("abort the unfinished upload of "+s.URL(u.Key), err)
		}
		keys = append(keys, u.Key)
	}
	return keys, nil
}

// credentialCodes are the S3 error codes of refused credentials. Some
// stores have their own (versitygw: XAdminUserNotFound for an unknown
// access key), so any 403 counts as well.
var credentialCodes = map[string]bool{
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "AccessDenied": true,
	"InvalidToken": true, "ExpiredToken": true, "XAdminUserNotFound": true,
}

// describe says what failed in words, without any credential.
func (s *Store) describe(op string, err error) error {
	resp := minio.ToErrorResponse(err)
	var why string
	switch {
	case credentialCodes[resp.Code] || resp.StatusCode == http.StatusForbidden:
		why = fmt.Sprintf("the store at %s refused the credentials for bucket %s (%s: %s); check credentials_file",
			s.cfg.Endpoint, s.cfg.Bucket, resp.Code, resp.Message)
	case resp.Code == "NoSuchBucket":
		why = fmt.Sprintf("bucket %s does not exist at %s", s.cfg.Bucket, s.cfg.Endpoint)
	case resp.Code == "NoSuchKey":
		why = "no such object"
	case resp.Code == "":
		var ue *url.Error
		if errors.As(err, &ue) {
			why = fmt.Sprintf("cannot reach the store at %s: %v", s.cfg.Endpoint, ue.Err)
		} else {
			why = err.Error()
		}
	default:
		why = fmt.Sprintf("%s: %s", resp.Code, resp.Message)
	}
	return &Error{Op: op, Why: s.scrub(why), Code: resp.Code, StatusCode: resp.StatusCode, err: err}
}

// scrub removes the credentials from a message.
func (s *Store) scrub(msg string) string {
	for _, secret := range []string{s.cfg.SecretKey, s.cfg.AccessKey} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "<credential>")
		}
	}
	return msg
}

// Error is a failed store operation, described without credentials.
type Error struct {
	Op, Why    string
	Code       string // the S3 error code, if the store answered
	StatusCode int
	err        error
}

func (e *Error) Error() string { return e.Op + ": " + e.Why }

// Unwrap gives the context errors (the minio-go error itself is not
// exposed, as it may quote a request).
func (e *Error) Unwrap() error {
	if errors.Is(e.err, context.Canceled) {
		return context.Canceled
	}
	if errors.Is(e.err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && !credentialCodes[e.Code] && (e.Code == "NoSuchKey" || e.StatusCode == http.StatusNotFound)
}

// permanent reports whether retrying cannot help.
func permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	if errors.Is(e, context.Canceled) || errors.Is(e, context.DeadlineExceeded) {
		return true
	}
	return e.StatusCode >= 400 && e.StatusCode < 500 && e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests
}
