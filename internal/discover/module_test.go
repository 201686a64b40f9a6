package discover

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdops/etcdops/internal/modrun"
)

// TestBinaryOption runs etcd_facts with binary on a real etcd binary
// (ETCD_BIN_DIR, as the Makefile sets it) and on binaries that are not
// etcd.
func TestBinaryOption(t *testing.T) {
	dir := os.Getenv("ETCD_BIN_DIR")
	if dir == "" {
		t.Fatal("ETCD_BIN_DIR is not set: run the tests with `make test-go` (it builds etcd into bin/)")
	}
	real := filepath.Join(dir, "etcd")
	want, err := os.ReadFile(filepath.Join(dir, "etcd.version"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		binary, version, fail string
	}{
		{real, strings.TrimSpace(string(want)), ""},
		{script("fake", `echo "etcd Version: 3.5.35"; echo "Git SHA: none"`), "3.5.35", ""},
		{script("other", `echo "some other tool 1.0"`), "", "is it etcd?"},
		{script("broken", `exit 3`), "", "exit status 3"},
		{filepath.Join(tmp, "missing"), "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.binary), func(t *testing.T) {
			out := modrun.ExecuteArgs(context.Background(), map[string]any{"binary": tt.binary}, ModuleSpec, RunModule)
			msg, _ := out["msg"].(string)
			if tt.fail != "" {
				if out["failed"] != true || !strings.Contains(msg, tt.fail) {
					t.Errorf("want a failure with %q, got %v", tt.fail, out)
				}
				return
			}
			if out["failed"] == true || out["version"] != tt.version || out["changed"] != false || out["ansible_facts"] != nil {
				t.Errorf("want version %s, got %v", tt.version, out)
			}
		})
	}
}
