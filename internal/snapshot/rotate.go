package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// rotation is what taking a snapshot file into its directory's rotation
// did, or in check mode would do.
type rotation struct {
	link    string
	linked  bool
	removed []string
}

// rotate takes an existing, verified snapshot file into its directory's
// rotation as a save does: latestLink (if given) becomes a hard link to
// it, and with keep the snapshot_<timestamp>.db files beyond the newest
// keep are removed with their companions (files of the same stem, such as
// the inventory kept beside a backup). The file itself is never removed.
func rotate(path, latestLink string, keep *int, check bool) (rotation, error) {
	var r rotation
	if keep != nil && *keep < 1 {
		return r, fmt.Errorf("keep must be at least 1 (the snapshot itself is always kept), got %d", *keep)
	}
	if strings.ContainsRune(latestLink, '/') || latestLink == "." || latestLink == ".." {
		return r, fmt.Errorf("latest_link %q: give a file name in the snapshot's directory, without '/'", latestLink)
	}
	if latestLink != "" {
		r.link = filepath.Join(filepath.Dir(path), latestLink)
		if r.link == filepath.Clean(path) {
			return r, fmt.Errorf("latest_link %q is the snapshot's own name", latestLink)
		}
		target, err := os.Stat(path)
		if err != nil {
			return r, err
		}
		cur, err := os.Stat(r.link)
		r.linked = err != nil || !os.SameFile(cur, target)
		if r.linked && !check {
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
		r.removed, err = Prunable(dir, *keep, path)
	} else {
		r.removed, err = Prune(dir, *keep, path)
	}
	return r, err
}
