// Package etcdtest runs real etcd servers for tests: embedded etcd members
// (go.etcd.io/etcd/server/v3/embed) in the test process, on loopback, with
// TLS on every listener and certificates from a CA made for the test.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/freeport"
	"github.com/etcdops/etcdops/internal/pki"
)

// Cluster is a set of embedded etcd members sharing one CA.
type Cluster struct {
	t       testing.TB
	Dir     string
	CA      pki.Pair
	CAFile  string
	Client  Files // the client certificate for modules and clients
	Members []*Member
	token   string
	config  []Option
	mu      sync.Mutex
}

// Option changes the configuration every member of a cluster starts with.
type Option func(*embed.Config)

// QuotaBackendBytes sets the members' --quota-backend-bytes: past it a
// member raises the NOSPACE alarm and refuses writes.
func QuotaBackendBytes(n int64) Option { return func(c *embed.Config) { c.QuotaBackendBytes = n } }

// Files names a certificate and its key on disk.
type Files struct{ Cert, Key string }

// Member is one etcd member of a Cluster. Etcd is nil while it is stopped.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	TLS       Files
	Etcd      *embed.Etcd
}

// NewCluster starts an n-member cluster and waits until every member is
// ready, each with the options given. The cluster is stopped when the test
// ends.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := NewEmptyCluster(t)
	c.config = opts
	for i := 0; i < n; i++ {
		c.Members = append(c.Members, c.NewMember(fmt.Sprintf("m%d", i)))
	}
	initial := c.InitialCluster(c.Members...)
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func() { errs <- c.start(m, initial, "new") }()
	}
	for range c.Members {
		if err := <-errs; err != nil {
			t.Fatalf("start cluster: %v", err)
		}
	}
	return c
}

// NewEmptyCluster makes the CA and client certificate of a cluster that has
// no member yet.
func NewEmptyCluster(t testing.TB) *Cluster {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("etcdtest-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Dir: dir, CA: ca, token: fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())}
	c.CAFile = filepath.Join(dir, "ca.pem")
	writeFile(t, c.CAFile, ca.CertPEM)
	client, err := pki.Issue(ca, pki.Request{CommonName: "root", Usage: pki.UsageClient, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Client = c.writePair("client", client)
	t.Cleanup(c.StopAll)
	return c
}

func (c *Cluster) writePair(name string, p pki.Pair) Files {
	f := Files{Cert: filepath.Join(c.Dir, name+".pem"), Key: filepath.Join(c.Dir, name+"-key.pem")}
	writeFile(c.t, f.Cert, p.CertPEM)
	writeFile(c.t, f.Key, p.KeyPEM)
	return f
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// NewMember allocates ports, a data directory and certificates for a member
// that is not started (and not added to the cluster).
func (c *Cluster) NewMember(name string) *Member {
	c.t.Helper()
	cert, err := pki.Issue(c.CA, pki.Request{
		CommonName: name, DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.UsageMember, Validity: 24 * time.Hour,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return &Member{
		Name:      name,
		ClientURL: "https://127.0.0.1:" + freeport.Get(c.t),
		PeerURL:   "https://127.0.0.1:" + freeport.Get(c.t),
		DataDir:   filepath.Join(c.Dir, name+".etcd"),
		TLS:       c.writePair(name, cert),
	}
}

// InitialCluster is the --initial-cluster value for the given members.
func (c *Cluster) InitialCluster(ms ...*Member) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	return strings.Join(parts, ",")
}

// StartNew starts m as a new member of the running cluster (it must have
// been added with MemberAdd first), with the given --initial-cluster, and
// appends it to c.Members.
func (c *Cluster) StartNew(m *Member, initialCluster string) error {
	if err := c.start(m, initialCluster, "existing"); err != nil {
		return err
	}
	c.mu.Lock()
	c.Members = append(c.Members, m)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) start(m *Member, initialCluster, state string) error {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.DataDir
	cu, _ := url.Parse(m.ClientURL)
	pu, _ := url.Parse(m.PeerURL)
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = initialCluster
	cfg.InitialClusterToken = c.token
	cfg.ClusterState = state
	tls := transport.TLSInfo{CertFile: m.TLS.Cert, KeyFile: m.TLS.Key, TrustedCAFile: c.CAFile, ClientCertAuth: true}
	cfg.ClientTLSInfo = tls
	cfg.PeerTLSInfo = tls
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	for _, o := range c.config {
		o(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("%s failed: %w", m.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("%s not ready after 60s", m.Name)
	}
	c.mu.Lock()
	m.Etcd = e
	c.mu.Unlock()
	return nil
}

// Stop stops member m (its data stays, so Restart can bring it back).
func (c *Cluster) Stop(m *Member) {
	c.mu.Lock()
	e := m.Etcd
	m.Etcd = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped member again from its data directory.
func (c *Cluster) Restart(m *Member) error {
	return c.start(m, c.InitialCluster(m), "existing")
}

// StopAll stops every running member.
func (c *Cluster) StopAll() {
	c.mu.Lock()
	ms := append([]*Member(nil), c.Members...)
	c.mu.Unlock()
	for _, m := range ms {
		c.Stop(m)
	}
}

// Endpoints lists the client URLs of the members.
func (c *Cluster) Endpoints(ms ...*Member) []string {
	if len(ms) == 0 {
		ms = c.Members
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.ClientURL)
	}
	return out
}

// Options are connection options for the given members (all when none),
// with the cluster's CA and client certificate.
func (c *Cluster) Options(ms ...*Member) etcdconn.Options {
	return etcdconn.Options{
		Endpoints: c.Endpoints(ms...), CACert: c.CAFile,
		ClientCert: c.Client.Cert, ClientKey: c.Client.Key,
		DialTimeout: 5, CommandTimeout: 30,
	}
}

// Leader returns the member that leads, waiting up to 10 s for one.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		ms := append([]*Member(nil), c.Members...)
		c.mu.Unlock()
		for _, m := range ms {
			if m.Etcd != nil && m.Etcd.Server.Leader() == m.Etcd.Server.MemberID() && m.Etcd.Server.Leader() != 0 {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader after 10s")
	return nil
}

// Put writes n keys key-0000… through a client of the cluster.
func (c *Cluster) Put(ctx context.Context, prefix string, n int, value []byte) error {
	cli, err := etcdconn.New(c.Options())
	if err != nil {
		return err
	}
	defer cli.Close()
	for i := 0; i < n; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), string(value)); err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
	}
	return nil
}
