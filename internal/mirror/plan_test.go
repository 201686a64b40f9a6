package mirror

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/etcdops/etcdops/internal/discover"
)

// kubeasz3Unit is a member's unit as kubeasz 3.7.0 writes it.
var kubeasz3Unit = func() string {
	data, err := os.ReadFile("../discover/testdata/kubeasz-3.7.service")
	if err != nil {
		panic(err)
	}
	return string(data)
}()

func member(t *testing.T, text string, files map[string]string) discover.Member {
	t.Helper()
	u, err := discover.ParseUnitFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, f := range u.EnvironmentFiles {
		p := filepath.Join(dir, filepath.Base(f.Path))
		if err := os.WriteFile(p, []byte(files[f.Path]), 0o600); err != nil {
			t.Fatal(err)
		}
		u.EnvironmentFiles[i].Path = p
	}
	u.Name, u.FragmentPath, u.Text = "etcd.service", "/etc/systemd/system/etcd.service", text
	m, err := discover.FromUnit(u)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// planned reads a plan back the way etcd_facts reads a member.
func planned(t *testing.T, p Plan) discover.Member {
	t.Helper()
	dir := t.TempDir()
	var unitText string
	paths := map[string]string{}
	for _, f := range p.Files {
		if strings.HasSuffix(f.Path, ".service") {
			unitText = f.Content
			continue
		}
		local := filepath.Join(dir, filepath.Base(f.Path))
		paths[filepath.Base(f.Path)] = local
		if err := os.WriteFile(local, []byte(f.Content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u, err := discover.ParseUnitFile([]byte(unitText))
	if err != nil {
		t.Fatalf("the planned unit does not parse: %v\n%s", err, unitText)
	}
	for i, f := range u.EnvironmentFiles {
		if l, ok := paths[filepath.Base(f.Path)]; ok {
			u.EnvironmentFiles[i].Path = l
		}
	}
	u.Name, u.Text, u.FragmentPath = "etcd.service", unitText, p.Files[0].Path
	m, err := discover.FromUnit(u)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var newMember = Request{Name: "etcd-10.0.0.2", Address: "10.0.0.2", InitialCluster: "etcd-10.0.0.1=https://10.0.0.1:2380,etcd-10.0.0.2=https://10.0.0.2:2380"}

func TestMakeLikeKubeasz3(t *testing.T) {
	donor := member(t, kubeasz3Unit, nil)
	p, err := Make(donor, newMember)
	if err != nil {
		t.Fatal(err)
	}
	got := planned(t, p)
	want := donor.Config
	want.Name = "etcd-10.0.0.2"
	want.ListenClientURLs = []string{"https://10.0.0.2:2379", "http://127.0.0.1:2379"}
	want.AdvertiseClientURLs = []string{"https://10.0.0.2:2379"}
	want.ListenPeerURLs = []string{"https://10.0.0.2:2380"}
	want.InitialAdvertisePeerURLs = []string{"https://10.0.0.2:2380"}
	want.InitialCluster = newMember.InitialCluster
	if !reflect.DeepEqual(got.Config, want) {
		t.Fatalf("new member:\n got %+v\nwant %+v", got.Config, want)
	}
	if got.Settings.Get("initial-cluster-state") != "existing" || got.Settings.Get("quota-backend-bytes") != "8589934592" ||
		got.Settings["wal-dir"].Source != "flag" {
		t.Fatalf("settings: %v", got.Settings)
	}
	if got.Binary != "/opt/kube/bin/etcd" || got.Unit.WorkingDirectory != "/var/lib/etcd" || got.Layout != "kubeasz-3" {
		t.Fatalf("unit: %+v", got.Unit)
	}
	for _, line := range []string{"Type=notify", "Restart=always", "RestartSec=15", "LimitNOFILE=65536", "WantedBy=multi-user.target"} {
		if !strings.Contains(p.Files[0].Content, line+"\n") {
			t.Errorf("the unit lost %q:\n%s", line, p.Files[0].Content)
		}
	}
	if d := Disagreements([]discover.Member{donor, got}); d != nil {
		t.Fatalf("the new member differs from the one it was made like: %v", d)
	}
	if p.TLS.CertFile != "/etc/kubernetes/ssl/etcd.pem" || p.TLS.PeerTrustedCAFile != "/etc/kubernetes/ssl/ca.pem" {
		t.Fatalf("TLS paths: %+v", p.TLS)
	}
	if !reflect.DeepEqual(p.Dirs, []Dir{{Path: "/var/lib/etcd"}}) {
		t.Fatalf("dirs: %+v", p.Dirs)
	}
}

func TestMakeLikeEnvFile(t *testing.T) {
	unitText := `[Service]
Type=notify
User=etcd
EnvironmentFile=/etc/etcd.env
Environment=ETCD_LISTEN_METRICS_URLS=http://10.0.0.1:2381 GOMAXPROCS=2
ExecStart=/usr/local/bin/etcd --heartbeat-interval=250
`
	donor := member(t, unitText, map[string]string{"/etc/etcd.env": `ETCD_NAME=etcd1
ETCD_DATA_DIR=/var/lib/etcd
ETCD_WAL_DIR=/var/lib/etcd-wal
ETCD_ADVERTISE_CLIENT_URLS=https://10.0.0.1:2379
ETCD_LISTEN_CLIENT_URLS=https://10.0.0.1:2379,https://127.0.0.1:2379
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://10.0.0.1:2380
ETCD_LISTEN_PEER_URLS=https://10.0.0.1:2380
ETCD_CERT_FILE=/etc/ssl/etcd/ssl/member-10.0.0.1.pem
ETCD_CLIENT_CERT_AUTH=true
`})
	if donor.Layout != "env-file" {
		t.Fatalf("layout %s", donor.Layout)
	}
	req := newMember
	req.Name = "etcd2"
	p, err := Make(donor, req)
	if err != nil {
		t.Fatal(err)
	}
	got := planned(t, p)
	if got.Name != "etcd2" || got.ClientTLS.CertFile != "/etc/ssl/etcd/ssl/member-10.0.0.2.pem" || !got.ClientTLS.ClientCertAuth ||
		got.Settings.Get("listen-metrics-urls") != "http://10.0.0.2:2381" || got.Settings.Get("heartbeat-interval") != "250" ||
		got.Settings.Get("initial-cluster") != req.InitialCluster || got.Settings["initial-cluster"].Source != "env" ||
		got.WALDir != "/var/lib/etcd-wal" {
		t.Fatalf("new member: %+v\n%v", got.Config, got.Settings)
	}
	if !reflect.DeepEqual(p.Dirs, []Dir{{Path: "/var/lib/etcd", Owner: "etcd"}, {Path: "/var/lib/etcd-wal", Owner: "etcd"}}) {
		t.Fatalf("dirs: %+v", p.Dirs)
	}
}

func TestMakeRefuses(t *testing.T) {
	donor := member(t, kubeasz3Unit, nil)
	cfg := donor
	cfg.Layout = "config-file"
	noURL := donor
	noURL.InitialAdvertisePeerURLs = nil
	for name, tc := range map[string]struct {
		donor discover.Member
		req   Request
		want  string
	}{
		"no name":         {donor, Request{Address: "10.0.0.2", InitialCluster: "x"}, "needs a name"},
		"a config file":   {cfg, newMember, "not supported"},
		"no peer URL":     {noURL, newMember, "advertises no peer URL"},
		"no initial list": {donor, Request{Name: "a", Address: "10.0.0.2"}, "initial cluster"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Make(tc.donor, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDisagreements(t *testing.T) {
	a := member(t, kubeasz3Unit, nil)
	b := member(t, strings.NewReplacer("10.0.0.1", "10.0.0.12").Replace(kubeasz3Unit), nil)
	if d := Disagreements([]discover.Member{a, b}); d != nil {
		t.Fatalf("two members of one layout disagree: %v", d)
	}
	c := member(t, strings.NewReplacer("10.0.0.1", "10.0.0.13", "/etc/kubernetes/ssl/etcd.pem", "/etc/etcd/ssl/etcd.pem",
		" \\\n  --quota-backend-bytes 8589934592", "").Replace(kubeasz3Unit), nil)
	d := Disagreements([]discover.Member{a, b, c})
	want := []string{
		"client certificate: etcd-10.0.0.1 has /etc/kubernetes/ssl/etcd.pem, etcd-10.0.0.13 has /etc/etcd/ssl/etcd.pem",
		"layout: etcd-10.0.0.1 has kubeasz-3, etcd-10.0.0.13 has kubeasz-2",
		"peer certificate: etcd-10.0.0.1 has /etc/kubernetes/ssl/etcd.pem, etcd-10.0.0.13 has /etc/etcd/ssl/etcd.pem",
		"setting cert-file: etcd-10.0.0.1 has /etc/kubernetes/ssl/etcd.pem (flag), etcd-10.0.0.13 has /etc/etcd/ssl/etcd.pem (flag)",
		"setting peer-cert-file: etcd-10.0.0.1 has /etc/kubernetes/ssl/etcd.pem (flag), etcd-10.0.0.13 has /etc/etcd/ssl/etcd.pem (flag)",
		"setting quota-backend-bytes: etcd-10.0.0.1 has 8589934592 (flag), etcd-10.0.0.13 has none",
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}
}

func TestReplaceAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
		{"https://10.0.0.1:2379,http://127.0.0.1:2379", "https://10.0.0.2:2379,http://127.0.0.1:2379"},
		{"https://10.0.0.12:2379", "https://10.0.0.12:2379"},
		{"https://110.0.0.1:2379", "https://110.0.0.1:2379"},
		{"10.0.0.1.5", "10.0.0.1.5"},
		{"/ssl/member-10.0.0.1.pem", "/ssl/member-10.0.0.2.pem"},
		{"a=https://10.0.0.1:2380,b=https://10.0.0.1:2380", "a=https://10.0.0.2:2380,b=https://10.0.0.2:2380"},
		{"", ""},
	} {
		if got := ReplaceAddress(tc.in, "10.0.0.1", "10.0.0.2"); got != tc.want {
			t.Errorf("ReplaceAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
