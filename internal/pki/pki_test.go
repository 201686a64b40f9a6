package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadCA(t *testing.T) {
	rsaCA := makeCA(t, "rsa-pkcs1", nil)
	otherRSA := makeCA(t, "rsa-pkcs1", nil)
	ecCA := makeCA(t, "ecdsa-sec1", nil)
	encrypted := []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")
	tests := []struct {
		name      string
		cert, key []byte // nil: the file is not there
		wantErr   string // empty: loads
		missing   string // "certificate" or "key": a *MissingFileError
	}{
		{name: "cfssl's own CA (testdata)", cert: readFile(t, "testdata/cfssl/ca.pem"), key: readFile(t, "testdata/cfssl/ca-key.pem")},
		{name: "RSA PKCS#1", cert: rsaCA.CertPEM, key: rsaCA.KeyPEM},
		{name: "ECDSA SEC1 after EC PARAMETERS", cert: ecCA.CertPEM, key: ecCA.KeyPEM},
		{name: "certificate after openssl's text", cert: append([]byte("Certificate:\n    Data: ...\n"), rsaCA.CertPEM...), key: rsaCA.KeyPEM},
		{name: "certificate missing", key: rsaCA.KeyPEM, missing: "certificate"},
		{name: "key missing", cert: rsaCA.CertPEM, missing: "key"},
		{name: "key of another CA", cert: rsaCA.CertPEM, key: otherRSA.KeyPEM, wantErr: "the key does not belong to the certificate"},
		{name: "ECDSA key for an RSA certificate", cert: rsaCA.CertPEM, key: ecCA.KeyPEM, wantErr: "the key does not belong"},
		{name: "garbled certificate", cert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key: rsaCA.KeyPEM, wantErr: "parse certificate"},
		{name: "not PEM at all", cert: []byte("hello"), key: rsaCA.KeyPEM, wantErr: "no PEM CERTIFICATE block"},
		{name: "garbled key", cert: rsaCA.CertPEM, key: []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), wantErr: "parse RSA PRIVATE KEY"},
		{name: "a certificate as the key", cert: rsaCA.CertPEM, key: rsaCA.CertPEM, wantErr: "no PEM private key (the file holds CERTIFICATE)"},
		{name: "encrypted key", cert: rsaCA.CertPEM, key: encrypted, wantErr: "encrypted"},
	}
	for _, kind := range caKinds {
		p := makeCA(t, kind, nil)
		tests = append(tests, struct {
			name      string
			cert, key []byte
			wantErr   string
			missing   string
		}{name: "kind " + kind, cert: p.CertPEM, key: p.KeyPEM})
	}
	for _, c := range []struct {
		name, want string
		edit       func(*x509.Certificate)
	}{
		{"not a CA", "is not a CA certificate", func(c *x509.Certificate) { c.IsCA = false }},
		{"no basic constraints", "is not a CA certificate", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = false, false }},
		{"no cert-sign usage", "may not sign certificates", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }},
		{"expired", "expired on", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
		}},
		{"not yet valid", "is not valid before", func(c *x509.Certificate) { c.NotBefore = time.Now().Add(time.Hour) }},
	} {
		p := makeCA(t, "ecdsa-sec1", c.edit)
		tests = append(tests, struct {
			name      string
			cert, key []byte
			wantErr   string
			missing   string
		}{name: c.name, cert: p.CertPEM, key: p.KeyPEM, wantErr: c.want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			if tt.cert != nil {
				os.WriteFile(certPath, tt.cert, 0o644)
			}
			if tt.key != nil {
				os.WriteFile(keyPath, tt.key, 0o600)
			}
			a, err := LoadCA(certPath, keyPath)
			var missing *MissingFileError
			switch {
			case tt.missing != "":
				if !errors.As(err, &missing) || missing.What != tt.missing {
					t.Fatalf("got %v, want the missing %s", err, tt.missing)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			default:
				// It loads: it signs certificates that verify for both usages.
				_, cert, err := a.Issue(Request{CommonName: "m", IPs: []net.IP{net.IPv4(10, 0, 0, 4)}, Usage: UsageMember, Validity: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				verifyBoth(t, cert, a.Cert)
			}
		})
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyBoth checks cert against ca with x509.Verify, as a server checks a
// client and a client a server: a member is both.
func verifyBoth(t testing.TB, cert, ca *x509.Certificate) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("%s does not verify for usage %v: %v", cert.Subject, u, err)
		}
	}
}

// TestModuleWithExistingCA walks one member's certificate through the
// module's life with the cluster's own CA, for each kind of CA key, in the
// CA's own directory as on a kubeasz deploy node.
func TestModuleWithExistingCA(t *testing.T) {
	for _, kind := range caKinds {
		t.Run(kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "clusters", "k8s-01", "ssl")
			caCert, caKey := writeCA(t, dir, makeCA(t, kind, nil))
			args := func(ips ...string) map[string]any {
				return map[string]any{"path": dir, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-10.0.0.4",
					"ip_addresses": ips, "dns_names": []string{"localhost"}, "_ansible_diff": true}
			}
			checkMode := func(a map[string]any) map[string]any { a["_ansible_check_mode"] = true; return a }
			certPath := filepath.Join(dir, "etcd-10.0.0.4.pem")
			var serial string
			steps := []struct {
				name      string
				args      map[string]any
				changed   bool
				newSerial bool // the certificate on disk is a new one
				before    func()
				msg       string
			}{
				{name: "check mode predicts and writes nothing", args: checkMode(args("10.0.0.4", "127.0.0.1")), changed: true},
				{name: "issue", args: args("10.0.0.4", "127.0.0.1"), changed: true, newSerial: true},
				{name: "second run changes nothing", args: args("10.0.0.4", "127.0.0.1")},
				{name: "SANs in another order are the same", args: args("127.0.0.1", "10.0.0.4")},
				{name: "SAN change in check mode writes nothing", args: checkMode(args("10.0.0.5", "127.0.0.1")), changed: true},
				{name: "SAN change reissues", args: args("10.0.0.5", "127.0.0.1"), changed: true, newSerial: true, msg: "(IP addresses differ)"},
				{name: "CA change reissues", args: args("10.0.0.5", "127.0.0.1"), changed: true, newSerial: true,
					before: func() { writeCA(t, dir, makeCA(t, kind, nil)) }, msg: "(not issued by this CA)"},
				{name: "and then changes nothing", args: args("10.0.0.5", "127.0.0.1")},
			}
			for _, st := range steps {
				if st.before != nil {
					st.before()
				}
				prev := tree(t, dir)
				res := runModule(t, st.args)
				for _, f := range []string{caCert, caKey} {
					if now := tree(t, dir); now[f] != prev[f] {
						t.Fatalf("%s: the module changed the CA's %s", st.name, f)
					}
				}
				if res["failed"] == true {
					t.Fatalf("%s: %v", st.name, res["msg"])
				}
				if res["changed"] != st.changed {
					t.Fatalf("%s: changed=%v (%v), want %v", st.name, res["changed"], res["msg"], st.changed)
				}
				if !strings.Contains(res["msg"].(string), st.msg) {
					t.Fatalf("%s: msg %q, want %q", st.name, res["msg"], st.msg)
				}
				if st.args["_ansible_check_mode"] == true {
					if now := tree(t, dir); len(now) != len(prev) {
						t.Fatalf("%s: check mode wrote files", st.name)
					}
					if _, ok := res["serial"]; ok {
						t.Fatalf("%s: check mode reports a serial it cannot know", st.name)
					}
				}
				if res["ca_cert"] != caCert || res["cert"] != certPath || res["key"] != filepath.Join(dir, "etcd-10.0.0.4-key.pem") {
					t.Fatalf("%s: paths %v %v %v", st.name, res["ca_cert"], res["cert"], res["key"])
				}
				if !sameStrings(res["ip_addresses"].([]string), st.args["ip_addresses"].([]string)) {
					t.Fatalf("%s: ip_addresses %v", st.name, res["ip_addresses"])
				}
				d := res["diff"].(map[string]any)
				if st.changed != (d["before"] != d["after"]) {
					t.Fatalf("%s: diff %v", st.name, d)
				}
				if !strings.Contains(d["after"].(string), "ip_addresses: "+strings.Join(res["ip_addresses"].([]string), ", ")) {
					t.Fatalf("%s: diff after %q", st.name, d["after"])
				}
				if st.args["_ansible_check_mode"] == true {
					continue
				}
				c := leaf(t, certPath)
				ca := leaf(t, caCert)
				verifyBoth(t, c, ca)
				if got := Describe(c); res["serial"] != got.Serial || res["issuer"] != ca.Subject.String() ||
					res["not_after"] != got.NotAfter.Format(time.RFC3339) || !sameStrings(res["dns_names"].([]string), []string{"localhost"}) {
					t.Fatalf("%s: returned %v, certificate %+v", st.name, res, got)
				}
				if newSerial := res["serial"] != serial; newSerial != st.newSerial {
					t.Fatalf("%s: serial %v after %v", st.name, res["serial"], serial)
				}
				serial = res["serial"].(string)
				if got := Describe(c).Key; got != "ECDSA P-256" {
					t.Fatalf("%s: issued key %s", st.name, got)
				}
			}
			for f, mode := range map[string]os.FileMode{"etcd-10.0.0.4-key.pem": 0o600, "etcd-10.0.0.4.pem": 0o644, "ca-key.pem": 0o600} {
				st, err := os.Stat(filepath.Join(dir, f))
				if err != nil || st.Mode().Perm() != mode {
					t.Fatalf("%s: %v %v, want %v", f, st.Mode(), err, mode)
				}
			}
		})
	}
}
