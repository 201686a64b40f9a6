package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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

// TestWriteFileLike keeps the mode and, when run as root, the owner of the
// file it replaces.
func TestWriteFileLike(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts")
	if err := os.WriteFile(p, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o640)
	wantUID := os.Getuid()
	if wantUID == 0 {
		wantUID = 65534
		if err := os.Chown(p, wantUID, 65534); err != nil {
			t.Fatal(err)
		}
	}
	like, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileLike(p, []byte("new"), like); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "new" || st.Mode().Perm() != 0o640 {
		t.Fatalf("contents %q, mode %v; want new, 0640", got, st.Mode().Perm())
	}
	if uid := int(st.Sys().(*syscall.Stat_t).Uid); uid != wantUID {
		t.Fatalf("owner %d, want %d", uid, wantUID)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

// TestLockDir: a second lock on the directory waits for the first, and
// nothing is created in it.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := LockDir(dir)
		if err != nil {
			t.Error(err)
		} else {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second lock was taken while the first was held")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second lock was not taken after the first was released")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the lock created %v", entries)
	}
	if _, err := LockDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("locked a missing directory")
	}
}
