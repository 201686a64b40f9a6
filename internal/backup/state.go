package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// State file names in the local directory.
const (
	lastSuccessFile = "last-success.json"
	lastRunFile     = "last-run.json"
	// Beside each snapshot_<ts>.db the run keeps a companion (pruned with
	// it): .pending until it is in the store, then .uploaded.
	pendingExt  = ".pending"
	uploadedExt = ".uploaded"
)

// Success is last-success.json: what the last backup this member took was.
type Success struct {
	Time      time.Time `json:"time"`
	Period    time.Time `json:"period"`
	Member    string    `json:"member"`
	Revision  int64     `json:"revision"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	LocalPath string    `json:"local_path"`
	Object    string    `json:"object"`
}

// Skipped is last-run.json: the last run that found its period done by
// another member.
type Skipped struct {
	SkippedBy string    `json:"skipped_by"`
	Time      time.Time `json:"time"`
	TakenAt   time.Time `json:"taken_at"` // when SkippedBy took it
	Period    time.Time `json:"period"`
	Revision  int64     `json:"revision"`
	Object    string    `json:"object"`
}

// Local is what a companion file says of one local snapshot.
type Local struct {
	Path        string    `json:"-"`
	Time        time.Time `json:"time"`
	Period      time.Time `json:"period"`
	Member      string    `json:"member"`
	Revision    int64     `json:"revision"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	ClusterID   string    `json:"cluster_id"`
	EtcdVersion string    `json:"etcd_version"`
	Object      string    `json:"object,omitempty"`
	// SupersededBy is the object of the same period another run uploaded
	// (the snapshot was then not uploaded).
	SupersededBy string `json:"superseded_by,omitempty"`
}

func companion(snap, ext string) string { return strings.TrimSuffix(snap, ".db") + ext }

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(data, '\n'), 0o600)
}

func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// markPending records a snapshot taken and not yet in the store.
func markPending(l Local) error { return writeJSON(companion(l.Path, pendingExt), l) }

// markUploaded records that the snapshot is in the store (or superseded)
// and drops its .pending companion.
func markUploaded(l Local) error {
	if err := writeJSON(companion(l.Path, uploadedExt), l); err != nil {
		return err
	}
	if err := os.Remove(companion(l.Path, pendingExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(l.Path))
}

// pending lists the local snapshots still to be uploaded, oldest first.
func pending(dir string) ([]Local, error) {
	names, err := filepath.Glob(filepath.Join(dir, "snapshot_*"+pendingExt))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Local
	for _, n := range names {
		var l Local
		if _, err := readJSON(n, &l); err != nil {
			return nil, err
		}
		l.Path = strings.TrimSuffix(n, pendingExt) + ".db"
		if _, err := os.Stat(l.Path); err != nil {
			os.Remove(n) // its snapshot was pruned
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// localTimeLayout is the time in a local snapshot's name (snapdir.NewName).
const localTimeLayout = "20060102150405"

// newestLocal returns the time of the newest snapshot_<ts>.db in dir.
func newestLocal(dir string) (time.Time, string, bool) {
	names, _ := filepath.Glob(filepath.Join(dir, "snapshot_*.db"))
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	for _, n := range names {
		ts := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "snapshot_"), ".db")
		if t, err := time.Parse(localTimeLayout, ts); err == nil {
			return t, n, true
		}
	}
	return time.Time{}, "", false
}
