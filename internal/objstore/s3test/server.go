// Package s3test runs a real S3 server for tests: Versity's S3 gateway
// (versitygw, its posix backend on a temporary directory) on loopback,
// with or without TLS from a CA made for the test.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/etcdops/etcdops/internal/freeport"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/pki"
)

// Server is one running gateway.
type Server struct {
	Endpoint  string // https://127.0.0.1:port or http://...
	Dir       string // the posix backend's root: one directory per bucket
	CAFile    string // the CA of its certificate, with TLS
	AccessKey string
	SecretKey string
	Bucket    string // made at start
	cmd       *exec.Cmd
	args      []string
	log       *bytes.Buffer
	t         testing.TB
}

// Binary returns the versitygw binary: $VERSITYGW, else the one
// lab/versitygw/install.sh installs (and caches), installing it if need be.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	out, err := exec.Command("bash", filepath.Join(root, "lab", "versitygw", "install.sh")).Output()
	if err != nil {
		t.Fatalf("install versitygw (lab/versitygw/install.sh): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// Option changes how a server starts.
type Option func(*Server)

// TLS serves https with a certificate for 127.0.0.1 from a CA of the test's.
func TLS() Option { return func(s *Server) { s.CAFile = "tls" } }

// Start runs a gateway with a bucket "backups"; it is stopped when the
// test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{Dir: filepath.Join(dir, "root"), AccessKey: "etcdopsTestAccessKey",
		SecretKey: "etcdops-test-SECRET-" + fmt.Sprint(time.Now().UnixNano()), Bucket: "backups", t: t, log: &bytes.Buffer{}}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freeport.Get(t)
	scheme := "http"
	var tlsArgs []string
	if s.CAFile != "" {
		scheme = "https"
		ca, err := pki.NewCA("s3test CA", 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := pki.Issue(ca, pki.Request{CommonName: "s3test", Usage: pki.UsageMember, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s.CAFile = filepath.Join(dir, "ca.pem")
		write(t, s.CAFile, ca.CertPEM)
		write(t, filepath.Join(dir, "s3.pem"), leaf.CertPEM)
		write(t, filepath.Join(dir, "s3-key.pem"), leaf.KeyPEM)
		tlsArgs = []string{"--cert", filepath.Join(dir, "s3.pem"), "--key", filepath.Join(dir, "s3-key.pem")}
	}
	s.Endpoint = scheme + "://" + addr
	s.args = append(append([]string{"--port", addr, "--quiet"}, tlsArgs...), "posix", s.Dir)
	s.start()
	t.Cleanup(s.Stop)
	if err := os.Mkdir(filepath.Join(s.Dir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	st := s.Store(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := st.Client().BucketExists(ctx, s.Bucket); err != nil || !ok {
		t.Fatalf("versitygw does not serve bucket %s: %v %v\n%s", s.Bucket, ok, err, s.log)
	}
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(Binary(s.t), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	host := strings.TrimPrefix(strings.TrimPrefix(s.Endpoint, "https://"), "http://")
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", host, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw did not listen on %s: %v\n%s", host, err, s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the gateway (its directory stays until the test ends).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts a stopped gateway again on the same address and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Config is the objstore configuration for the server's bucket under
// prefix.
func (s *Server) Config(prefix string) objstore.Config {
	ca := ""
	if strings.HasPrefix(s.Endpoint, "https://") {
		ca = s.CAFile
	}
	return objstore.Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, Region: "us-east-1",
		PathStyle: true, CAFile: ca, AccessKey: s.AccessKey, SecretKey: s.SecretKey, PartSize: 5 << 20}
}

// Store is an objstore.Store for the server's bucket under prefix.
func (s *Server) Store(t testing.TB, prefix string) *objstore.Store {
	t.Helper()
	st, err := objstore.New(s.Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Keys lists every object key in the bucket (all prefixes).
func (s *Server) Keys(t testing.TB) []string {
	t.Helper()
	st := s.Store(t, "")
	var keys []string
	for o := range st.Client().ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", s.Bucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// Put writes an object as another tool would.
func (s *Server) Put(t testing.TB, key string, data []byte) {
	t.Helper()
	st := s.Store(t, "")
	if _, err := st.Client().PutObject(context.Background(), s.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
