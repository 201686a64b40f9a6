package discover

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// kubeasz3Unit is a member's unit as kubeasz 3.7.0 writes it, for the
// members 192.168.1.1 and .2 (the file names 10.0.0.1 and 10.0.0.12).
var kubeasz3Unit = func() string {
	data, err := os.ReadFile("testdata/kubeasz-3.7.service")
	if err != nil {
		panic(err)
	}
	return strings.ReplaceAll(strings.ReplaceAll(string(data), "10.0.0.12", "192.168.1.2"), "10.0.0.1", "192.168.1.1")
}()

func TestParseUnitFileKubeasz3(t *testing.T) {
	u, err := ParseUnitFile([]byte(kubeasz3Unit))
	if err != nil {
		t.Fatal(err)
	}
	if u.ExecStart[0] != "/opt/kube/bin/etcd" || u.WorkingDirectory != "/var/lib/etcd" {
		t.Fatalf("unit: %+v", u)
	}
	s, err := Resolve(u.ExecStart[1:], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ConfigOf(s)
	want := Config{
		Name: "etcd-192.168.1.1", DataDir: "/var/lib/etcd",
		ListenClientURLs:         []string{"https://192.168.1.1:2379", "http://127.0.0.1:2379"},
		AdvertiseClientURLs:      []string{"https://192.168.1.1:2379"},
		ListenPeerURLs:           []string{"https://192.168.1.1:2380"},
		InitialAdvertisePeerURLs: []string{"https://192.168.1.1:2380"},
		PlainClientURLs:          []string{"http://127.0.0.1:2379"},
		ClientTLS:                TLS{CertFile: "/etc/kubernetes/ssl/etcd.pem", KeyFile: "/etc/kubernetes/ssl/etcd-key.pem", TrustedCAFile: "/etc/kubernetes/ssl/ca.pem"},
		PeerTLS:                  TLS{CertFile: "/etc/kubernetes/ssl/etcd.pem", KeyFile: "/etc/kubernetes/ssl/etcd-key.pem", TrustedCAFile: "/etc/kubernetes/ssl/ca.pem"},
		InitialCluster:           "etcd-192.168.1.1=https://192.168.1.1:2380,etcd-192.168.1.2=https://192.168.1.2:2380",
		ClusterToken:             "etcd-cluster-0",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("config:\n got %+v\nwant %+v", c, want)
	}
	if got := c.ClientEndpoints(); !reflect.DeepEqual(got, []string{"https://192.168.1.1:2379"}) {
		t.Fatalf("client endpoints %v", got)
	}
	if s["wal-dir"].Value != "" || s["wal-dir"].Source != "flag" {
		t.Fatalf("an empty --wal-dir= is an empty flag: %+v", s["wal-dir"])
	}
	if LayoutOf(u, Member{Binary: u.ExecStart[0], Settings: s, Config: c}) != "kubeasz-3" {
		t.Fatal("not recognised as kubeasz 3.x")
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		argv    []string
		want    map[string]string
		wantErr bool
	}{
		{"equals and space forms", []string{"--name=a", "-data-dir", "/d", "--wal-dir="},
			map[string]string{"name": "a", "data-dir": "/d", "wal-dir": ""}, false},
		{"a bool flag takes no separate value", []string{"--client-cert-auth", "--name", "x"},
			map[string]string{"client-cert-auth": "true", "name": "x"}, false},
		{"a bool flag with =false", []string{"--peer-client-cert-auth=false"},
			map[string]string{"peer-client-cert-auth": "false"}, false},
		{"an unknown flag last is a bool", []string{"--name=a", "--experimental-x"},
			map[string]string{"name": "a", "experimental-x": "true"}, false},
		{"-- ends the flags", []string{"--name=a", "--", "junk"}, map[string]string{"name": "a"}, false},
		{"the later of two wins", []string{"--name=a", "--name=b"}, map[string]string{"name": "b"}, false},
		{"a stray argument is refused", []string{"--name=a", "stray"}, nil, true},
		{"a lone dash is refused", []string{"-"}, nil, true},
		{"a flag without a name is refused", []string{"--=x"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseArgs(tc.argv)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etcd.yml")
	if err := os.WriteFile(cfg, []byte(`name: cfg-member
data-dir: /data/etcd
listen-client-urls: https://10.0.0.5:2379
client-transport-security:
  cert-file: /c/server.pem
  key-file: /c/server-key.pem
  trusted-ca-file: /c/ca.pem
  client-cert-auth: true
peer-transport-security:
  cert-file: /c/peer.pem
  client-cert-auth: true
quota-backend-bytes: 8589934592
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []EnvVar{
		{Name: "ETCD_NAME", Value: "from-env", From: "/etc/etcd.env"},
		{Name: "ETCD_DATA_DIR", Value: "/var/lib/etcd", From: "/etc/etcd.env"},
		{Name: "ETCDCTL_API", Value: "3", From: "/etc/etcd.env"},
		{Name: "ETCD_UNSUPPORTED_ARCH", Value: "arm64"},
		{Name: "ETCD_DATA_DIR", Value: "/srv/etcd", From: "/etc/etcd.env"}, // later wins
	}
	for _, tc := range []struct {
		name string
		argv []string
		env  []EnvVar
		want map[string]Setting
	}{
		{"env alone", nil, env, map[string]Setting{
			"name":     {Value: "from-env", Source: "env", From: "/etc/etcd.env"},
			"data-dir": {Value: "/srv/etcd", Source: "env", From: "/etc/etcd.env"},
		}},
		{"a flag shadows its variable", []string{"--name=from-flag"}, env, map[string]Setting{
			"name":     {Value: "from-flag", Source: "flag"},
			"data-dir": {Value: "/srv/etcd", Source: "env", From: "/etc/etcd.env"},
		}},
		{"a config file replaces flags and variables", []string{"--config-file", cfg, "--name=ignored"}, env, map[string]Setting{
			"config-file":           {Value: cfg, Source: "flag"},
			"name":                  {Value: "cfg-member", Source: "config-file", From: cfg},
			"data-dir":              {Value: "/data/etcd", Source: "config-file", From: cfg},
			"listen-client-urls":    {Value: "https://10.0.0.5:2379", Source: "config-file", From: cfg},
			"cert-file":             {Value: "/c/server.pem", Source: "config-file", From: cfg},
			"key-file":              {Value: "/c/server-key.pem", Source: "config-file", From: cfg},
			"trusted-ca-file":       {Value: "/c/ca.pem", Source: "config-file", From: cfg},
			"client-cert-auth":      {Value: "true", Source: "config-file", From: cfg},
			"peer-cert-file":        {Value: "/c/peer.pem", Source: "config-file", From: cfg},
			"peer-client-cert-auth": {Value: "true", Source: "config-file", From: cfg},
			"quota-backend-bytes":   {Value: "8589934592", Source: "config-file", From: cfg},
		}},
		{"ETCD_CONFIG_FILE counts too", nil, []EnvVar{{Name: "ETCD_CONFIG_FILE", Value: cfg}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.argv, tc.env, os.ReadFile)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil { // only check that the file was used
				if got.Get("name") != "cfg-member" {
					t.Fatalf("config file not read: %v", got)
				}
				return
			}
			if !reflect.DeepEqual(map[string]Setting(got), tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("name: [unclosed"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		is   error
	}{
		{"a missing config file", []string{"--config-file=" + filepath.Join(dir, "none.yml")}, os.ErrNotExist},
		{"a config file that is not YAML", []string{"--config-file=" + bad}, nil},
		{"a stray argument", []string{"stray"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(tc.argv, nil, os.ReadFile)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("%v is not %v", err, tc.is)
			}
		})
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etcd.env")
	// kubespray's /etc/etcd.env and a distribution's etcd.conf look like this.
	if err := os.WriteFile(p, []byte(`# Environment file for etcd
ETCD_DATA_DIR=/var/lib/etcd
ETCD_ADVERTISE_CLIENT_URLS=https://10.0.0.1:2379
ETCD_NAME="etcd1"
; another comment
ETCD_INITIAL_CLUSTER=etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380
ETCD_CLIENT_CERT_AUTH=true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, err := ReadEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{"ETCD_DATA_DIR", "/var/lib/etcd", p},
		{"ETCD_ADVERTISE_CLIENT_URLS", "https://10.0.0.1:2379", p},
		{"ETCD_NAME", "etcd1", p},
		{"ETCD_INITIAL_CLUSTER", "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380", p},
		{"ETCD_CLIENT_CERT_AUTH", "true", p},
	}
	if !reflect.DeepEqual(vars, want) {
		t.Fatalf("got  %v\nwant %v", vars, want)
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{`/bin/etcd --name=a  --x "b c"`, []string{"/bin/etcd", "--name=a", "--x", "b c"}, false},
		{`A=1 "B=two words" 'C=3'`, []string{"A=1", "B=two words", "C=3"}, false},
		{`--wal-dir= --y`, []string{"--wal-dir=", "--y"}, false},
		{`a\ b`, []string{"a b"}, false},
		{`"open`, nil, true},
	} {
		got, err := SplitCommand(tc.in)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("SplitCommand(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := ConfigOf(Settings{})
	if c.Name != "default" || c.DataDir != "default.etcd" || c.ClientEndpoints()[0] != "http://localhost:2379" {
		t.Fatalf("etcd's defaults: %+v", c)
	}
	c = ConfigOf(Settings{"listen-client-urls": {Value: "https://0.0.0.0:2379"}, "advertise-client-urls": {Value: "https://10.1.1.1:2379"}})
	if got := c.ClientEndpoints(); !reflect.DeepEqual(got, []string{"https://10.1.1.1:2379"}) {
		t.Fatalf("a wildcard listener is no endpoint: %v", got)
	}
}
