//go:build lab

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// collectionRun runs the collection's playbooks as an operator who
// installed it would: from a directory outside the checkout, with no
// ansible.cfg and nothing of this repository on the search paths but the
// installed collection.
type collectionRun struct {
	t          *testing.T
	l          *Lab
	workDir    string
	installDir string
	env        []string
}

// newCollectionRun installs the tarball make collection built into a fresh
// directory, with Debian's ansible-galaxy (ansible-core 2.14), the oldest
// one supported; l may be nil for what needs no lab machines.
func newCollectionRun(t *testing.T, l *Lab) *collectionRun {
	t.Helper()
	version, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(repoRoot, "build", fmt.Sprintf("etcdops-etcd-%s.tar.gz", strings.TrimSpace(string(version))))
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("no collection tarball (make collection builds it): %v", err)
	}
	c := &collectionRun{t: t, l: l, workDir: t.TempDir(), installDir: t.TempDir()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ANSIBLE_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "ANSIBLE_COLLECTIONS_PATH="+c.installDir, "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0")
	install := exec.Command(oldAnsible("ansible-galaxy"), "collection", "install", "-p", c.installDir, tarball)
	install.Dir, install.Env = c.workDir, c.env
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("ansible-galaxy collection install: %v\n%s", err, out)
	}
	return c
}

// oldAnsible is a command of ansible-core 2.14: $ANSIBLE_214_BIN/<name>,
// else Debian bookworm's /usr/bin/<name>.
func oldAnsible(name string) string {
	dir := os.Getenv("ANSIBLE_214_BIN")
	if dir == "" {
		dir = "/usr/bin"
	}
	return filepath.Join(dir, name)
}

// newestBin is the directory of the newest ansible-core's commands: that of
// $ANSIBLE_PLAYBOOK (make test-lab: .venv), else .venv/bin.
func newestBin() string {
	if p := os.Getenv("ANSIBLE_PLAYBOOK"); filepath.IsAbs(p) {
		return filepath.Dir(p)
	}
	return filepath.Join(repoRoot, ".venv", "bin")
}

// Playbook runs the collection playbook fqcn with the ansible-playbook
// given (each extra as in Lab.Playbook).
func (c *collectionRun) Playbook(ansiblePlaybook, fqcn string, extra ...string) Run {
	c.l.t.Helper()
	cmd := exec.Command(ansiblePlaybook, append([]string{"-i", c.l.Inventory, fqcn}, extraArgs(extra)...)...)
	cmd.Dir, cmd.Env = c.workDir, c.env
	return c.must(fqcn, extra, cmd)
}

// Runner runs the collection playbook fqcn through ansible-runner, as AWX
// does, with the newest ansible-core.
func (c *collectionRun) Runner(fqcn string, extra ...string) Run {
	c.l.t.Helper()
	data := c.l.t.TempDir()
	if err := os.Mkdir(filepath.Join(data, "project"), 0o755); err != nil {
		c.l.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(newestBin(), "ansible-runner"), "run", data, "-p", fqcn,
		"--inventory", c.l.Inventory, "--cmdline", strings.Join(quoteAll(extraArgs(extra)), " "))
	cmd.Dir = c.workDir
	cmd.Env = append(c.env, "PATH="+newestBin()+":"+os.Getenv("PATH"))
	return c.must("ansible-runner "+fqcn, extra, cmd)
}

func (c *collectionRun) must(name string, extra []string, cmd *exec.Cmd) Run {
	c.l.t.Helper()
	r := c.l.runPlaybook(name, extra, cmd)
	if r.Failed() || len(r.Stats) == 0 {
		c.l.t.Fatalf("%s failed: %v\n%s", name, r.Err, tail(r.Output, 80))
	}
	return r
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

// TestCollectionDocs: ansible-doc lists every module of modules/ in the
// installed collection (a binary module's stub is a file, not a link, for
// this), on ansible-core 2.14 and the newest, and shows a module's sidecar,
// the version every result reports included.
func TestCollectionDocs(t *testing.T) {
	c := newCollectionRun(t, nil)
	dirs, err := os.ReadDir(filepath.Join(repoRoot, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{oldAnsible("ansible-doc"), filepath.Join(newestBin(), "ansible-doc")} {
		list := c.command(doc, "-l", "etcdops.etcd")
		for _, d := range dirs {
			if !strings.Contains(list, "etcdops.etcd."+d.Name()+" ") {
				t.Errorf("%s -l etcdops.etcd does not list %s:\n%s", doc, d.Name(), list)
			}
		}
		member := c.command(doc, "etcdops.etcd.etcd_member")
		for _, want := range []string{"Lists the members of an etcd", "etcdops_version", "peer_urls"} {
			if !strings.Contains(member, want) {
				t.Errorf("%s etcdops.etcd.etcd_member shows no %q:\n%s", doc, want, tail(member, 40))
			}
		}
	}
}

// command runs an ansible command as the collection's user does and
// returns its output.
func (c *collectionRun) command(name string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = c.workDir, c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", name, args, err, tail(string(out), 40))
	}
	return string(out)
}

// TestCollection: the tarball installed with ansible-galaxy, the FQCN
// playbooks run from outside the checkout without an ansible.cfg. With
// ansible-core 2.14: deploy, add, remove the leader, back up, restore. With
// the newest, on the same cluster: add (by the short name
// etcdops.etcd.addetcd), remove, back up, restore, and an ad hoc module run
// that reports the build's version. Through ansible-runner: the deployment
// again (changing nothing), add, remove, back up, restore. The CA, the backups and the etcd
// binaries are where the role looks for them from a collection: beside the
// inventory file.
func TestCollection(t *testing.T) {
	l := NewLab(t, 5, 3)
	c := newCollectionRun(t, l)
	invDir := filepath.Dir(l.Inventory)
	binDir := os.Getenv("ETCD_BIN_SRC")
	if binDir == "" {
		binDir = os.Getenv("ETCD_BIN_DIR")
	}
	if binDir == "" {
		binDir = filepath.Join(repoRoot, "bin")
	}
	if err := os.Symlink(binDir, filepath.Join(invDir, "bin")); err != nil {
		t.Fatal(err)
	}
	old, newest := oldAnsible("ansible-playbook"), filepath.Join(newestBin(), "ansible-playbook")
	h1, h4, h5 := l.Hosts[0], l.Hosts[3], l.Hosts[4]
	restoreChecked := func(ansiblePlaybook string, members []string, prefix string) {
		t.Helper()
		l.PutKeys(members[0], prefix+"after/", 0, 50)
		c.Playbook(ansiblePlaybook, "etcdops.etcd.24.restore")
		for _, h := range members {
			if got, after := l.Count(h, "snap/"), l.Count(h, prefix+"after/"); got != 200 || after != 0 {
				t.Fatalf("%s holds %d of the 200 keys and %d written after the backup", h, got, after)
			}
		}
	}

	// ansible-core 2.14.
	c.Playbook(old, "etcdops.etcd.02.etcd")
	if _, err := os.Stat(filepath.Join(invDir, ".pki", "etcd", "ca.pem")); err != nil {
		t.Fatalf("the CA is not beside the inventory: %v", err)
	}
	l.PutKeys(h1, "snap/", 0, 200)
	l.MoveHost(h4, "lab_spare", "new-etcd")
	c.Playbook(old, "etcdops.etcd.19.addetcd")
	l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3", "etcd-"+h4)
	removed := l.LeaderIP(h1)
	c.Playbook(old, "etcdops.etcd.tools.remove_etcd_node", "ETCD_TO_DEL="+removed)
	rest := without(l.Hosts[:4], removed)
	l.ExpectVoterCount(rest[0], 3)
	l.ExpectGroup("etcd", rest...)
	c.Playbook(old, "etcdops.etcd.23.backup")
	if _, err := os.Stat(filepath.Join(invDir, "backup", "etcd", "snapshot.db")); err != nil {
		t.Fatalf("the backup is not beside the inventory: %v", err)
	}
	restoreChecked(old, rest, "old/")

	// The newest ansible-core, on the same cluster.
	l.MoveHost(h5, "lab_spare", "new-etcd")
	c.Playbook(newest, "etcdops.etcd.addetcd")
	rest = append(rest, h5)
	l.ExpectVoterCount(h5, 4)
	c.Playbook(newest, "etcdops.etcd.tools.remove_etcd_node", "ETCD_TO_DEL="+rest[0])
	second := rest[0]
	rest = rest[1:]
	l.ExpectVoterCount(rest[0], 3)
	c.Playbook(newest, "etcdops.etcd.23.backup")
	restoreChecked(newest, rest, "new/")
	out := c.command(filepath.Join(newestBin(), "ansible"), "-i", l.Inventory, rest[0], "-m", "etcdops.etcd.etcd_member")
	version, _ := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if want := fmt.Sprintf("%q: %q", "etcdops_version", strings.TrimSpace(string(version))); !strings.Contains(out, want) {
		t.Fatalf("ad hoc etcdops.etcd.etcd_member: no %s in\n%s", want, tail(out, 40))
	}

	// ansible-runner, as AWX runs playbooks.
	if r := c.Runner("etcdops.etcd.02.etcd"); r.Changed() != 0 {
		t.Fatalf("02.etcd through ansible-runner changed %d tasks on a deployed cluster\n%s", r.Changed(), changedTasks(r.Output))
	}
	l.AddHost(second, "new-etcd")
	c.Runner("etcdops.etcd.19.addetcd")
	l.ExpectVoterCount(second, 4)
	for _, h := range append(rest, second) {
		if got := l.Count(h, "snap/"); got != 200 {
			t.Fatalf("%s holds %d of the 200 keys", h, got)
		}
	}
	c.Runner("etcdops.etcd.tools.remove_etcd_node", "ETCD_TO_DEL="+rest[0])
	rest = append(rest[1:], second)
	l.ExpectVoterCount(rest[0], 3)
	c.Runner("etcdops.etcd.23.backup")
	l.PutKeys(rest[0], "runner/after/", 0, 50)
	c.Runner("etcdops.etcd.24.restore")
	for _, h := range rest {
		if got, after := l.Count(h, "snap/"), l.Count(h, "runner/after/"); got != 200 || after != 0 {
			t.Fatalf("after the restore through ansible-runner %s holds %d of the 200 keys and %d written after the backup", h, got, after)
		}
	}
}

// AddHost puts a host line first in a group, as an operator puts a
// host that is in no group (a removed member) into [new-etcd].
func (l *Lab) AddHost(host, group string) {
	l.t.Helper()
	text := l.InventoryText()
	header := "[" + group + "]\n"
	if !strings.Contains(text, header) {
		l.t.Fatalf("no [%s] in the inventory", group)
	}
	text = strings.Replace(text, header, header+host+"\n", 1)
	if err := os.WriteFile(l.Inventory, []byte(text), 0o644); err != nil {
		l.t.Fatal(err)
	}
}
