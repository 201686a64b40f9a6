// Package collection holds the tools that assemble (build.py) and check
// (check.sh) the Ansible collection etcdops.etcd; this test runs build.py
// on the repository and checks what it made against the repository.
package collection

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const prefix = "etcdops.etcd."

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestAssemble: every module, playbook and role of the repository is in
// the collection, under the names ansible-core resolves, with no module or
// role left unqualified.
func TestAssemble(t *testing.T) {
	if _, err := os.Stat("../build/linux_amd64/etcdops"); err != nil {
		t.Skip("no build/linux_amd64/etcdops (make build)")
	}
	out := filepath.Join(t.TempDir(), "ansible_collections", "etcdops", "etcd")
	if b, err := exec.Command("python3", "build.py", out).CombinedOutput(); err != nil {
		t.Fatalf("build.py: %v\n%s", err, b)
	}
	version, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	galaxy, err := os.ReadFile(filepath.Join(out, "galaxy.yml"))
	if err != nil || !strings.Contains(string(galaxy), "\nversion: "+strings.TrimSpace(string(version))+"\n") {
		t.Errorf("galaxy.yml does not carry VERSION %s: %v", version, err)
	}

	for _, tool := range []string{"build.py", "check.sh", "get_pip_offline.py", "build_test.go"} {
		if _, err := os.Stat(filepath.Join(out, tool)); err == nil {
			t.Errorf("the tool %s is packaged in the collection", tool)
		}
	}

	modules := names(t, "../modules")
	for _, m := range modules {
		st, err := os.Lstat(filepath.Join(out, "plugins", "modules", m))
		if err != nil || !st.Mode().IsRegular() {
			t.Errorf("plugins/modules/%s is not a regular file (ansible-doc -l skips links): %v", m, err)
		}
		doc, err := os.ReadFile(filepath.Join(out, "plugins", "modules", m+".yml"))
		if err != nil {
			t.Errorf("no sidecar for %s: %v", m, err)
		}
		for _, other := range modules {
			if strings.Contains(string(doc), "M("+other+")") {
				t.Errorf("plugins/modules/%s.yml names M(%s), not M(%s%s)", m, other, prefix, other)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "plugins", "action", m+".py")); err != nil {
			t.Errorf("no action plugin for %s: %v", m, err)
		}
	}
	for _, arch := range []string{"linux_amd64", "linux_arm64"} {
		if _, err := os.Stat(filepath.Join(out, "build", arch, "etcdops")); err != nil {
			t.Errorf("no %s binary: %v", arch, err)
		}
	}

	// Playbooks: 19.addetcd.yml is 19/addetcd.yml (etcdops.etcd.19.addetcd)
	// with the alias addetcd.yml; tools/x.yml stays.
	var playbooks []string
	for _, pattern := range []string{"../playbooks/*.yml", "../playbooks/tools/*.yml"} {
		m, _ := filepath.Glob(pattern)
		playbooks = append(playbooks, m...)
	}
	if len(playbooks) == 0 {
		t.Fatal("no playbooks found")
	}
	for _, p := range playbooks {
		rel, _ := filepath.Rel("../playbooks", p)
		dir, file := filepath.Split(rel)
		parts := strings.Split(strings.TrimSuffix(file, ".yml"), ".")
		want := filepath.Join(append([]string{out, "playbooks", dir}, parts...)...) + ".yml"
		if _, err := os.Stat(want); err != nil {
			t.Errorf("%s is not at %s: %v", rel, want, err)
		}
		if len(parts) > 1 {
			alias := filepath.Join(out, "playbooks", dir, parts[len(parts)-1]+".yml")
			if target, err := os.Readlink(alias); err != nil || filepath.Join(filepath.Dir(alias), target) != want {
				t.Errorf("alias %s -> %q (%v), want a link to %s", alias, target, err, want)
			}
		}
	}

	// No task, module_defaults entry or role reference left unqualified.
	short := regexp.MustCompile(`^\s*(?:-\s+)?(` + strings.Join(modules, "|") + `):(\s|$)`)
	roles := names(t, "../roles")
	roleRef := regexp.MustCompile(`^\s*(?:-\s+)?(?:name|role):\s*(` + strings.Join(roles, "|") + `)\s*$|^\s*-\s+(` + strings.Join(roles, "|") + `)\s*$`)
	qualified := 0
	check := func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(path, ".yml") || strings.Contains(path, "/templates/") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			if short.MatchString(line) {
				t.Errorf("%s:%d: unqualified module: %s", path, i+1, line)
			}
			if m := roleRef.FindStringSubmatch(line); m != nil && !isSystemdUnit(data, i) {
				t.Errorf("%s:%d: unqualified role: %s", path, i+1, line)
			}
			qualified += strings.Count(line, prefix)
		}
		return nil
	}
	for _, dir := range []string{"playbooks", "roles"} {
		if err := filepath.Walk(filepath.Join(out, dir), check); err != nil {
			t.Fatal(err)
		}
	}
	if qualified == 0 {
		t.Error("nothing in the collection's YAML is qualified")
	}
}

// isSystemdUnit: line i is `name: etcd` of a systemd or service task (the
// unit, not the role).
func isSystemdUnit(data []byte, i int) bool {
	lines := strings.Split(string(data), "\n")
	for j := i - 1; j >= 0 && j >= i-3; j-- {
		if strings.Contains(lines[j], "systemd") || strings.Contains(lines[j], "service:") {
			return true
		}
	}
	return false
}
