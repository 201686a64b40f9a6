//go:build lab

package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLabLifecycle: an interrupted lab-up is followed by a working one, and
// lab-down leaves no container, mount, link or bridge behind.
func TestLabLifecycle(t *testing.T) {
	script := filepath.Join(repoRoot, "lab", "lab.sh")
	inv := filepath.Join(t.TempDir(), "hosts")
	env := append(os.Environ(), "LAB_INVENTORY="+inv)

	interrupted := exec.Command("bash", script, "up", "2")
	interrupted.Env = env
	if err := interrupted.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	interrupted.Process.Kill()
	interrupted.Wait()

	up := exec.Command("bash", script, "up", "2")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("lab up after an interrupted one: %v\n%s", err, out)
	}
	down := exec.Command("bash", script, "down")
	down.Env = env
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	// Nothing left behind.
	lab := currentLab()
	if out, _ := exec.Command("pgrep", "-f", "systemd-nspawn -D "+lab.State+"/").Output(); len(out) > 0 {
		t.Fatalf("nspawn processes left: %s", out)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), lab.State+"/") {
		t.Fatalf("mounts left under %s", lab.State)
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, name := range []string{lab.Bridge + ":", "vb-" + lab.Prefix} {
		if strings.Contains(string(links), name) {
			t.Fatalf("link %s left:\n%s", strings.TrimSuffix(name, ":"), links)
		}
	}
	if _, err := os.Stat(filepath.Join(lab.State, "machines")); !os.IsNotExist(err) {
		t.Fatalf("machine state left: %v", err)
	}
}
