package snapdir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// write makes files of the given names in dir, each holding its name.
func write(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func left(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestNewNameIsFreeAndUTC(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 4, 3, 4, 5, 0, time.FixedZone("CST", 8*3600))
	first := NewName(dir, at)
	if filepath.Base(first) != "snapshot_20261203190405.db" || !IsName(filepath.Base(first)) {
		t.Fatalf("NewName = %s", first)
	}
	write(t, dir, filepath.Base(first))
	if next := NewName(dir, at); filepath.Base(next) != "snapshot_20261203190406.db" {
		t.Fatalf("with that name taken, NewName = %s", next)
	}
}

func TestPrune(t *testing.T) {
	snaps := []string{"snapshot_20260101000000.db", "snapshot_20260201000000.db", "snapshot_20260301000000.db", "snapshot_20260401000000.db"}
	others := []string{"snapshot.db", "snapshot_202601010000.db", "snapshot_20260101000000.db.bak", "notes.txt"}
	tests := []struct {
		name     string
		keep     int
		keepPath string // never removed
		want     []string
	}{
		{"keeps the newest", 2, "", snaps[:2]},
		{"keeps all when fewer", 9, "", nil},
		{"never the one given", 1, snaps[0], snaps[1:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, append(append([]string{"snapshot_20260101000000.hosts"}, snaps...), others...)...)
			keepPath := ""
			if tt.keepPath != "" {
				keepPath = filepath.Join(dir, tt.keepPath)
			}
			var want []string
			for _, n := range tt.want {
				want = append(want, filepath.Join(dir, n))
			}
			would, err := Prunable(dir, tt.keep, keepPath)
			if err != nil || !sameSet(would, want) {
				t.Fatalf("Prunable = %v, %v; want %v", would, err, want)
			}
			removed, err := Prune(dir, tt.keep, keepPath)
			if err != nil || !sameSet(removed, want) {
				t.Fatalf("Prune = %v, %v; want %v", removed, err, want)
			}
			for _, n := range others {
				if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
					t.Errorf("%s, not a snapshot name, was touched: %v", n, err)
				}
			}
			// A pruned snapshot's companion goes with it, and only then.
			_, err = os.Stat(filepath.Join(dir, "snapshot_20260101000000.hosts"))
			if gone := slices.Contains(tt.want, snaps[0]); gone != os.IsNotExist(err) {
				t.Errorf("companion of %s: pruned %v, stat %v", snaps[0], gone, err)
			}
		})
	}
}

func TestCheckRotation(t *testing.T) {
	one, zero := 1, 0
	tests := []struct {
		link string
		keep *int
		want string // "" for accepted
	}{
		{"snapshot.db", &one, ""},
		{"", nil, ""},
		{"snapshot.db", &zero, "keep must be at least 1"},
		{"a/b", nil, "without '/'"},
		{"..", nil, "without '/'"},
		{"snapshot_20260101000000.db", nil, "own name"},
	}
	for _, tt := range tests {
		err := CheckRotation("/backup/snapshot_20260101000000.db", tt.link, tt.keep)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckRotation(%q, %v) = %v, want %q", tt.link, tt.keep, err, tt.want)
		}
	}
}

// TestRotate: check mode says what a rotation would do and changes
// nothing; the rotation then does it, and a second one does nothing.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "snapshot_20260101000000.db", "snapshot_20260201000000.db", "snapshot_20260301000000.db")
	newest := filepath.Join(dir, "snapshot_20260301000000.db")
	keep := 2
	before := left(t, dir)
	check, err := Rotate(newest, "snapshot.db", &keep, true)
	if err != nil || !check.Linked || len(check.Removed) != 1 || !slices.Equal(left(t, dir), before) {
		t.Fatalf("check mode: %+v, %v; left %v", check, err, left(t, dir))
	}
	done, err := Rotate(newest, "snapshot.db", &keep, false)
	if err != nil || !done.Linked || !slices.Equal(done.Removed, check.Removed) {
		t.Fatalf("rotate: %+v, %v; check mode said %+v", done, err, check)
	}
	a, _ := os.Stat(newest)
	b, err := os.Stat(done.Link)
	if err != nil || !os.SameFile(a, b) {
		t.Fatalf("%s is not a hard link to %s: %v", done.Link, newest, err)
	}
	again, err := Rotate(newest, "snapshot.db", &keep, false)
	if err != nil || again.Linked || len(again.Removed) != 0 {
		t.Fatalf("second rotation: %+v, %v", again, err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
