package pki_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
)

// TestRenewInPlace is what renew_etcd_certs.yml does to one member of an
// adopted kubeasz 3.x cluster, against a real (embedded) etcd member that
// runs with kubeasz's shared RSA certificate (cfssl, testdata/cfssl) and a
// client writing all the time: state=info finds the shared certificate due
// (it names other members' addresses, not the member's name); state=present
// issues the member's own from the same CA; state=install puts it in place
// of the shared one, at the same paths; the member serves it to the next
// connection, no write fails, and state=info then finds nothing to do.
func TestRenewInPlace(t *testing.T) {
	root := t.TempDir()
	ssl, host := filepath.Join(root, "deploy", "ssl"), filepath.Join(root, "member", "ssl")
	copyCfssl(t, ssl, 0o600, "ca.pem", "ca-key.pem", "etcd.pem", "etcd-key.pem")
	copyCfssl(t, host, 0o640, "ca.pem", "etcd.pem", "etcd-key.pem") // the CA key stays on the deploy node
	caCert, caKey := filepath.Join(ssl, "ca.pem"), filepath.Join(ssl, "ca-key.pem")
	caPEM, _ := os.ReadFile(caCert)
	run := func(args map[string]any) modrun.Result {
		t.Helper()
		return modrun.ExecuteArgs(context.Background(), args, pki.ModuleSpec, pki.RunModule)
	}
	mustRun := func(args map[string]any) modrun.Result {
		t.Helper()
		res := run(args)
		if res["failed"] == true {
			t.Fatalf("etcd_cert %v: %v", args["state"], res["msg"])
		}
		return res
	}
	client := mustRun(map[string]any{"path": ssl, "ca_cert": caCert, "ca_key": caKey, "name": "etcd-client",
		"common_name": "root", "usage": "client"})

	memberCert, memberKey, trusted := filepath.Join(host, "etcd.pem"), filepath.Join(host, "etcd-key.pem"), filepath.Join(host, "ca.pem")
	m := newMember(t, root, "etcd-127.0.0.1", memberCert, memberKey, trusted)
	m.start(t, m.name+"="+m.peer, "new")

	// A client writes all the time, over one connection and over a new one
	// for every tenth write (a new TLS handshake each).
	opts := etcdconn.Options{Endpoints: []string{m.client}, CACert: caCert,
		ClientCert: client["cert"].(string), ClientKey: client["key"].(string), DialTimeout: 5, CommandTimeout: 10}
	cli, err := etcdconn.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var writes, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := cli
			if i%10 == 0 {
				if c, err = etcdconn.New(opts); err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := c.Put(ctx, fmt.Sprintf("k%06d", i), "v"); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
			cancel()
			if c != cli {
				c.Close()
			}
			writes.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	info := map[string]any{"state": "info", "cert": memberCert, "key": memberKey, "ca_pem": string(caPEM),
		"ip_addresses": []string{"127.0.0.1"}, "dns_names": []string{"localhost", m.name},
		"endpoints": []string{m.client, m.peer}, "renew_before_days": 30}
	before := mustRun(info)
	if before["renew"] != true || before["served_current"] != true {
		t.Fatalf("the shared certificate: renew=%v served_current=%v: %v", before["renew"], before["served_current"], before["msg"])
	}
	reasons := strings.Join(before["renew_reasons"].([]string), "; ")
	for _, want := range []string{"10.0.0.1", m.name} {
		if !strings.Contains(reasons, want) {
			t.Errorf("renew_reasons %q do not mention %s", reasons, want)
		}
	}

	issued := mustRun(map[string]any{"path": ssl, "ca_cert": caCert, "ca_key": caKey, "name": m.name,
		"ip_addresses": []string{"127.0.0.1"}, "dns_names": []string{"localhost", m.name}, "reissue_serial": before["serial"]})
	if issued["changed"] != true {
		t.Fatalf("present: %v", issued)
	}
	// reissue_serial names the member's old certificate, not this one: a
	// second run (or a rerun after a failure) keeps it.
	if again := mustRun(map[string]any{"path": ssl, "ca_cert": caCert, "ca_key": caKey, "name": m.name,
		"ip_addresses": []string{"127.0.0.1"}, "dns_names": []string{"localhost", m.name}, "reissue_serial": before["serial"]}); again["changed"] != false {
		t.Fatalf("present reissued again: %v", again["msg"])
	}

	stage := func(cert, key string) map[string]any {
		t.Helper()
		for src, dst := range map[string]string{cert: memberCert + ".new", key: memberKey + ".new"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return map[string]any{"state": "install", "cert": memberCert, "key": memberKey,
			"src_cert": memberCert + ".new", "src_key": memberKey + ".new", "ca_cert": trusted}
	}
	installArgs := map[string]any{"state": "install", "cert": memberCert, "key": memberKey,
		"src_cert": memberCert + ".new", "src_key": memberKey + ".new", "ca_cert": trusted}

	// Check mode with nothing staged (copy wrote nothing) predicts a change.
	check := map[string]any{"_ansible_check_mode": true}
	for k, v := range installArgs {
		check[k] = v
	}
	if res := mustRun(check); res["changed"] != true {
		t.Fatalf("check mode: %v", res)
	}

	// Refused: a key that is not the certificate's, and a certificate the
	// member's trusted CA does not accept. Nothing changes.
	shared, _ := os.ReadFile(memberCert)
	other := filepath.Join(root, "other")
	otherCA, err := pki.NewCA("other-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherPair, err := pki.Issue(otherCA, pki.Request{CommonName: m.name, Usage: pki.UsageMember, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other+".pem", otherPair.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other+"-key.pem", otherPair.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ cert, key, want string }{
		{issued["cert"].(string), other + "-key.pem", "does not belong"},
		{other + ".pem", other + "-key.pem", "not trusted by the member's CA file"},
	} {
		res := run(stage(bad.cert, bad.key))
		if res["failed"] != true || !strings.Contains(res["msg"].(string), bad.want) {
			t.Fatalf("install of %s: %v", bad.cert, res["msg"])
		}
		if now, _ := os.ReadFile(memberCert); string(now) != string(shared) {
			t.Fatal("a refused install changed the member's certificate")
		}
	}

	start := time.Now()
	res := mustRun(stage(issued["cert"].(string), issued["key"].(string)))
	if res["changed"] != true {
		t.Fatalf("install: %v", res)
	}
	for _, p := range []string{memberCert + ".new", memberKey + ".new"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range []string{memberCert, memberKey} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want the replaced file's 0640 (%v)", p, st.Mode().Perm(), err)
		}
	}
	after := mustRun(info)
	t.Logf("the member served its new certificate %v after the install", time.Since(start))
	if after["renew"] != false || after["served_current"] != true || after["serial"] != issued["serial"] {
		t.Fatalf("after the install: renew=%v (%v) served_current=%v serial %v, want %v: %v",
			after["renew"], after["renew_reasons"], after["served_current"], after["serial"], issued["serial"], after["msg"])
	}
	// The same files again: nothing to do.
	if res := mustRun(stage(issued["cert"].(string), issued["key"].(string))); res["changed"] != false {
		t.Fatalf("second install: %v", res)
	}

	// Which CA a member trusts, asked by offering it a client certificate.
	probe := map[string]any{}
	for k, v := range info {
		probe[k] = v
	}
	probe["probe_cert"], probe["probe_key"] = client["cert"], client["key"]
	if res := mustRun(probe); res["accepts_probe"] != true {
		t.Fatalf("the member refuses the cluster's client: %v", res["msg"])
	}
	probe["probe_cert"], probe["probe_key"] = other+".pem", other+"-key.pem"
	if res := mustRun(probe); res["accepts_probe"] != false {
		t.Fatalf("the member accepts a client of another CA: %v", res["msg"])
	}

	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 || writes.Load() < 20 {
		t.Fatalf("%d of %d writes failed during the renewal, the first: %v", n, writes.Load(), firstFailure.Load())
	}
	t.Logf("%d writes, none failed", writes.Load())
}
