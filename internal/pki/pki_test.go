package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStoreEnsure(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "ca")}
	if _, err := s.Ensure("m1", Request{CommonName: "m1", Usage: UsageMember}, 0, false); err == nil {
		t.Fatal("issued a certificate without a CA")
	}
	// Check mode predicts and writes nothing.
	out, err := s.EnsureCA("test-ca", time.Hour*24, true)
	if err != nil || !out.Changed {
		t.Fatalf("check mode: %+v %v", out, err)
	}
	if _, err := os.Stat(s.Dir); err == nil {
		t.Fatal("check mode created the store")
	}
	out, err = s.EnsureCA("test-ca", time.Hour*24, false)
	if err != nil || !out.Changed {
		t.Fatalf("create CA: %+v %v", out, err)
	}
	caBefore, _ := os.ReadFile(out.Cert)
	if out, err = s.EnsureCA("test-ca", time.Hour*24, false); err != nil || out.Changed {
		t.Fatalf("second EnsureCA changed: %+v %v", out, err)
	}
	if caAfter, _ := os.ReadFile(out.Cert); string(caAfter) != string(caBefore) {
		t.Fatal("CA replaced")
	}

	req := Request{CommonName: "etcd1", IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")},
		DNSNames: []string{"localhost"}, Usage: UsageMember, Validity: 24 * time.Hour}
	steps := []struct {
		name    string
		req     Request
		changed bool
	}{
		{"issue", req, true},
		{"unchanged", req, false},
		{"SANs in another order are the same", Request{CommonName: "etcd1", IPs: []net.IP{req.IPs[1], req.IPs[0]},
			DNSNames: req.DNSNames, Usage: UsageMember, Validity: req.Validity}, false},
		{"new IP reissues", Request{CommonName: "etcd1", IPs: []net.IP{net.ParseIP("10.0.0.2")}, Usage: UsageMember, Validity: req.Validity}, true},
		{"client usage reissues", Request{CommonName: "etcd1", IPs: []net.IP{net.ParseIP("10.0.0.2")}, Usage: UsageClient, Validity: req.Validity}, true},
	}
	for _, st := range steps {
		out, err := s.Ensure("etcd1", st.req, time.Hour, false)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if out.Changed != st.changed {
			t.Fatalf("%s: changed=%v (%s), want %v", st.name, out.Changed, out.Reason, st.changed)
		}
	}
	// Renewal when less than renewBefore is left.
	if out, _ := s.Ensure("etcd1", steps[4].req, 48*time.Hour, false); !out.Changed || out.Reason != "expires soon" {
		t.Fatalf("no renewal: %+v", out)
	}
	for _, f := range []string{"ca-key.pem", "etcd1-key.pem"} {
		st, err := os.Stat(filepath.Join(s.Dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v err %v", f, st.Mode().Perm(), err)
		}
	}
}

func TestIssuedCertificatesVerify(t *testing.T) {
	ca, err := NewCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member, err := Issue(ca, Request{CommonName: "etcd1", IPs: []net.IP{net.ParseIP("10.1.2.3")}, Usage: UsageMember, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	pair, err := tls.X509KeyPair(member.CertPEM, member.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("member certificate does not verify for %v: %v", u, err)
		}
	}
	if err := leaf.VerifyHostname("10.1.2.3"); err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("other", time.Hour)
	if ok, why := Matches(member, other, Request{CommonName: "etcd1", IPs: []net.IP{net.ParseIP("10.1.2.3")}, Usage: UsageMember}, 0); ok || why != "not signed by this CA" {
		t.Fatalf("Matches with another CA: %v %q", ok, why)
	}
	if _, err := Issue(ca, Request{CommonName: "x", Usage: "bogus"}); err == nil {
		t.Fatal("unknown usage accepted")
	}
}
