//go:build lab

package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/pki"
)

// writer is a client that writes to the cluster all the time, from the
// test's machine, as kube-apiserver would: over one long-lived connection,
// and over a new one (a new TLS handshake, with the TLS files read again)
// for every tenth write. It records the slowest write: a member restart
// shows there.
type certWriter struct {
	t       *testing.T
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	files   func() etcdconn.Options
	long    *clientv3.Client
	writes  int
	slowest time.Duration
	// restarts, when positive, is how many writes may fail as a member
	// restarts (see restartError): one each.
	restarts      int
	restartErrors []string
	failures      []string
}

// restartError tells whether a write failed only because a member
// restarted while it was in flight. A follower forwards a write to the
// leader; when the leader hands leadership over as it stops (etcd does so
// itself), it drops proposals meanwhile, and when the peer connection
// breaks the forwarded write is lost: the follower answers after its
// request timeout that the write timed out "due to previous leader
// failure" or "due to connection lost". etcd says only "request timed
// out" for such a write when, at its deadline, the member knows no leader
// (an election under way), or when the write began earlier than the two
// election timeouts before the new leader that etcd blames on a leader
// failure (etcdserver's parseProposeCtxErr). The write may or may not have
// been applied; a client such as kube-apiserver retries it.
func restartError(err error) bool {
	for _, e := range []error{rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrTimeout, rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func startCertWriter(t *testing.T, files func() etcdconn.Options) *certWriter {
	t.Helper()
	w := &certWriter{t: t, stop: make(chan struct{}), files: files}
	w.Reload()
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			cli := w.long
			w.mu.Unlock()
			var err error
			if i%10 == 0 {
				cli, err = etcdconn.New(w.files())
			}
			took := time.Duration(0)
			if err == nil {
				// kube-apiserver gives a write far longer; 15 s is
				// still a write that did not happen.
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				start := time.Now()
				_, err = cli.Put(ctx, fmt.Sprintf("writer/%06d", i), "v")
				took = time.Since(start)
				cancel()
				if i%10 == 0 {
					cli.Close()
				}
			}
			w.mu.Lock()
			w.writes++
			w.slowest = max(w.slowest, took)
			switch line := fmt.Sprintf("%s write %d: %v", time.Now().Format("15:04:05.000"), i, err); {
			case err == nil:
			case w.restarts > 0 && restartError(err):
				w.restartErrors = append(w.restartErrors, line)
			default:
				w.failures = append(w.failures, line)
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// AllowRestarts lets one write fail for each of n member restarts.
func (w *certWriter) AllowRestarts(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.restarts = n
}

// Reload replaces the long-lived connection by one made with the TLS files
// as they are now (a client restarted with new files).
func (w *certWriter) Reload() {
	w.t.Helper()
	cli, err := etcdconn.New(w.files())
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	old := w.long
	w.long = cli
	w.mu.Unlock()
	if old != nil {
		// Writes in flight on it finish first.
		time.AfterFunc(10*time.Second, func() { old.Close() })
	}
}

// Stop ends the writer and fails the test if any write failed, other than
// at most one for each member restart allowed.
func (w *certWriter) Stop() {
	w.t.Helper()
	close(w.stop)
	w.done.Wait()
	w.long.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.restartErrors) > w.restarts {
		w.failures = append(w.failures, w.restartErrors...)
	} else if len(w.restartErrors) > 0 {
		w.t.Logf("%d writes failed as members restarted (at most %d may):\n%s", len(w.restartErrors), w.restarts,
			strings.Join(w.restartErrors, "\n"))
	}
	if len(w.failures) > 0 {
		w.t.Fatalf("%d of %d writes failed, e.g.:\n%s", len(w.failures), w.writes, strings.Join(w.failures[:min(5, len(w.failures))], "\n"))
	}
	if w.writes < 50 {
		w.t.Fatalf("only %d writes", w.writes)
	}
	w.t.Logf("%d writes, none failed; the slowest took %s", w.writes, w.slowest.Round(time.Millisecond))
}

// servedCert is the certificate host serves on port to a new connection.
func servedCert(t *testing.T, host string, port int) *x509.Certificate {
	t.Helper()
	c, err := pki.Served(context.Background(), net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mainPID is the etcd unit's main process on host, over SSH.
func (l *Lab) mainPID(host string) int {
	l.t.Helper()
	out := l.MustSSH(host, "systemctl show --property=MainPID --value etcd.service")
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid == 0 {
		l.t.Fatalf("MainPID of etcd on %s: %q", host, out)
	}
	return pid
}

func pids(hosts []string, pid func(string) int) []int {
	out := make([]int, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, pid(h))
	}
	return out
}

func endpoints(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, "https://"+net.JoinHostPort(h, "2379"))
	}
	return out
}

// verifiesWith reports whether cert chains to the CA in caFile.
func verifiesWith(t *testing.T, cert *x509.Certificate, caFile string) bool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readFile(t, caFile))) {
		t.Fatalf("%s: no certificate", caFile)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// TestRenewCerts: members whose certificates were issued for 10 days are
// reported by cluster_status.yml (which fails), --check predicts the
// renewal and changes nothing, and renew_etcd_certs.yml renews them while
// a client writes all the time: no write fails, no member restarts (etcd
// serves the new certificate to the next connection), each member serves
// its new certificate on both listeners; then cluster_status passes and a
// second run changes nothing.
func TestRenewCerts(t *testing.T) {
	l := NewLab(t, 3, 3)
	h := l.Hosts
	l.MustPlaybook("playbooks/02.etcd.yml", "etcd_cert_validity_days=10", "etcd_cert_renew_before_days=5")

	status := l.Playbook("playbooks/tools/cluster_status.yml")
	clientCert := filepath.Join(l.PKIDir, "etcd-client.pem")
	if !status.Failed() || !strings.Contains(status.Output, "expires within 30 days") ||
		!regexp.MustCompile(`deploy node: `+regexp.QuoteMeta(clientCert)+`: [^"]*expires within 30 days`).MatchString(status.Output) {
		t.Fatalf("cluster_status.yml does not fail on certificates ending in 10 days, the deploy node's %s among them\n%s",
			clientCert, tail(status.Output, 30))
	}
	before := map[string]string{}
	for _, host := range h {
		before[host] = pki.Describe(servedCert(t, host, 2379)).Serial
	}
	pid0 := pids(h, l.mainPID)

	check := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "--check", "--diff")
	if check.Changed() == 0 || !strings.Contains(check.Output, "it expires within 30 days") {
		t.Fatalf("--check predicts no renewal\n%s", tail(check.Output, 40))
	}
	for _, host := range h {
		if s := pki.Describe(servedCert(t, host, 2379)).Serial; s != before[host] {
			t.Fatalf("--check changed the certificate %s serves", host)
		}
	}

	w := startCertWriter(t, func() etcdconn.Options {
		return etcdconn.Options{Endpoints: endpoints(h), CACert: filepath.Join(l.PKIDir, "ca.pem"),
			ClientCert: filepath.Join(l.PKIDir, "etcd-client.pem"), ClientKey: filepath.Join(l.PKIDir, "etcd-client-key.pem"),
			DialTimeout: 5, CommandTimeout: 10}
	})
	renew := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml")
	w.Stop()
	t.Logf("renewal of 3 members: %s", renew.Duration.Round(time.Millisecond))
	if got := pids(h, l.mainPID); !slices.Equal(got, pid0) {
		t.Fatalf("members restarted: PIDs %v, before %v\n%s", got, pid0, tail(renew.Output, 40))
	}
	for _, host := range h {
		for _, port := range []int{2379, 2380} {
			c := servedCert(t, host, port)
			if s := pki.Describe(c).Serial; s == before[host] || time.Until(c.NotAfter) < 365*24*time.Hour ||
				!verifiesWith(t, c, filepath.Join(l.PKIDir, "ca.pem")) || c.VerifyHostname(host) != nil {
				t.Fatalf("%s:%d serves serial %s ending %s (before %s)", host, port, s, c.NotAfter, before[host])
			}
		}
	}
	l.MustPlaybook("playbooks/tools/cluster_status.yml")
	if again := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml"); again.Changed() != 0 {
		t.Fatalf("a second renewal changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
}

// TestRenewKubeaszShared: on a kubeasz 3.7 cluster, whose three members
// share one etcd.pem, renew_etcd_certs.yml gives each member its own
// certificate from the same CA (its address, name, 127.0.0.1, localhost),
// at the same paths, one member at a time, while a client writes: no write
// fails, no member restarts or loses its peers, and a second run changes
// nothing.
func TestRenewKubeaszShared(t *testing.T) {
	l := NewLab(t, 3, 0)
	h := l.Hosts
	k := DeployKubeasz(t, l, "3.7", h)
	pid0 := pids(h, k.MainPID)
	shared := pki.Describe(servedCert(t, h[0], 2379)).Serial

	w := startCertWriter(t, func() etcdconn.Options {
		return etcdconn.Options{Endpoints: endpoints(h), CACert: k.CACert, ClientCert: k.ClientCert, ClientKey: k.ClientKey,
			DialTimeout: 5, CommandTimeout: 10}
	})
	r := k.RunPlaybook("playbooks/tools/renew_etcd_certs.yml")
	w.Stop()
	if r.Failed() {
		t.Fatalf("renew_etcd_certs.yml failed\n%s", tail(r.Output, 60))
	}
	t.Logf("shared to per-member certificates, 3 members: %s", r.Duration.Round(time.Millisecond))
	if !strings.Contains(r.Output, "a certificate shared with other members") {
		t.Errorf("the reason is not given\n%s", tail(r.Output, 40))
	}
	if got := pids(h, k.MainPID); !slices.Equal(got, pid0) {
		t.Fatalf("members restarted: PIDs %v, before %v", got, pid0)
	}
	for _, host := range h {
		c := servedCert(t, host, 2380)
		want := []string{host, "127.0.0.1"}
		got := []string{}
		for _, ip := range c.IPAddresses {
			got = append(got, ip.String())
		}
		if pki.Describe(c).Serial == shared || !sameSet(got, want) || !verifiesWith(t, c, k.CACert) ||
			c.VerifyHostname("etcd-"+host) != nil {
			t.Fatalf("%s serves %v naming %v %v, want its own certificate naming %v from %s", host, pki.Describe(c).Subject, got, c.DNSNames, want, k.CACert)
		}
		if members := k.Members(host); len(members) != 3 {
			t.Fatalf("%s sees %d members", host, len(members))
		}
	}
	if again := k.RunPlaybook("playbooks/tools/renew_etcd_certs.yml"); again.Failed() || again.Changed() != 0 {
		t.Fatalf("a second run failed or changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
	if r := k.RunPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=true"); !r.Failed() ||
		!strings.Contains(r.Output, "is the Kubernetes CA") {
		t.Fatalf("a CA rotation on kubeasz was not refused\n%s", tail(r.Output, 20))
	}
}

// TestRotateCA: renew_etcd_certs.yml -e etcd_ca_rotate=trust|switch|finish
// replaces the cluster's CA while a client writes, the client following
// each step as kube-apiserver would (it trusts both CAs after trust, and
// takes the new client certificate after switch): no write fails but one
// in flight as a member restarts (see restartError); at the
// end every member serves a certificate from the new CA, refuses a client
// of the old CA and accepts one of the new, and the deploy node's CA is
// the new one.
func TestRotateCA(t *testing.T) {
	l := NewLab(t, 3, 3)
	h := l.Hosts
	l.MustPlaybook("playbooks/02.etcd.yml")
	oldCA := filepath.Join(l.PKIDir, "ca.pem")
	oldCAPEM := readFile(t, oldCA)
	next := filepath.Join(l.PKIDir, "ca-next")
	// The client's own copies of its TLS files, which it reads at each new
	// connection.
	clientDir := t.TempDir()
	copyFile := func(src, dst string) {
		t.Helper()
		if err := os.WriteFile(dst+".tmp", []byte(readFile(t, src)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(oldCA, filepath.Join(clientDir, "ca.pem"))
	copyFile(filepath.Join(l.PKIDir, "etcd-client.pem"), filepath.Join(clientDir, "client.pem"))
	copyFile(filepath.Join(l.PKIDir, "etcd-client-key.pem"), filepath.Join(clientDir, "client-key.pem"))
	oldClient, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd-client.pem"), filepath.Join(l.PKIDir, "etcd-client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// --check predicts the whole rotation and changes nothing.
	pid0 := pids(h, l.mainPID)
	if check := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=true", "--check"); check.Changed() == 0 {
		t.Fatalf("--check predicts no change\n%s", tail(check.Output, 30))
	}
	if _, err := os.Stat(filepath.Join(l.PKIDir, "ca-next")); !os.IsNotExist(err) || !slices.Equal(pids(h, l.mainPID), pid0) {
		t.Fatal("--check made the new CA or restarted a member")
	}

	var mu sync.Mutex
	w := startCertWriter(t, func() etcdconn.Options {
		mu.Lock()
		defer mu.Unlock()
		return etcdconn.Options{Endpoints: endpoints(h), CACert: filepath.Join(clientDir, "ca.pem"),
			ClientCert: filepath.Join(clientDir, "client.pem"), ClientKey: filepath.Join(clientDir, "client-key.pem"),
			DialTimeout: 5, CommandTimeout: 10}
	})
	// trust and finish restart every member, one at a time.
	w.AllowRestarts(2 * len(h))
	start := time.Now()
	trust := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=trust")
	if again := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=trust"); again.Changed() != 0 {
		t.Fatalf("the trust step run again changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}
	mu.Lock()
	if err := os.WriteFile(filepath.Join(clientDir, "ca.pem"), []byte(oldCAPEM+readFile(t, filepath.Join(next, "ca.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	mu.Unlock()
	w.Reload()
	switched := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=switch")
	mu.Lock()
	copyFile(filepath.Join(next, "etcd-client.pem"), filepath.Join(clientDir, "client.pem"))
	copyFile(filepath.Join(next, "etcd-client-key.pem"), filepath.Join(clientDir, "client-key.pem"))
	mu.Unlock()
	w.Reload()
	finish := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=finish")
	w.Stop()
	t.Logf("CA rotation of 3 members: trust %s, switch %s, finish %s, in all %s", trust.Duration.Round(time.Millisecond),
		switched.Duration.Round(time.Millisecond), finish.Duration.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	newCA := filepath.Join(l.PKIDir, "ca.pem")
	if readFile(t, newCA) == oldCAPEM {
		t.Fatal("the deploy node's CA is still the old one")
	}
	if _, err := os.Stat(next); !os.IsNotExist(err) {
		t.Fatalf("%s is still there", next)
	}
	newClient, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd-client.pem"), filepath.Join(l.PKIDir, "etcd-client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range h {
		for _, port := range []int{2379, 2380} {
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			if c := servedCert(t, host, port); !verifiesWith(t, c, newCA) {
				t.Fatalf("%s serves a certificate not from the new CA: issuer %s", addr, c.Issuer)
			}
			if err := pki.Accepts(context.Background(), addr, newClient, 5*time.Second); err != nil {
				t.Fatalf("%s refuses the new CA's client: %v", addr, err)
			}
			if err := pki.Accepts(context.Background(), addr, oldClient, 5*time.Second); err == nil {
				t.Fatalf("%s still accepts the old CA's client", addr)
			}
		}
	}
	// The cluster works with what the role installed on the members.
	if out := l.MustSSH(h[1], "etcdctl put /after-rotation ok && etcdctl get /after-rotation --print-value-only"); !strings.Contains(out, "ok") {
		t.Fatalf("etcdctl on a member after the rotation: %s", out)
	}
	l.MustPlaybook("playbooks/tools/cluster_status.yml")
	if again := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml"); again.Changed() != 0 {
		t.Fatalf("a renewal after the rotation changed %d tasks\n%s", again.Changed(), changedTasks(again.Output))
	}

	// Every step in one run (no client outside the cluster to follow).
	second := readFile(t, newCA)
	all := l.MustPlaybook("playbooks/tools/renew_etcd_certs.yml", "etcd_ca_rotate=true")
	t.Logf("CA rotation in one run: %s", all.Duration.Round(time.Millisecond))
	if readFile(t, newCA) == second {
		t.Fatal("etcd_ca_rotate=true did not replace the CA")
	}
	for _, host := range h {
		if c := servedCert(t, host, 2380); !verifiesWith(t, c, newCA) {
			t.Fatalf("%s serves a certificate not from the third CA", host)
		}
	}
	if out := l.MustSSH(h[2], "etcdctl endpoint health --cluster"); strings.Count(out, "is healthy") != 3 {
		t.Fatalf("after a second rotation: %s", out)
	}
}
