//go:build lab

// Package lab holds the end-to-end tests: the project's playbooks run with
// ansible-playbook against the lab's machines (systemd-nspawn containers
// reached over SSH), and the outcome is checked on the machines.
package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, two levels up from this package.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// labEnv is the lab these tests use, read from the variables lab/lab.sh
// reads, with the same defaults, so that two labs can run side by side.
type labEnv struct {
	State  string // LAB_STATE: machines, mounts, the SSH key
	Subnet string // LAB_SUBNET: the first three octets of the machines' IPs
	Bridge string // LAB_BRIDGE
	Prefix string // LAB_PREFIX: machines are PREFIX1..PREFIXN
}

func currentLab() labEnv {
	get := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	return labEnv{
		State:  get("LAB_STATE", "/var/lib/etcd-lab"),
		Subnet: get("LAB_SUBNET", "10.77.0"),
		Bridge: get("LAB_BRIDGE", "etcdlab0"),
		Prefix: get("LAB_PREFIX", "lab"),
	}
}

// IP is the address of machine PREFIXi, as lab.sh's machine_ip gives it.
func (e labEnv) IP(i int) string { return fmt.Sprintf("%s.%d", e.Subnet, 10+i) }

// Key is the SSH key that reaches the machines.
func (e labEnv) Key() string { return filepath.Join(e.State, "ssh", "id_ed25519") }

// Lab is one scenario's view of the lab: freshly booted machines, its own
// inventory file and certificate directory.
type Lab struct {
	t         *testing.T
	Inventory string
	PKIDir    string
	Hosts     []string // IPs of PREFIX1..PREFIXN
	key       string
}

// NewLab (re)creates n lab machines and writes a scenario inventory with
// the first etcd of them in [etcd].
func NewLab(t *testing.T, n, etcd int) *Lab {
	t.Helper()
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts")
	cmd := exec.Command("bash", filepath.Join(repoRoot, "lab", "lab.sh"), "up", fmt.Sprint(n))
	cmd.Env = append(os.Environ(), "LAB_INVENTORY="+inv, fmt.Sprintf("LAB_ETCD=%d", etcd))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	t.Logf("lab up %d machines: %s", n, time.Since(start).Round(time.Millisecond))
	env := currentLab()
	l := &Lab{t: t, Inventory: inv, PKIDir: filepath.Join(dir, "pki"), key: env.Key()}
	for i := 1; i <= n; i++ {
		l.Hosts = append(l.Hosts, env.IP(i))
	}
	return l
}

// Stats is ansible-playbook's recap for one host.
type Stats struct {
	OK, Changed, Failures, Unreachable, Skipped, Rescued, Ignored int
}

// Run is the outcome of one ansible-playbook run.
type Run struct {
	Stats    map[string]Stats
	Output   string
	Err      error
	Duration time.Duration
}

// Changed sums the changed tasks over all hosts.
func (r Run) Changed() int {
	n := 0
	for _, s := range r.Stats {
		n += s.Changed
	}
	return n
}

// Failed reports whether any host failed or was unreachable.
func (r Run) Failed() bool {
	if r.Err != nil {
		return true
	}
	for _, s := range r.Stats {
		if s.Failures > 0 || s.Unreachable > 0 {
			return true
		}
	}
	return false
}

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)`)

// ansiblePlaybook is the ansible-playbook to test with: $ANSIBLE_PLAYBOOK
// (make matrix points it at each ansible-core), else the one on PATH.
func ansiblePlaybook() string {
	if p := os.Getenv("ANSIBLE_PLAYBOOK"); p != "" {
		return p
	}
	return "ansible-playbook"
}

// Playbook runs ansible-playbook from the repository root on the scenario's
// inventory, with the scenario's certificate directory. Each extra is an
// extra variable (-e), or a flag when it starts with "--".
func (l *Lab) Playbook(playbook string, extra ...string) Run {
	l.t.Helper()
	args := []string{"-i", l.Inventory, playbook, "-e", "etcd_pki_dir=" + l.PKIDir}
	if src := os.Getenv("ETCD_BIN_SRC"); src != "" {
		// make matrix: the etcd version under test, from its cache directory.
		args = append(args, "-e", "etcd_bin_src="+src)
	}
	cmd := exec.Command(ansiblePlaybook(), append(args, extraArgs(extra)...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0")
	return l.runPlaybook(playbook, extra, cmd)
}

// extraArgs turns Playbook's extras into ansible-playbook arguments.
func extraArgs(extra []string) []string {
	var args []string
	for _, e := range extra {
		if strings.HasPrefix(e, "--") { // a flag such as --check
			args = append(args, e)
			continue
		}
		args = append(args, "-e", e)
	}
	return args
}

// runPlaybook runs cmd, an ansible-playbook (or what runs one), and reads
// the recap from its output.
func (l *Lab) runPlaybook(playbook string, extra []string, cmd *exec.Cmd) Run {
	l.t.Helper()
	cmd.Stdin = nil
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := Run{Stats: map[string]Stats{}, Output: string(out), Err: err, Duration: time.Since(start)}
	for _, m := range recapLine.FindAllStringSubmatch(r.Output, -1) {
		var s Stats
		fmt.Sscan(m[2], &s.OK)
		fmt.Sscan(m[3], &s.Changed)
		fmt.Sscan(m[4], &s.Unreachable)
		fmt.Sscan(m[5], &s.Failures)
		fmt.Sscan(m[6], &s.Skipped)
		fmt.Sscan(m[7], &s.Rescued)
		fmt.Sscan(m[8], &s.Ignored)
		r.Stats[m[1]] = s
	}
	l.t.Logf("%s %v: %s, changed=%d failed=%v", playbook, extra, r.Duration.Round(time.Millisecond), r.Changed(), r.Failed())
	return r
}

// MustPlaybook runs a playbook and fails the test if it fails.
func (l *Lab) MustPlaybook(playbook string, extra ...string) Run {
	l.t.Helper()
	r := l.Playbook(playbook, extra...)
	if r.Failed() || len(r.Stats) == 0 {
		l.t.Fatalf("%s failed: %v\n%s", playbook, r.Err, tail(r.Output, 80))
	}
	return r
}

// SSH runs a shell command on a lab machine as root, with the etcdctl
// environment the role installs, and returns its output.
func (l *Lab) SSH(host, command string) (string, error) {
	cmd := exec.Command("ssh", "-i", l.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "root@"+host,
		"set -a; . /etc/profile.d/etcdctl.sh 2>/dev/null; set +a; "+command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustSSH is SSH that fails the test on error.
func (l *Lab) MustSSH(host, command string) string {
	l.t.Helper()
	out, err := l.SSH(host, command)
	if err != nil {
		l.t.Fatalf("ssh %s %q: %v\n%s", host, command, err, out)
	}
	return out
}

// Member is one line of `etcdctl member list -w json`.
type Member struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// Members lists the cluster's members as seen from host.
func (l *Lab) Members(host string) []Member {
	l.t.Helper()
	out := l.MustSSH(host, "etcdctl member list -w json")
	var resp struct{ Members []Member }
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		l.t.Fatalf("member list from %s: %v\n%s", host, err, out)
	}
	return resp.Members
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
