//go:build lab

package lab

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestLabEnv: the tests find the lab where lab/lab.sh puts it, from the same
// variables with the same defaults (it needs no machines).
func TestLabEnv(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(repoRoot, "lab", "lab.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LAB_STATE", "LAB_SUBNET", "LAB_BRIDGE", "LAB_PREFIX"} {
		t.Setenv(name, "")
	}
	defaults := currentLab()
	for name, got := range map[string]string{"LAB_STATE": defaults.State, "LAB_SUBNET": defaults.Subnet,
		"LAB_BRIDGE": defaults.Bridge, "LAB_PREFIX": defaults.Prefix} {
		m := regexp.MustCompile(`=\$\{` + name + `:-([^}]*)\}`).FindSubmatch(script)
		if m == nil || string(m[1]) != got {
			t.Errorf("%s: lab.sh's default %q, the tests' %q", name, m, got)
		}
	}
	t.Setenv("LAB_SUBNET", "10.73.0")
	t.Setenv("LAB_STATE", "/var/lib/etcd-lab-core")
	env := currentLab()
	if env.IP(1) != "10.73.0.11" || env.Key() != "/var/lib/etcd-lab-core/ssh/id_ed25519" {
		t.Errorf("IP(1) = %s, Key = %s", env.IP(1), env.Key())
	}
}
