package pki

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/freeport"
	"github.com/etcdops/etcdops/internal/fsutil"
)

// reloadBinDirs are the etcd releases TestEtcdReloadsCertificates runs:
// ETCDOPS_RELOAD_BIN_DIRS (directories separated by ':', e.g. 3.4, 3.5
// and 3.6 builds), else ETCD_BIN_DIR, as make test-go sets it.
func reloadBinDirs(t *testing.T) []string {
	if v := os.Getenv("ETCDOPS_RELOAD_BIN_DIRS"); v != "" {
		return strings.Split(v, ":")
	}
	dir := os.Getenv("ETCD_BIN_DIR")
	if dir == "" {
		t.Fatal("ETCD_BIN_DIR is not set: run the tests with `make test-go` (it builds etcd into bin/)")
	}
	return []string{dir}
}

// TestEtcdReloadsCertificates measures, on a real etcd process, what etcd
// does when its certificate files are replaced (atomically, as
// renew_etcd_certs.yml does) while it runs: whether a new connection, on
// the client and on the peer listener, is served the new certificate; and
// whether a replaced trusted CA file (a bundle of the old and a new CA) is
// read again, i.e. whether a client certificate from the new CA is
// accepted without a restart. renew_etcd_certs.yml relies on the first and
// restarts members for the second.
func TestEtcdReloadsCertificates(t *testing.T) {
	for _, dir := range reloadBinDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			version, err := exec.Command(filepath.Join(dir, "etcd"), "--version").Output()
			if err != nil {
				t.Fatalf("etcd --version: %v", err)
			}
			t.Logf("%s", strings.SplitN(string(version), "\n", 2)[0])
			measureReload(t, filepath.Join(dir, "etcd"))
		})
	}
}

func measureReload(t *testing.T, bin string) {
	tmp := t.TempDir()
	oldCA, err := NewCA("reload-old-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := NewCA("reload-new-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member := func(ca Pair) Pair {
		p, err := Issue(ca, Request{CommonName: "m0", DNSNames: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: UsageMember, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	client := func(ca Pair) tls.Certificate {
		p, err := Issue(ca, Request{CommonName: "root", Usage: UsageClient, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	certFile, keyFile, caFile := filepath.Join(tmp, "member.pem"), filepath.Join(tmp, "member-key.pem"), filepath.Join(tmp, "ca.pem")
	install := func(p Pair) {
		if err := fsutil.WriteFile(keyFile, p.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := fsutil.WriteFile(certFile, p.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first := member(oldCA)
	install(first)
	if err := fsutil.WriteFile(caFile, oldCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	clientURL, peerURL := "https://127.0.0.1:"+freeport.Get(t), "https://127.0.0.1:"+freeport.Get(t)
	cmd := exec.Command(bin, "--name=m0", "--data-dir="+filepath.Join(tmp, "data"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=m0="+peerURL, "--initial-cluster-state=new",
		"--cert-file="+certFile, "--key-file="+keyFile, "--trusted-ca-file="+caFile, "--client-cert-auth",
		"--peer-cert-file="+certFile, "--peer-key-file="+keyFile, "--peer-trusted-ca-file="+caFile, "--peer-client-cert-auth")
	logFile, err := os.Create(filepath.Join(tmp, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ctx := context.Background()
	oldClient, newClient := client(oldCA), client(newCA)
	deadline := time.Now().Add(30 * time.Second)
	for Accepts(ctx, clientURL, oldClient, time.Second) != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("etcd not serving after 30s:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	servedSerial := func(endpoint string) string {
		c, err := Served(ctx, endpoint, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return Describe(c).Serial
	}
	serial := func(p Pair) string {
		c, err := parseCertificate(p.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return Describe(c).Serial
	}
	for _, u := range []string{clientURL, peerURL} {
		if got := servedSerial(u); got != serial(first) {
			t.Fatalf("%s serves %s before the change, want %s", u, got, serial(first))
		}
	}

	// 1. The certificate and key replaced: is a new connection served the
	// new certificate, on either listener?
	second := member(oldCA)
	install(second)
	for _, u := range []string{clientURL, peerURL} {
		got := servedSerial(u)
		t.Logf("after the certificate files were replaced, a new connection to %s is served the %s certificate",
			u, map[bool]string{true: "NEW", false: "old"}[got == serial(second)])
		if got != serial(second) {
			t.Errorf("%s still serves the old certificate after its files were replaced", u)
		}
	}
	if err := Accepts(ctx, clientURL, oldClient, 2*time.Second); err != nil {
		t.Errorf("after the certificate change the member refuses a client it trusted: %v", err)
	}

	// 2. The trusted CA file replaced by a bundle (old + new CA): is a
	// client certificate from the new CA accepted without a restart?
	bundle := append(append([]byte{}, oldCA.CertPEM...), newCA.CertPEM...)
	if err := fsutil.WriteFile(caFile, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{clientURL, peerURL} {
		err := Accepts(ctx, u, newClient, 2*time.Second)
		t.Logf("after the trusted CA file became a bundle with a new CA, a client certificate from the new CA, on %s: %s",
			u, describeAccept(err))
		if err == nil {
			t.Errorf("%s accepted a certificate from a CA it was not started with: the trusted CA file is re-read, renew_etcd_certs.yml restarts members needlessly", u)
		}
	}
	// 3. After a restart the bundle is read: both CAs are trusted.
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	restart := exec.Command(bin, cmd.Args[1:]...)
	restart.Stdout, restart.Stderr = logFile, logFile
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restart.Process.Kill(); _ = restart.Wait() })
	deadline = time.Now().Add(30 * time.Second)
	for Accepts(ctx, clientURL, newClient, time.Second) != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("after a restart with the bundle, a client from the new CA is still refused:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range []tls.Certificate{oldClient, newClient} {
		if err := Accepts(ctx, peerURL, c, 2*time.Second); err != nil {
			t.Errorf("after a restart with the bundle the peer listener refuses a client: %v", err)
		}
	}
	t.Logf("after a restart, clients from both CAs of the bundle are accepted on both listeners")
}

func describeAccept(err error) string {
	if err == nil {
		return "ACCEPTED (the trusted CA file was read again)"
	}
	return fmt.Sprintf("refused (the trusted CA file is not read again: %v)", err)
}
