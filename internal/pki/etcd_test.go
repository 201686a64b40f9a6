package pki_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/freeport"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
)

// TestNewMemberJoinsKubeaszCluster runs the adoption case against real etcd
// members: a one-member cluster serving kubeasz's shared RSA certificate,
// made by the real cfssl (testdata/cfssl), with client certificates
// required on client and peer listeners; etcd_cert issues, from that
// cluster's CA in its own directory, a client certificate and a new
// member's own certificate; the client adds the member, the member joins
// (both sides of the peer connection check each other's certificate) and
// serves.
func TestNewMemberJoinsKubeaszCluster(t *testing.T) {
	root := t.TempDir()
	ssl := filepath.Join(root, "clusters", "k8s-01", "ssl")
	copyCfssl(t, ssl, 0o600, "ca.pem", "ca-key.pem", "etcd.pem", "etcd-key.pem")
	caCert, caKey := filepath.Join(ssl, "ca.pem"), filepath.Join(ssl, "ca-key.pem")
	issue := func(args map[string]any) modrun.Result {
		t.Helper()
		args["path"], args["ca_cert"], args["ca_key"] = ssl, caCert, caKey
		res := modrun.ExecuteArgs(context.Background(), args, pki.ModuleSpec, pki.RunModule)
		if res["failed"] == true || res["changed"] != true {
			t.Fatalf("etcd_cert: %v", res)
		}
		return res
	}
	client := issue(map[string]any{"name": "etcd-client", "common_name": "root", "usage": "client"})
	member := issue(map[string]any{"name": "etcd-127.0.0.1", "ip_addresses": []string{"127.0.0.1"}})

	m0 := newMember(t, root, "etcd-10.0.0.1", filepath.Join(ssl, "etcd.pem"), filepath.Join(ssl, "etcd-key.pem"), caCert)
	m1 := newMember(t, root, "etcd-127.0.0.1", member["cert"].(string), member["key"].(string), caCert)
	m0.start(t, m0.name+"="+m0.peer, "new")

	opts := etcdconn.Options{Endpoints: []string{m0.client}, CACert: caCert,
		ClientCert: client["cert"].(string), ClientKey: client["key"].(string), DialTimeout: 5, CommandTimeout: 30}
	cli, err := etcdconn.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cli.MemberAdd(ctx, []string{m1.peer}); err != nil {
		t.Fatalf("member add with the issued client certificate: %v", err)
	}
	// etcd 3.6.16 takes about 6 s (measured) to start a member that joins.
	m1.start(t, m0.name+"="+m0.peer+","+m1.name+"="+m1.peer, "existing")

	// The new member serves clients with its own certificate and has the data.
	if _, err := cli.Put(ctx, "adopted", "yes"); err != nil {
		t.Fatal(err)
	}
	opts.Endpoints = []string{m1.client}
	cli1, err := etcdconn.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cli1.Close()
	got, err := cli1.Get(ctx, "adopted")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "yes" {
		t.Fatalf("read through the new member: %v %v", got, err)
	}
	list, err := cli1.MemberList(ctx)
	if err != nil || len(list.Members) != 2 {
		t.Fatalf("member list: %v %v", list, err)
	}
	for _, m := range list.Members {
		if m.Name == "" {
			t.Fatalf("member %x has not started: %v", m.ID, list.Members)
		}
	}
}

type member struct {
	name, client, peer, dir string
	tls                     transport.TLSInfo
}

func newMember(t *testing.T, root, name, cert, key, ca string) *member {
	return &member{name: name, dir: filepath.Join(root, name+".etcd"),
		client: "https://127.0.0.1:" + freeport.Get(t), peer: "https://127.0.0.1:" + freeport.Get(t),
		tls: transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca, ClientCertAuth: true}}
}

func (m *member) start(t *testing.T, initialCluster, state string) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.name, m.dir
	cu, _ := url.Parse(m.client)
	pu, _ := url.Parse(m.peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster, cfg.ClusterState, cfg.InitialClusterToken = initialCluster, state, "etcd-cluster-0"
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = m.tls, m.tls
	cfg.TickMs, cfg.ElectionMs = 50, 500
	cfg.Logger, cfg.ZapLoggerBuilder = "zap", embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", m.name, err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("%s failed: %v", m.name, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60s", m.name)
	}
}

// copyCfssl copies kubeasz's cfssl-made files from testdata/cfssl into dir
// (made 0700 if missing), each with mode.
func copyCfssl(t *testing.T, dir string, mode os.FileMode, files ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", "cfssl", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, mode); err != nil {
			t.Fatal(err)
		}
	}
}
