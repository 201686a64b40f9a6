package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var build struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary builds this command once per test run and returns a hard link to
// it named name in dir, as make build links library/<module>.
func binary(t *testing.T, dir, name string) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "etcdops-test-")
		if build.err == nil {
			build.out, build.err = exec.Command("go", "build", "-o", filepath.Join(build.dir, "etcdops"), ".").CombinedOutput()
		}
	})
	if build.err != nil {
		t.Fatalf("go build: %v\n%s", build.err, build.out)
	}
	bin := filepath.Join(dir, name)
	if err := os.Link(filepath.Join(build.dir, "etcdops"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}
