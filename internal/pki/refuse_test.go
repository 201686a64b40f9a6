package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestModuleRefuses checks every refusal: the task fails with a message
// that says what is wrong, and nothing at all is written (the directory
// tree, modes and contents are as before; no lock file either).
func TestModuleRefuses(t *testing.T) {
	good := makeCA(t, "rsa-pkcs1", nil)
	other := makeCA(t, "rsa-pkcs1", nil)
	notCA := makeCA(t, "ecdsa-sec1", func(c *x509.Certificate) { c.IsCA = false })
	expired := makeCA(t, "rsa-pkcs1", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	})
	tests := []struct {
		name  string
		setup func(t *testing.T, ssl string) map[string]any // writes the files, returns the task's options
		want  []string
	}{
		{"the CA key is missing", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, good)
			os.Remove(key)
			return map[string]any{"ca_cert": cert, "ca_key": key, "path": filepath.Join(ssl, "new")}
		}, []string{"the cluster's CA key ", "/ssl/ca-key.pem is missing: it is needed to issue a certificate for a new member (etcd-10.0.0.4)", "nothing was changed"}},
		{"the CA certificate is missing", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, good)
			os.Remove(cert)
			return map[string]any{"ca_cert": cert, "ca_key": key}
		}, []string{"the cluster's CA certificate ", "/ssl/ca.pem is missing"}},
		{"the whole CA directory is missing", func(t *testing.T, ssl string) map[string]any {
			return map[string]any{"ca_cert": filepath.Join(ssl, "ca.pem"), "ca_key": filepath.Join(ssl, "ca-key.pem")}
		}, []string{"/ssl/ca.pem is missing", "never creates a CA"}},
		{"the key is another CA's", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, Pair{CertPEM: good.CertPEM, KeyPEM: other.KeyPEM})
			return map[string]any{"ca_cert": cert, "ca_key": key}
		}, []string{"the key does not belong to the certificate CN=kubernetes-ca"}},
		{"the certificate is not a CA", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, notCA)
			return map[string]any{"ca_cert": cert, "ca_key": key}
		}, []string{"is not a CA certificate"}},
		{"the CA expired", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, expired)
			return map[string]any{"ca_cert": cert, "ca_key": key}
		}, []string{"expired on"}},
		{"the key is garbled", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, Pair{CertPEM: good.CertPEM, KeyPEM: good.KeyPEM[:200]})
			return map[string]any{"ca_cert": cert, "ca_key": key}
		}, []string{"ca-key.pem: no PEM private key"}},
		{"name ca in the CA's directory", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, good)
			return map[string]any{"ca_cert": cert, "ca_key": key, "name": "ca"}
		}, []string{"name ca is refused"}},
		{"a name whose files are the CA's", func(t *testing.T, ssl string) map[string]any {
			writeCA(t, ssl, good)
			cert, key := filepath.Join(ssl, "etcd-ca.pem"), filepath.Join(ssl, "etcd-ca-key.pem")
			os.Rename(filepath.Join(ssl, "ca.pem"), cert)
			os.Rename(filepath.Join(ssl, "ca-key.pem"), key)
			return map[string]any{"ca_cert": cert, "ca_key": key, "name": "etcd-ca"}
		}, []string{"which is the CA's file"}},
		{"a name whose file is a link to the CA", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, good)
			os.MkdirAll(filepath.Join(ssl, "out"), 0o700)
			os.Symlink(key, filepath.Join(ssl, "out", "m1-key.pem"))
			return map[string]any{"ca_cert": cert, "ca_key": key, "name": "m1", "path": filepath.Join(ssl, "out")}
		}, []string{"which is the CA's file"}},
		{"kubeasz's shared etcd.pem is never replaced", func(t *testing.T, ssl string) map[string]any {
			cert, key := writeCA(t, ssl, Pair{CertPEM: readFile(t, "testdata/cfssl/ca.pem"), KeyPEM: readFile(t, "testdata/cfssl/ca-key.pem")})
			os.WriteFile(filepath.Join(ssl, "etcd.pem"), readFile(t, "testdata/cfssl/etcd.pem"), 0o644)
			os.WriteFile(filepath.Join(ssl, "etcd-key.pem"), readFile(t, "testdata/cfssl/etcd-key.pem"), 0o600)
			return map[string]any{"ca_cert": cert, "ca_key": key, "name": "etcd"}
		}, []string{"/ssl/etcd.pem exists and was not issued by etcd_cert (subject CN=etcd,OU=System,O=k8s", "choose another name"}},
		{"ca_cert without ca_key", func(t *testing.T, ssl string) map[string]any {
			cert, _ := writeCA(t, ssl, good)
			return map[string]any{"ca_cert": cert, "ca_key": nil}
		}, []string{"ca_cert and ca_key go together"}},
		{"name ca with the module's own CA", func(t *testing.T, ssl string) map[string]any {
			return map[string]any{"name": "ca"}
		}, []string{"name ca is refused"}},
		{"a name that is a path", func(t *testing.T, ssl string) map[string]any {
			return map[string]any{"name": "../etc/x"}
		}, []string{"a certificate name is a file name"}},
		{"the module's own CA is incomplete", func(t *testing.T, ssl string) map[string]any {
			_, key := writeCA(t, ssl, good)
			os.Remove(key)
			return map[string]any{}
		}, []string{"is incomplete", "ca-key.pem is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ssl := filepath.Join(root, "clusters", "k8s-01", "ssl")
			args := map[string]any{"path": ssl, "name": "etcd-10.0.0.4", "ip_addresses": []string{"10.0.0.4"}}
			for k, v := range tt.setup(t, ssl) {
				if v == nil {
					delete(args, k)
				} else {
					args[k] = v
				}
			}
			before := tree(t, root)
			for _, check := range []bool{true, false} {
				args["_ansible_check_mode"] = check
				res := runModule(t, args)
				if res["failed"] != true || res["changed"] != false {
					t.Fatalf("check=%v: not refused: %v", check, res)
				}
				for _, w := range tt.want {
					if !strings.Contains(res["msg"].(string), w) {
						t.Errorf("check=%v: message %q lacks %q", check, res["msg"], w)
					}
				}
				after := tree(t, root)
				for p, v := range after {
					if before[p] != v {
						t.Errorf("check=%v: %s was written", check, p)
					}
				}
				if len(after) != len(before) {
					t.Errorf("check=%v: files were added or removed: %d, were %d", check, len(after), len(before))
				}
			}
		})
	}
}

// TestModuleOwnCA is the project's own layout: the module creates the CA in
// path once and never replaces it.
func TestModuleOwnCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	args := func(extra map[string]any) map[string]any {
		a := map[string]any{"path": dir, "name": "etcd1", "ip_addresses": []string{"10.0.0.1", "127.0.0.1"},
			"dns_names": []string{"localhost"}, "validity_days": 10, "renew_before_days": 2}
		for k, v := range extra {
			a[k] = v
		}
		return a
	}
	steps := []struct {
		name    string
		args    map[string]any
		changed bool
		msg     string
	}{
		{"check mode with no CA predicts both", args(map[string]any{"_ansible_check_mode": true, "_ansible_diff": true}), true, "would have created the CA"},
		{"create the CA and issue", args(nil), true, "created the CA"},
		{"second run", args(nil), false, "up to date"},
		{"client usage reissues", args(map[string]any{"usage": "client"}), true, "issued etcd1 (usage differs)"},
		{"member again", args(nil), true, "usage differs"},
		{"a longer life renews when expiry is near", args(map[string]any{"validity_days": 100, "renew_before_days": 20}), true, "expires soon"},
		{"and then not", args(map[string]any{"validity_days": 100, "renew_before_days": 20}), false, "up to date"},
		{"common name change reissues", args(map[string]any{"common_name": "other"}), true, "common name differs"},
		{"the CA only", map[string]any{"path": dir}, false, "the CA can issue certificates"},
		{"the CA only, given as the existing CA", map[string]any{"path": dir, "ca_cert": filepath.Join(dir, "ca.pem"),
			"ca_key": filepath.Join(dir, "ca-key.pem")}, false, "the CA can issue certificates"},
	}
	var caPEM []byte
	for _, st := range steps {
		res := runModule(t, st.args)
		if res["failed"] == true || res["changed"] != st.changed || !strings.Contains(res["msg"].(string), st.msg) {
			t.Fatalf("%s: %v", st.name, res)
		}
		if st.args["_ansible_check_mode"] == true {
			if _, err := os.Stat(dir); err == nil {
				t.Fatalf("%s: check mode created %s", st.name, dir)
			}
			if d, ok := res["diff"].([]any); !ok || len(d) != 2 {
				t.Fatalf("%s: diff %v, want the CA's and the certificate's", st.name, res["diff"])
			}
			continue
		}
		ca := readFile(t, filepath.Join(dir, "ca.pem"))
		if caPEM != nil && string(ca) != string(caPEM) {
			t.Fatalf("%s: the CA was replaced", st.name)
		}
		caPEM = ca
		if _, ok := st.args["name"]; ok {
			verifyBoth := st.args["usage"] != "client"
			c, a := leaf(t, filepath.Join(dir, "etcd1.pem")), leaf(t, filepath.Join(dir, "ca.pem"))
			usages := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			if verifyBoth {
				usages = append(usages, x509.ExtKeyUsageServerAuth)
			}
			if err := verify(c, a, usages...); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
	}
}

// TestModuleCANearItsEnd: a certificate capped at the CA's end is not
// reissued on every run (it could not live longer); the module warns.
func TestModuleCANearItsEnd(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCA(t, dir, makeCA(t, "ecdsa-sec1", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(5 * 24 * time.Hour) }))
	args := map[string]any{"path": dir, "ca_cert": cert, "ca_key": key, "name": "m1", "usage": "client"}
	for i, want := range []bool{true, false} {
		res := runModule(t, args)
		if res["failed"] == true || res["changed"] != want {
			t.Fatalf("run %d: %v", i, res)
		}
		if w, _ := res["warnings"].([]string); len(w) != 1 || !strings.Contains(w[0], "ends on") {
			t.Fatalf("run %d: warnings %v", i, res["warnings"])
		}
	}
}

func TestModuleInfo(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir, makeCA(t, "rsa-pkcs1", nil))
	res := runModule(t, map[string]any{"path": dir, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-10.0.0.4",
		"ip_addresses": []string{"10.0.0.4"}, "validity_days": 100})
	if res["failed"] == true {
		t.Fatal(res["msg"])
	}
	otherDir := t.TempDir()
	otherCA, _ := writeCA(t, otherDir, makeCA(t, "rsa-pkcs1", nil))
	tests := []struct {
		name     string
		args     map[string]any
		verifies any // nil: not reported
		days     int
		sans     []string
		failed   string
	}{
		{"by path and name", map[string]any{"path": dir, "name": "etcd-10.0.0.4", "ca_cert": caCert}, true, 99, []string{"10.0.0.4"}, ""},
		{"by cert, against another CA", map[string]any{"cert": filepath.Join(dir, "etcd-10.0.0.4.pem"), "ca_cert": otherCA}, false, 99, []string{"10.0.0.4"}, ""},
		{"no CA given", map[string]any{"cert": filepath.Join(dir, "etcd-10.0.0.4.pem")}, nil, 99, []string{"10.0.0.4"}, ""},
		{"kubeasz's shared certificate against its CA", map[string]any{"cert": "testdata/cfssl/etcd.pem", "ca_cert": "testdata/cfssl/ca.pem"},
			true, 0, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1"}, ""},
		{"the module's own CA in path is used", map[string]any{"path": "testdata/cfssl", "name": "etcd"}, true, 0, nil, ""},
		{"no certificate there", map[string]any{"path": dir, "name": "nope"}, nil, 0, nil, ""},
		{"neither cert nor name", map[string]any{"path": dir}, nil, 0, nil, "needs cert, or path and name"},
		{"a missing CA is an error", map[string]any{"path": dir, "name": "etcd-10.0.0.4", "ca_cert": filepath.Join(dir, "nope.pem")}, nil, 0, nil, "nope.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.args["state"] = "info"
			before := tree(t, dir)
			res := runModule(t, tt.args)
			if len(tree(t, dir)) != len(before) || res["changed"] != false {
				t.Fatal("info changed something")
			}
			if tt.failed != "" {
				if res["failed"] != true || !strings.Contains(res["msg"].(string), tt.failed) {
					t.Fatalf("%v", res)
				}
				return
			}
			if res["failed"] == true {
				t.Fatal(res["msg"])
			}
			if tt.name == "no certificate there" {
				if res["exists"] != false {
					t.Fatalf("%v", res)
				}
				return
			}
			if res["verifies"] != tt.verifies {
				t.Fatalf("verifies=%v (%v), want %v", res["verifies"], res["verify_error"], tt.verifies)
			}
			if tt.days > 0 && res["days_left"] != tt.days {
				t.Fatalf("days_left %v, want %d", res["days_left"], tt.days)
			}
			if days := res["days_left"].(int); days < 0 {
				t.Fatalf("days_left %d", days)
			}
			if tt.sans != nil && !sameStrings(res["ip_addresses"].([]string), tt.sans) {
				t.Fatalf("ip_addresses %v", res["ip_addresses"])
			}
		})
	}
}

// TestModuleInfoJudges: state=info says whether a certificate is due for
// renewal (fewer than renew_before_days left) and whether it names the
// addresses and names it must.
func TestModuleInfoJudges(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir, makeCA(t, "rsa-pkcs1", nil))
	if res := runModule(t, map[string]any{"path": dir, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-10.0.0.4",
		"ip_addresses": []string{"10.0.0.4", "127.0.0.1"}, "dns_names": []string{"localhost"}, "validity_days": 100}); res["failed"] == true {
		t.Fatal(res["msg"])
	}
	cert := filepath.Join(dir, "etcd-10.0.0.4.pem")
	for _, tt := range []struct {
		name    string
		args    map[string]any
		soon    bool
		covers  any // nil: not reported
		missing []string
	}{
		{"far from expiry, no names asked", map[string]any{"renew_before_days": 30}, false, nil, nil},
		{"within the warning window", map[string]any{"renew_before_days": 120}, true, nil, nil},
		{"names its address", map[string]any{"ip_addresses": []string{"10.0.0.4"}, "dns_names": []string{"localhost"}}, false, true, []string{}},
		{"not a moved member's address", map[string]any{"ip_addresses": []string{"10.0.0.9", "10.0.0.4"}, "dns_names": []string{"etcd4"}},
			false, false, []string{"10.0.0.9", "etcd4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := map[string]any{"state": "info", "cert": cert, "ca_cert": caCert}
			for k, v := range tt.args {
				args[k] = v
			}
			res := runModule(t, args)
			if res["failed"] == true {
				t.Fatal(res["msg"])
			}
			if res["expires_soon"] != tt.soon || res["covers"] != tt.covers {
				t.Fatalf("expires_soon=%v covers=%v: %v", res["expires_soon"], res["covers"], res["msg"])
			}
			if tt.missing != nil && !sameStrings(res["missing_names"].([]string), tt.missing) {
				t.Fatalf("missing_names %v, want %v", res["missing_names"], tt.missing)
			}
		})
	}
}

// TestModuleInfoRenew: state=info decides whether a member's certificate is
// to be reissued, and says why.
func TestModuleInfoRenew(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir, makeCA(t, "rsa-pkcs1", nil))
	if res := runModule(t, map[string]any{"path": dir, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-10.0.0.4",
		"ip_addresses": []string{"10.0.0.4", "127.0.0.1"}, "dns_names": []string{"localhost"}, "validity_days": 100}); res["failed"] == true {
		t.Fatal(res["msg"])
	}
	otherCA := makeCA(t, "ecdsa-sec1", nil)
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, otherCA.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	caPEM := string(readFile(t, caCert))
	cert, key := filepath.Join(dir, "etcd-10.0.0.4.pem"), filepath.Join(dir, "etcd-10.0.0.4-key.pem")
	if res := runModule(t, map[string]any{"path": dir, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-client",
		"usage": "client", "validity_days": 100}); res["failed"] == true {
		t.Fatal(res["msg"])
	}
	clientCert := filepath.Join(dir, "etcd-client.pem")
	for _, tt := range []struct {
		name   string
		args   map[string]any
		reason string // empty: nothing to renew
	}{
		{"up to date", map[string]any{}, ""},
		{"renew_all", map[string]any{"renew_all": true}, "renew_all"},
		{"expiring", map[string]any{"renew_before_days": 120}, "expires within 120 days"},
		{"a name missing", map[string]any{"dns_names": []string{"localhost", "etcd4"}}, "does not name etcd4"},
		{"shared with another member", map[string]any{"ip_addresses": []string{"10.0.0.4"}}, "also names 127.0.0.1"},
		{"from another CA", map[string]any{"ca_pem": string(otherCA.CertPEM)}, "not from the CA"},
		{"a key that is not its own", map[string]any{"key": otherKey}, "does not belong"},
		{"a client certificate's usage asked of a member's", map[string]any{"cert": clientCert}, "lacks the server auth usage"},
		{"a client certificate as a client", map[string]any{"cert": clientCert, "usage": "client", "key": "",
			"ip_addresses": []string{}, "dns_names": []string{}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := map[string]any{"state": "info", "cert": cert, "key": key, "ca_pem": caPEM,
				"ip_addresses": []string{"10.0.0.4", "127.0.0.1"}, "dns_names": []string{"localhost"}, "renew_before_days": 30}
			for k, v := range tt.args {
				args[k] = v
			}
			res := runModule(t, args)
			if res["failed"] == true {
				t.Fatal(res["msg"])
			}
			reasons := strings.Join(res["renew_reasons"].([]string), "; ")
			if res["renew"] != (tt.reason != "") || !strings.Contains(reasons, tt.reason) {
				t.Fatalf("renew=%v reasons %q, want %q", res["renew"], reasons, tt.reason)
			}
		})
	}
}

// TestModuleInfoSinceProcessStart: with pid, state=info says whether the
// file changed after that process started (a trusted CA file etcd has not
// read).
func TestModuleInfoSinceProcessStart(t *testing.T) {
	dir := t.TempDir()
	caCert, _ := writeCA(t, dir, makeCA(t, "rsa-pkcs1", nil))
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(caCert, old, old); err != nil {
		t.Fatal(err)
	}
	res := runModule(t, map[string]any{"state": "info", "cert": caCert, "pid": os.Getpid()})
	if res["failed"] == true || res["changed_since_process_start"] != false || res["certificates"] != 1 {
		t.Fatalf("a file older than the process: %v", res)
	}
	if err := os.Chtimes(caCert, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	res = runModule(t, map[string]any{"state": "info", "cert": caCert, "pid": os.Getpid()})
	if res["failed"] == true || res["changed_since_process_start"] != true {
		t.Fatalf("a file changed after the process started: %v", res)
	}
	started, err := time.Parse(time.RFC3339, res["process_started"].(string))
	if err != nil || time.Since(started) > 10*time.Minute || time.Since(started) < 0 {
		t.Fatalf("process_started %v (%v)", res["process_started"], err)
	}
}

// TestModuleInfoCountsBundle: state=info counts the certificates of a CA
// bundle; two joined without a line break between them are refused (as a
// garbled file, which etcd would refuse too).
func TestModuleInfoCountsBundle(t *testing.T) {
	dir := t.TempDir()
	a, b := makeCA(t, "rsa-pkcs1", nil), makeCA(t, "ecdsa-sec1", nil)
	for _, tt := range []struct {
		name string
		pem  string
		want int
	}{
		{"two", string(a.CertPEM) + string(b.CertPEM), 2},
		{"joined by a literal backslash-n", strings.TrimSuffix(string(a.CertPEM), "\n") + `\n` + string(b.CertPEM), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "bundle.pem")
			if err := os.WriteFile(p, []byte(tt.pem), 0o644); err != nil {
				t.Fatal(err)
			}
			res := runModule(t, map[string]any{"state": "info", "cert": p})
			if tt.want == 0 && res["failed"] == true {
				return
			}
			if res["certificates"] != tt.want {
				t.Fatalf("certificates %v, want %d: %v", res["certificates"], tt.want, res["msg"])
			}
		})
	}
}
