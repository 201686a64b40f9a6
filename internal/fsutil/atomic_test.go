package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	tests := []struct {
		data string
		perm os.FileMode
	}{{"first", 0o600}, {"second, longer", 0o640}, {"", 0o600}}
	for _, tt := range tests {
		if err := WriteFile(p, []byte(tt.data), tt.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != tt.data {
			t.Fatalf("contents %q, %v; want %q", got, err, tt.data)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != tt.perm {
			t.Fatalf("mode %v, want %v", st.Mode().Perm(), tt.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
