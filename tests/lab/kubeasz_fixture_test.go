//go:build lab

package lab

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Kubeasz is an etcd cluster laid out as kubeasz deploys one, by the
// fixtures in tests/fixtures/kubeasz: the deploy node's files (in a test
// directory standing for /etc/kubeasz or /etc/ansible) and the members.
type Kubeasz struct {
	t       *testing.T
	l       *Lab
	args    []string // the fixture's extra variables
	Version string   // "3.7" or "2.2"
	// BaseDir is base_dir; ClusterDir is cluster_dir for 3.x, and
	// base_dir for 2.x, which has one cluster per deploy node.
	BaseDir, ClusterDir string
	Inventory           string // the hosts file: 3.x {{cluster_dir}}/hosts, 2.x {{base_dir}}/hosts
	Config              string // 3.x {{cluster_dir}}/config.yml; "" for 2.x
	SSLDir              string // 3.x {{cluster_dir}}/ssl, 2.x {{base_dir}}/.cluster/ssl
	CACert, CAKey       string
	// ClientCert and ClientKey are what kubeasz's own playbooks give
	// etcdctl on the deploy node: 3.x the shared etcd.pem, 2.x admin.pem.
	ClientCert, ClientKey string
	BackupDir             string // where kubeasz's backup writes and its restore reads
	Etcd                  []string
	Member                KubeaszMember
}

// KubeaszMember is where a kubeasz member keeps its files.
type KubeaszMember struct {
	Etcd, Etcdctl, CACert, Cert, Key, Unit, DataDir string
}

// DeployKubeasz lays out a cluster as kubeasz version ("3.7" or "2.2")
// does, with etcdHosts (lab IPs) in [etcd]. The other lab machines are left
// alone. Each extra is passed to the fixture playbook as -e, for example
// `{"kubeasz_new_etcd": ["10.77.0.14"]}` for 2.x's [new-etcd].
func DeployKubeasz(t *testing.T, l *Lab, version string, etcdHosts []string, extra ...string) *Kubeasz {
	t.Helper()
	base := filepath.Join(t.TempDir(), "kubeasz")
	k := &Kubeasz{t: t, l: l, Version: version, BaseDir: base, Etcd: slices.Clone(etcdHosts)}
	switch version {
	case "3.7":
		k.ClusterDir = filepath.Join(base, "clusters", "k8s-01")
		k.Inventory = filepath.Join(k.ClusterDir, "hosts")
		k.Config = filepath.Join(k.ClusterDir, "config.yml")
		k.SSLDir = filepath.Join(k.ClusterDir, "ssl")
		k.ClientCert, k.ClientKey = filepath.Join(k.SSLDir, "etcd.pem"), filepath.Join(k.SSLDir, "etcd-key.pem")
		k.BackupDir = filepath.Join(k.ClusterDir, "backup")
		k.Member = KubeaszMember{Etcd: "/opt/kube/bin/etcd", Etcdctl: "/opt/kube/bin/etcdctl",
			CACert: "/etc/kubernetes/ssl/ca.pem", Cert: "/etc/kubernetes/ssl/etcd.pem", Key: "/etc/kubernetes/ssl/etcd-key.pem",
			Unit: "/etc/systemd/system/etcd.service", DataDir: "/var/lib/etcd"}
	case "2.2":
		k.ClusterDir = base
		k.Inventory = filepath.Join(base, "hosts")
		k.SSLDir = filepath.Join(base, ".cluster", "ssl")
		k.ClientCert, k.ClientKey = filepath.Join(k.SSLDir, "admin.pem"), filepath.Join(k.SSLDir, "admin-key.pem")
		k.BackupDir = filepath.Join(base, ".cluster", "backup")
		k.Member = KubeaszMember{Etcd: "/opt/kube/bin/etcd", Etcdctl: "/opt/kube/bin/etcdctl",
			CACert: "/etc/kubernetes/ssl/ca.pem", Cert: "/etc/etcd/ssl/etcd.pem", Key: "/etc/etcd/ssl/etcd-key.pem",
			Unit: "/etc/systemd/system/etcd.service", DataDir: "/var/lib/etcd"}
	default:
		t.Fatalf("no kubeasz fixture for version %q (have 3.7, 2.2)", version)
	}
	k.CACert, k.CAKey = filepath.Join(k.SSLDir, "ca.pem"), filepath.Join(k.SSLDir, "ca-key.pem")

	hosts, err := json.Marshal(map[string][]string{"kubeasz_etcd": etcdHosts})
	if err != nil {
		t.Fatal(err)
	}
	k.args = append([]string{"base_dir=" + base, string(hosts),
		"etcd_bin_src=" + kubeaszEtcdBin(t), "cfssl_bin_src=" + kubeaszCfssl(t)}, extra...)
	k.Redeploy()
	return k
}

// Redeploy runs the fixture again with the same inputs.
func (k *Kubeasz) Redeploy() Run {
	k.t.Helper()
	return k.l.MustPlaybook(k.Playbook(), k.args...)
}

// Playbook is the fixture playbook of k's version, relative to the
// repository.
func (k *Kubeasz) Playbook() string {
	return filepath.Join("tests", "fixtures", "kubeasz", "deploy-"+k.Version+".yml")
}

// kubeaszEtcdBin is the etcd the fixtures install: $ETCD_BIN_SRC (make
// matrix), else what lab/etcdbin/build.sh builds (cached; make etcd-bin).
func kubeaszEtcdBin(t *testing.T) string {
	t.Helper()
	if src := os.Getenv("ETCD_BIN_SRC"); src != "" {
		return src
	}
	return buildScript(t, filepath.Join("lab", "etcdbin", "build.sh"))
}

// kubeaszCfssl is where lab/cfssl/build.sh builds (once, cached) cfssl
// and cfssljson.
func kubeaszCfssl(t *testing.T) string {
	t.Helper()
	return buildScript(t, filepath.Join("lab", "cfssl", "build.sh"))
}

// buildScript runs one of the lab's build scripts and returns the
// directory it prints last.
func buildScript(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot, script))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatalf("%s printed no directory\n%s", script, stderr.String())
	}
	t.Logf("%s: %s", script, time.Since(start).Round(time.Millisecond))
	return lines[len(lines)-1]
}

// Env is the environment in which ansible reaches the lab's machines with
// k.Inventory as it is: the lab's SSH key and user stand for the
// operator's own SSH setup, which kubeasz's hosts files do not name.
func (k *Kubeasz) Env() []string {
	return append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_REMOTE_USER=root", "ANSIBLE_PRIVATE_KEY_FILE="+k.l.key,
		"ANSIBLE_SSH_COMMON_ARGS=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
}

// RunPlaybook runs ansible-playbook from the repository root with
// k.Inventory and nothing else: no extra variables but those given (each
// as -e, or a flag when it starts with "--").
func (k *Kubeasz) RunPlaybook(playbook string, extra ...string) Run {
	k.t.Helper()
	args := []string{"-i", k.Inventory, playbook}
	for _, e := range extra {
		if strings.HasPrefix(e, "--") {
			args = append(args, e)
		} else {
			args = append(args, "-e", e)
		}
	}
	cmd := exec.Command(ansiblePlaybook(), args...)
	cmd.Dir = repoRoot
	cmd.Env = k.Env()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := Run{Stats: map[string]Stats{}, Output: string(out), Err: err, Duration: time.Since(start)}
	for _, m := range recapLine.FindAllStringSubmatch(r.Output, -1) {
		var s Stats
		for i, p := range []*int{&s.OK, &s.Changed, &s.Unreachable, &s.Failures, &s.Skipped, &s.Rescued, &s.Ignored} {
			*p, _ = strconv.Atoi(m[i+2])
		}
		r.Stats[m[1]] = s
	}
	k.t.Logf("%s (kubeasz %s inventory) %v: %s, changed=%d failed=%v", playbook, k.Version, extra,
		r.Duration.Round(time.Millisecond), r.Changed(), r.Failed())
	return r
}

// InsertEtcd puts an [etcd] line (an IP, or for 2.x "<ip> NODE_NAME=<n>")
// at the top of [etcd], where kubeasz's `ezctl add-etcd` (3.x) and
// `easzctl add-etcd` (2.x) put the new member before they run their add.
func (k *Kubeasz) InsertEtcd(line string) {
	k.t.Helper()
	data, err := os.ReadFile(k.Inventory)
	if err != nil {
		k.t.Fatal(err)
	}
	text := string(data)
	at := strings.Index(text, "\n[etcd]\n")
	if at < 0 {
		k.t.Fatalf("no [etcd] in %s", k.Inventory)
	}
	at += len("\n[etcd]\n")
	if err := os.WriteFile(k.Inventory, []byte(text[:at]+line+"\n"+text[at:]), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

// machine is the lab machine name of a lab IP: LAB_PREFIX (default lab)
// and its position.
func (k *Kubeasz) machine(host string) string {
	i := slices.Index(k.l.Hosts, host)
	if i < 0 {
		k.t.Fatalf("%s is not a lab machine (%v)", host, k.l.Hosts)
	}
	prefix := os.Getenv("LAB_PREFIX")
	if prefix == "" {
		prefix = "lab"
	}
	return fmt.Sprintf("%s%d", prefix, i+1)
}

// Exec runs a command on a lab machine through `lab.sh exec` (no SSH, no
// login environment), with stdin, and returns its standard output.
func (k *Kubeasz) Exec(host string, stdin string, argv ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot, "lab", "lab.sh"), "exec", k.machine(host)}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), host, err, stderr.String())
	}
	return stdout.String(), nil
}

// MustExec is Exec that fails the test on error.
func (k *Kubeasz) MustExec(host string, argv ...string) string {
	k.t.Helper()
	out, err := k.Exec(host, "", argv...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// Etcdctl runs the member's own etcdctl on host against its own TLS
// endpoint, with the member's own CA, certificate and key.
func (k *Kubeasz) Etcdctl(host, stdin string, args ...string) (string, error) {
	m := k.Member
	argv := append([]string{m.Etcdctl, "--endpoints=https://" + net.JoinHostPort(host, "2379"),
		"--cacert=" + m.CACert, "--cert=" + m.Cert, "--key=" + m.Key}, args...)
	return k.Exec(host, stdin, argv...)
}

// MainPID is the etcd unit's main process on host (0 when it is not running).
func (k *Kubeasz) MainPID(host string) int {
	k.t.Helper()
	out := k.MustExec(host, "systemctl", "show", "--property=MainPID", "--value", "etcd.service")
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		k.t.Fatalf("MainPID of etcd on %s: %q", host, out)
	}
	return pid
}

// PutKeys writes n keys prefix<from>..prefix<from+n-1> through host's
// member, 100 to a transaction.
func (k *Kubeasz) PutKeys(host, prefix string, from, n int) {
	k.t.Helper()
	for _, txn := range putTxns(prefix, from, n) {
		if out, err := k.Etcdctl(host, txn, "txn"); err != nil || !strings.HasPrefix(out, "SUCCESS") {
			k.t.Fatalf("put keys through %s: %v\n%s", host, err, out)
		}
	}
}

// Count is the number of keys under prefix in host's own copy of the data
// (a serializable read).
func (k *Kubeasz) Count(host, prefix string) int {
	k.t.Helper()
	out, err := k.Etcdctl(host, "", "get", "--consistency=s", "--prefix", prefix, "--keys-only", "-w", "json")
	if err != nil {
		k.t.Fatal(err)
	}
	var resp struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		k.t.Fatalf("count on %s: %v\n%s", host, err, out)
	}
	return resp.Count
}

// Members lists the cluster's members as host's member sees them.
func (k *Kubeasz) Members(host string) []Member {
	k.t.Helper()
	out, err := k.Etcdctl(host, "", "member", "list", "-w", "json")
	if err != nil {
		k.t.Fatal(err)
	}
	var resp struct{ Members []Member }
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		k.t.Fatalf("member list from %s: %v\n%s", host, err, out)
	}
	return resp.Members
}

// NodeName is the member name kubeasz gives host: etcd-<ip> in 3.x, the
// NODE_NAME of its [etcd] line (etcd1, etcd2, ... in the fixture) in 2.x.
func (k *Kubeasz) NodeName(host string) string {
	if k.Version == "2.2" {
		return fmt.Sprintf("etcd%d", slices.Index(k.Etcd, host)+1)
	}
	return "etcd-" + host
}

// TestKubeaszFixtures deploys kubeasz 3.7's and 2.2's layouts, each on 3
// machines of one lab, and checks them against what kubeasz's own roles
// produce: the deploy node's files, the units' flags, the certificates,
// where the CA key is, and a healthy cluster that holds written keys.
func TestKubeaszFixtures(t *testing.T) {
	l := NewLab(t, 6, 0)
	for i, version := range []string{"3.7", "2.2"} {
		hosts := l.Hosts[3*i : 3*i+3]
		start := time.Now()
		k := DeployKubeasz(t, l, version, hosts)
		t.Logf("kubeasz %s fixture on %d members: %s", version, len(hosts), time.Since(start).Round(time.Millisecond))
		if version == "3.7" {
			// Machines outside [etcd] are left alone.
			if _, err := k.Exec(l.Hosts[3], "", "test", "-e", k.Member.Unit); err == nil {
				t.Fatalf("%s, not in [etcd], has %s", l.Hosts[3], k.Member.Unit)
			}
		}
		checkKubeaszDeployNode(t, k)
		pids := map[string]int{}
		for _, h := range hosts {
			checkKubeaszMember(t, k, h)
			pids[h] = k.MainPID(h)
		}
		checkKubeaszCluster(t, k)

		// A second run changes nothing and restarts no member.
		if r := k.Redeploy(); r.Changed() != 0 {
			t.Fatalf("kubeasz %s: second run of the fixture changed %d tasks\n%s", version, r.Changed(), changedTasks(r.Output))
		}
		for _, h := range hosts {
			if pid := k.MainPID(h); pid != pids[h] || pid == 0 {
				t.Fatalf("%s: etcd's MainPID went from %d to %d on a second run", h, pids[h], pid)
			}
		}
	}
}

// checkKubeaszDeployNode checks the deploy node's inventory, bin/ and CA.
func checkKubeaszDeployNode(t *testing.T, k *Kubeasz) {
	t.Helper()
	inv := ansibleInventory(t, k)
	if got := inv.group("etcd"); !slices.Equal(got, k.Etcd) {
		t.Fatalf("[etcd] is %v, want %v", got, k.Etcd)
	}
	wantVars := map[string]string{"bin_dir": "/opt/kube/bin", "ca_dir": "/etc/kubernetes/ssl", "base_dir": k.BaseDir}
	groups := []string{"kube-master", "kube-node"}
	bins := []string{"etcd", "etcdctl", "cfssl", "cfssljson"}
	caCN := "kubernetes"
	text := readFile(t, k.Inventory)
	if k.Version == "3.7" {
		wantVars["cluster_dir"] = "{{ base_dir }}/clusters/k8s-01"
		wantVars["ansible_python_interpreter"] = "/usr/bin/python3"
		groups = []string{"kube_master", "kube_node"}
		bins = append(bins, "etcdutl")
		caCN = "kubernetes-ca"
		if strings.Contains(text, "new-etcd") || strings.Contains(text, "NODE_NAME") {
			t.Fatalf("a 3.x hosts file has neither [new-etcd] nor NODE_NAME:\n%s", text)
		}
		for _, g := range []string{"harbor", "ex_lb", "chrony"} {
			if !strings.Contains(text, "\n["+g+"]\n") {
				t.Fatalf("no [%s] in %s", g, k.Inventory)
			}
		}
		config := readFile(t, k.Config)
		for _, line := range []string{`ETCD_DATA_DIR: "/var/lib/etcd"`, `ETCD_WAL_DIR: ""`} {
			if !strings.Contains(config, "\n"+line+"\n") {
				t.Fatalf("config.yml has no %s:\n%s", line, config)
			}
		}
		// Inventory variables resolve as kubeasz's playbooks see them.
		out, err := kubeaszAnsible(k, k.Etcd[0], "-m", "ansible.builtin.debug", "-a", "var=cluster_dir")
		if err != nil || !strings.Contains(out, `"cluster_dir": "`+k.ClusterDir+`"`) {
			t.Fatalf("cluster_dir does not resolve to %s: %v\n%s", k.ClusterDir, err, out)
		}
	} else {
		if !strings.Contains(text, "\n[new-etcd]\n") {
			t.Fatalf("no [new-etcd] reserve group in %s", k.Inventory)
		}
		for i, h := range k.Etcd {
			if got := inv.Meta.HostVars[h]["NODE_NAME"]; got != fmt.Sprintf("etcd%d", i+1) {
				t.Fatalf("%s has NODE_NAME %v, want etcd%d", h, got, i+1)
			}
		}
	}
	for _, g := range groups {
		if got := inv.group(g); !slices.Equal(got, k.Etcd) {
			t.Fatalf("[%s] is %v, want %v", g, got, k.Etcd)
		}
	}
	for name, want := range wantVars {
		if got := inv.Meta.HostVars[k.Etcd[0]][name]; got != want {
			t.Fatalf("inventory variable %s is %v, want %q", name, got, want)
		}
	}
	for _, b := range bins {
		if st, err := os.Stat(filepath.Join(k.BaseDir, "bin", b)); err != nil || st.Mode()&0o111 == 0 {
			t.Fatalf("%s/bin/%s is not an executable: %v", k.BaseDir, b, err)
		}
	}
	// The deploy node's etcdctl reaches every member with kubeasz's client files.
	out, err := kubeaszAnsible(k, k.Etcd[0], "-m", "ansible.builtin.command", "-a", "{{ bin_dir }}/etcdctl version")
	if err != nil || !strings.Contains(out, "etcdctl version") {
		t.Fatalf("ansible with the kubeasz inventory cannot run {{ bin_dir }}/etcdctl: %v\n%s", err, out)
	}

	ca := parseCert(t, []byte(readFile(t, k.CACert)))
	if !ca.IsCA || ca.Subject.CommonName != caCN || rsaBits(ca) != 2048 {
		t.Fatalf("CA: CA=%v CN=%q RSA bits %d, want a CA, CN %q, RSA 2048", ca.IsCA, ca.Subject.CommonName, rsaBits(ca), caCN)
	}
	if key := readFile(t, k.CAKey); !strings.Contains(key, "RSA PRIVATE KEY") {
		t.Fatalf("%s holds no RSA key", k.CAKey)
	}
	var caConfig struct {
		Signing struct {
			Profiles map[string]struct{ Usages []string }
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(k.SSLDir, "ca-config.json"))), &caConfig); err != nil {
		t.Fatal(err)
	}
	if got := caConfig.Signing.Profiles["kubernetes"].Usages; !slices.Equal(got, []string{"signing", "key encipherment", "server auth", "client auth"}) {
		t.Fatalf("ca-config.json's kubernetes profile has usages %v", got)
	}
	client := parseCert(t, []byte(readFile(t, k.ClientCert)))
	if err := client.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("%s is not signed by the CA: %v", k.ClientCert, err)
	}
	if k.Version == "3.7" {
		checkEtcdCert(t, k, "deploy node", client)
	}
	if _, err := os.Stat(k.BackupDir); err != nil {
		t.Fatalf("no backup directory: %v", err)
	}
}

// checkKubeaszMember checks one member's binary, files, certificate and unit.
func checkKubeaszMember(t *testing.T, k *Kubeasz, host string) {
	t.Helper()
	m := k.Member
	k.MustExec(host, "test", "-x", m.Etcd)
	k.MustExec(host, "test", "-x", m.Etcdctl)
	if got := k.MustExec(host, "cat", m.CACert); got != readFile(t, k.CACert) {
		t.Fatalf("%s: %s is not the deploy node's CA", host, m.CACert)
	}
	cert := k.MustExec(host, "cat", m.Cert)
	checkEtcdCert(t, k, host, parseCert(t, []byte(cert)))
	_, keyErr := k.Exec(host, "", "test", "-f", "/etc/kubernetes/ssl/ca-key.pem")
	if k.Version == "3.7" {
		if cert != readFile(t, k.ClientCert) {
			t.Fatalf("%s: %s is not the shared certificate the deploy node holds", host, m.Cert)
		}
		if keyErr == nil {
			t.Fatalf("%s: a 3.x member holds the CA key", host)
		}
	} else {
		// 2.x: the member made its own certificate, with the CA key it holds.
		if keyErr != nil {
			t.Fatalf("%s: a 2.x member holds no CA key: %v", host, keyErr)
		}
		k.MustExec(host, "test", "-x", "/opt/kube/bin/cfssl")
		for _, other := range k.Etcd {
			if other != host && k.MustExec(other, "cat", m.Cert) == cert {
				t.Fatalf("%s and %s share a certificate; 2.x members make their own", host, other)
			}
		}
	}

	unit := k.MustExec(host, "cat", m.Unit)
	dirs, flags := parseUnit(unit)
	workDir := "/var/lib/etcd"
	if k.Version == "2.2" {
		workDir += "/"
	}
	for key, want := range map[string]string{"Type": "notify", "WorkingDirectory": workDir, "Restart": "always",
		"RestartSec": "15", "LimitNOFILE": "65536", "OOMScoreAdjust": "-999", "WantedBy": "multi-user.target"} {
		if got := dirs[key]; !slices.Equal(got, []string{want}) {
			t.Fatalf("%s: unit has %s=%v, want %s", host, key, got, want)
		}
	}
	if _, ok := dirs["EnvironmentFile"]; ok {
		t.Fatalf("%s: kubeasz's unit has no EnvironmentFile", host)
	}
	var cluster []string
	for _, h := range k.Etcd {
		cluster = append(cluster, k.NodeName(h)+"=https://"+h+":2380")
	}
	want := map[string]string{
		"name":                        k.NodeName(host),
		"cert-file":                   m.Cert,
		"key-file":                    m.Key,
		"peer-cert-file":              m.Cert,
		"peer-key-file":               m.Key,
		"trusted-ca-file":             m.CACert,
		"peer-trusted-ca-file":        m.CACert,
		"initial-advertise-peer-urls": "https://" + host + ":2380",
		"listen-peer-urls":            "https://" + host + ":2380",
		"listen-client-urls":          "https://" + host + ":2379,http://127.0.0.1:2379",
		"advertise-client-urls":       "https://" + host + ":2379",
		"initial-cluster-token":       "etcd-cluster-0",
		"initial-cluster":             strings.Join(cluster, ","),
		"initial-cluster-state":       "new",
		"data-dir":                    "/var/lib/etcd",
		"snapshot-count":              "50000",
		"auto-compaction-retention":   "1",
		"auto-compaction-mode":        "periodic",
		"max-request-bytes":           "10485760",
		"quota-backend-bytes":         "8589934592",
	}
	if k.Version == "3.7" {
		want["wal-dir"] = ""
	}
	if !maps.Equal(flags, want) {
		t.Fatalf("%s: ExecStart's flags are\n%v\nwant\n%v", host, flags, want)
	}
	if got := dirs["ExecStart"]; len(got) != 1 || !strings.HasPrefix(got[0], m.Etcd+" ") {
		t.Fatalf("%s: ExecStart %v does not run %s", host, got, m.Etcd)
	}
	if st := strings.TrimSpace(k.MustExec(host, "systemctl", "is-active", "etcd")); st != "active" {
		t.Fatalf("%s: etcd is %s", host, st)
	}
}

// checkKubeaszCluster checks membership, keys on every member, and the
// listeners kubeasz's flags open: plain http on 127.0.0.1 that asks for
// nothing, and TLS that asks for a client certificate.
func checkKubeaszCluster(t *testing.T, k *Kubeasz) {
	t.Helper()
	var names []string
	for _, m := range k.Members(k.Etcd[0]) {
		if m.IsLearner {
			t.Fatalf("member %s is a learner", m.Name)
		}
		names = append(names, m.Name)
	}
	var want []string
	for _, h := range k.Etcd {
		want = append(want, k.NodeName(h))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("members %v, want %v", names, want)
	}
	k.PutKeys(k.Etcd[0], "kz/", 0, 250)
	for _, h := range k.Etcd {
		deadline := time.Now().Add(10 * time.Second)
		for k.Count(h, "kz/") != 250 {
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %d of 250 keys", h, k.Count(h, "kz/"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		out, err := k.Exec(h, "", k.Member.Etcdctl, "--endpoints=http://127.0.0.1:2379", "get", "--prefix", "kz/", "--keys-only", "-w", "json")
		if err != nil || !strings.Contains(out, `"count":250`) {
			t.Fatalf("%s: the plain http listener on 127.0.0.1:2379 does not answer: %v\n%s", h, err, out)
		}
		// kubeasz sets no --client-cert-auth, but etcd requires a client
		// certificate on its TLS listener all the same, because
		// --trusted-ca-file is set.
		out, err = k.Exec(h, "", k.Member.Etcdctl, "--endpoints=https://"+h+":2379", "--cacert="+k.Member.CACert,
			"--dial-timeout=2s", "--command-timeout=3s", "endpoint", "health")
		if err == nil {
			t.Fatalf("%s: the TLS listener answers a client without a certificate\n%s", h, out)
		}
	}
}

// checkEtcdCert checks an etcd certificate as kubeasz makes it: RSA 2048,
// CN etcd, server and client auth, SANs = the [etcd] IPs and 127.0.0.1.
func checkEtcdCert(t *testing.T, k *Kubeasz, where string, c *x509.Certificate) {
	t.Helper()
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	want := append(slices.Clone(k.Etcd), "127.0.0.1")
	slices.Sort(ips)
	slices.Sort(want)
	if c.Subject.CommonName != "etcd" || rsaBits(c) != 2048 || !slices.Equal(ips, want) ||
		!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatalf("%s: etcd certificate CN=%q RSA bits %d IP SANs %v usages %v; want CN etcd, RSA 2048, IPs %v, server and client auth",
			where, c.Subject.CommonName, rsaBits(c), ips, c.ExtKeyUsage, want)
	}
	ca := parseCert(t, []byte(readFile(t, k.CACert)))
	if err := c.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("%s: etcd certificate not signed by the CA: %v", where, err)
	}
}

// parseUnit returns a unit file's directives (all sections) and the
// --flag=value arguments of its ExecStart.
func parseUnit(unit string) (map[string][]string, map[string]string) {
	dirs := map[string][]string{}
	joined := strings.ReplaceAll(unit, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		dirs[key] = append(dirs[key], strings.Join(strings.Fields(value), " "))
	}
	flags := map[string]string{}
	if start := dirs["ExecStart"]; len(start) == 1 {
		for _, f := range strings.Fields(start[0])[1:] {
			name, value, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			flags[name] = value
		}
	}
	return dirs, flags
}

// kubeaszInventory is `ansible-inventory --list` of a kubeasz hosts file.
type kubeaszInventory struct {
	Meta struct {
		HostVars map[string]map[string]any `json:"hostvars"`
	} `json:"_meta"`
	groups map[string]struct {
		Hosts []string `json:"hosts"`
	}
}

func (inv kubeaszInventory) group(name string) []string { return inv.groups[name].Hosts }

// ansibleInventory parses k's hosts file as ansible does.
func ansibleInventory(t *testing.T, k *Kubeasz) kubeaszInventory {
	t.Helper()
	cmd := exec.Command("ansible-inventory", "-i", k.Inventory, "--list")
	cmd.Dir = repoRoot
	cmd.Env = k.Env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory on %s: %v", k.Inventory, err)
	}
	var inv kubeaszInventory
	if err := json.Unmarshal(out, &inv); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &inv.groups); err != nil {
		t.Fatal(err)
	}
	return inv
}

// kubeaszAnsible runs an ad-hoc ansible command with k's inventory.
func kubeaszAnsible(k *Kubeasz, pattern string, args ...string) (string, error) {
	cmd := exec.Command("ansible", append([]string{"-i", k.Inventory, pattern}, args...)...)
	cmd.Dir = repoRoot
	cmd.Env = k.Env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rsaBits is the size of an RSA public key, 0 for any other key type.
func rsaBits(c *x509.Certificate) int {
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok {
		return k.N.BitLen()
	}
	return 0
}
