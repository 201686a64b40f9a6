package snapshot

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

// TestStatusRotates: a snapshot fetched into a backup directory is taken
// into its rotation by state=status with latest_link and keep, as the
// backup playbook does on the deploy node; check mode predicts it.
func TestStatusRotates(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	fillData(t, c, 20)
	src := t.TempDir()
	r := run(t, connArgs(c.Options(), map[string]any{"path": filepath.Join(src, "s.db")}))
	mustSucceed(t, r)
	data, err := os.ReadFile(filepath.Join(src, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"snapshot_20261101000000", "snapshot_20261102000000", "snapshot_20261103000000"}
	for _, n := range names {
		for _, f := range []struct{ ext, data string }{{".db", string(data)}, {".hosts", "[etcd]\n"}} {
			if err := os.WriteFile(filepath.Join(dir, n+f.ext), []byte(f.data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	other := filepath.Join(dir, "snapshot_202611010000.db") // kubeasz's own name: never touched
	if err := os.WriteFile(other, data, 0o600); err != nil {
		t.Fatal(err)
	}
	newest := filepath.Join(dir, names[2]+".db")
	args := map[string]any{"state": "status", "path": newest, "latest_link": "snapshot.db", "keep": 2}

	checkArgs := map[string]any{"_ansible_check_mode": true}
	for k, v := range args {
		checkArgs[k] = v
	}
	check := run(t, checkArgs)
	mustSucceed(t, check)
	if check["changed"] != true || !reflect.DeepEqual(check["removed"], []string{filepath.Join(dir, names[0]+".db")}) {
		t.Fatalf("check mode: %v", check)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshot.db")); !os.IsNotExist(err) {
		t.Fatal("check mode made the link")
	}

	first := run(t, args)
	mustSucceed(t, first)
	if first["changed"] != true {
		t.Fatalf("first run: %v", first)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	want := []string{filepath.Join(dir, "snapshot.db"), other,
		filepath.Join(dir, names[1]+".db"), filepath.Join(dir, names[1]+".hosts"), newest, filepath.Join(dir, names[2]+".hosts")}
	if !sameSet(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	a, _ := os.Stat(newest)
	b, _ := os.Stat(filepath.Join(dir, "snapshot.db"))
	if !os.SameFile(a, b) {
		t.Fatal("snapshot.db is not the newest snapshot")
	}
	if second := run(t, args); second["changed"] != false {
		t.Fatalf("second run changed: %v", second)
	}
	if bad := run(t, map[string]any{"state": "status", "path": newest, "latest_link": "../x"}); bad["failed"] != true {
		t.Fatalf("a link outside the directory was accepted: %v", bad)
	}
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return len(a) == len(b)
}
