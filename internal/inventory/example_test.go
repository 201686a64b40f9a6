package inventory

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestShippedExample: inventory/hosts.example, which a fresh clone has in
// place of the lab's inventory/hosts, is read by ansible-inventory with the
// groups and variables of kubeasz's hosts file and an empty [new-etcd], and
// by Parse.
func TestShippedExample(t *testing.T) {
	path, _ := filepath.Abs(filepath.Join("..", "..", "inventory", "hosts.example"))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatal(err)
	}
	ai, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatal("ansible-inventory not found: run `make deps`")
	}
	cmd := exec.Command(ai, "-i", path, "--list")
	cmd.Env = append(os.Environ(), "ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_FORCE_VALID_GROUP_NAMES=ignore")
	cmd.Dir = t.TempDir() // no ansible.cfg
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v", err)
	}
	var inv map[string]struct {
		Hosts    []string `json:"hosts"`
		Children []string `json:"children"`
	}
	if err := json.Unmarshal(out, &inv); err != nil {
		t.Fatal(err)
	}
	if n := len(inv["etcd"].Hosts); n != 3 {
		t.Errorf("[etcd] has %d hosts, want 3", n)
	}
	for _, g := range []string{"etcd", "new-etcd", "kube_master", "kube_node"} {
		if !slices.Contains(inv["all"].Children, g) {
			t.Errorf("group %s missing: %v", g, inv["all"].Children)
		}
	}
	if len(inv["new-etcd"].Hosts) != 0 {
		t.Errorf("[new-etcd] is not empty: %v", inv["new-etcd"].Hosts)
	}
	var meta struct {
		Meta struct {
			Hostvars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
	}
	json.Unmarshal(out, &meta)
	vars := meta.Meta.Hostvars["192.168.1.1"]
	for _, v := range []string{"bin_dir", "base_dir", "cluster_dir", "ca_dir", "ansible_python_interpreter"} {
		if _, ok := vars[v]; !ok {
			t.Errorf("[all:vars] lacks %s: %v", v, vars)
		}
	}
}
