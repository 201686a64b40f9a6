// Package snapdir keeps a directory of etcd snapshots: it names new ones
// snapshot_<UTC timestamp>.db, keeps a "latest" hard link to the newest,
// and prunes the oldest, with the files that go with them. It touches no
// other names.
package snapdir

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// namePattern is what NewName names snapshots, and the only files Prune
// ever deletes.
var namePattern = regexp.MustCompile(`^snapshot_[0-9]{14}\.db$`)

// companionExt is the extension of a file that goes with a pruned
// snapshot of the same stem.
var companionExt = regexp.MustCompile(`^[A-Za-z]+$`)

// timestampLayout names snapshots in UTC, so that names sort in time order
// whatever the node's time zone and daylight saving.
const timestampLayout = "20060102150405"

// NewName returns a free snapshot_<UTC timestamp>.db path in dir, a second
// later if a snapshot of this second exists.
func NewName(dir string, now time.Time) string {
	for {
		p := filepath.Join(dir, "snapshot_"+now.UTC().Format(timestampLayout)+".db")
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			return p
		}
		now = now.Add(time.Second)
	}
}

// Prunable lists the snapshot_<timestamp>.db files of dir beyond the newest
// keep, never keepPath itself.
func Prunable(dir string, keep int, keepPath string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && namePattern.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	var out []string
	for i, n := range names {
		p := filepath.Join(dir, n)
		if i < keep || p == filepath.Clean(keepPath) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// Prune deletes what Prunable lists, each with its companions (files of
// the same stem, like snapshot_<ts>.hosts), and returns the snapshots.
func Prune(dir string, keep int, keepPath string) ([]string, error) {
	victims, err := Prunable(dir, keep, keepPath)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, p := range victims {
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("prune %s: %w", p, err)
		}
		removed = append(removed, p)
		// Its companions: the same stem with one other extension
		// (snapshot_<ts>.hosts; never snapshot_<ts>.db.bak).
		others, _ := filepath.Glob(strings.TrimSuffix(p, ".db") + ".*")
		for _, o := range others {
			ext := strings.TrimPrefix(o, strings.TrimSuffix(p, ".db")+".")
			if !companionExt.MatchString(ext) {
				continue
			}
			if info, err := os.Lstat(o); err == nil && info.Mode().IsRegular() {
				if err := os.Remove(o); err != nil {
					return removed, fmt.Errorf("prune %s: %w", o, err)
				}
			}
		}
	}
	if len(removed) > 0 {
		return removed, fsutil.SyncDir(dir)
	}
	return removed, nil
}

// Link makes name (in target's directory) a hard link to target, replacing
// it atomically: a hard link and not a symlink, so that the latest copy
// survives the pruning of the file it was made from and `cp snapshot.db`
// copies the data.
func Link(target, name string) (string, error) {
	dir := filepath.Dir(target)
	link := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".link-"+fmt.Sprint(os.Getpid()))
	os.Remove(tmp)
	if err := os.Link(target, tmp); err != nil {
		return link, fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return link, fmt.Errorf("link %s: %w", link, err)
	}
	return link, fsutil.SyncDir(dir)
}

// IsName reports whether name (a base name) is one NewName gives.
func IsName(name string) bool { return namePattern.MatchString(name) }

// CheckRotation checks keep and latestLink as Rotate takes them, for a
// snapshot to be written at path.
func CheckRotation(path, latestLink string, keep *int) error {
	if keep != nil && *keep < 1 {
		return fmt.Errorf("keep must be at least 1 (the snapshot itself is always kept), got %d", *keep)
	}
	if latestLink == "" {
		return nil
	}
	if strings.ContainsRune(latestLink, '/') || latestLink == "." || latestLink == ".." {
		return fmt.Errorf("latest_link %q: give a file name in the snapshot's directory, without '/'", latestLink)
	}
	if filepath.Join(filepath.Dir(path), latestLink) == filepath.Clean(path) {
		return fmt.Errorf("latest_link %q is the snapshot's own name", latestLink)
	}
	return nil
}

// Rotation is what taking a snapshot file into its directory's rotation
// did, or in check mode would do.
type Rotation struct {
	Link    string   // the latest link's path, if one was asked for
	Linked  bool     // whether the link was (or would be) made or moved
	Removed []string // the snapshots pruned (or that would be)
}

// Rotate takes an existing, verified snapshot file into its directory's
// rotation: latestLink (if given) becomes a hard link to it, and with keep
// the snapshot_<timestamp>.db files beyond the newest keep are removed
// with their companions. The file itself is never removed. With check,
// nothing changes and the Rotation says what would.
func Rotate(path, latestLink string, keep *int, check bool) (Rotation, error) {
	var r Rotation
	if err := CheckRotation(path, latestLink, keep); err != nil {
		return r, err
	}
	if latestLink != "" {
		r.Link = filepath.Join(filepath.Dir(path), latestLink)
		target, err := os.Stat(path)
		if err != nil {
			return r, err
		}
		cur, err := os.Stat(r.Link)
		r.Linked = err != nil || !os.SameFile(cur, target)
		if r.Linked && !check {
			if _, err := Link(path, latestLink); err != nil {
				return r, err
			}
		}
	}
	if keep == nil {
		return r, nil
	}
	dir := filepath.Dir(path)
	var err error
	if check {
		r.Removed, err = Prunable(dir, *keep, path)
	} else {
		r.Removed, err = Prune(dir, *keep, path)
	}
	return r, err
}
