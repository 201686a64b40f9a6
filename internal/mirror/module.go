package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/fsutil"
	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_service module.
var ModuleSpec = modrun.Spec{Options: []modrun.Option{
	{Name: "like", Type: modrun.TypeDict, Required: true},
	{Name: "members", Type: modrun.TypeList, Elements: modrun.TypeDict, Default: []any{}},
	{Name: "name", Type: modrun.TypeStr, Required: true},
	{Name: "address", Type: modrun.TypeStr, Required: true},
	{Name: "initial_cluster", Type: modrun.TypeStr, Required: true},
	{Name: "initial_cluster_state", Type: modrun.TypeStr, Default: "existing", Choices: []string{"existing", "new"}},
}}

type options struct {
	Like           json.RawMessage   `json:"like"`
	Members        []json.RawMessage `json:"members"`
	Name           string            `json:"name"`
	Address        string            `json:"address"`
	InitialCluster string            `json:"initial_cluster"`
	State          string            `json:"initial_cluster_state"`
}

func decodeMember(raw json.RawMessage) (discover.Member, error) {
	var f discover.Facts
	if err := json.Unmarshal(raw, &f); err != nil {
		return discover.Member{}, err
	}
	if !f.Found {
		return discover.Member{}, errors.New("it is not an etcd_facts result of a host that runs etcd (found is false)")
	}
	return f.Member, nil
}

// RunModule runs the etcd_service module: it writes the new member's unit
// (and environment files) made like an existing member's, and creates its
// directories. It does not start etcd.
func RunModule(_ context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	donor, err := decodeMember(o.Like)
	if err != nil {
		return nil, fmt.Errorf("like: %w", err)
	}
	var all []discover.Member
	for i, raw := range o.Members {
		mem, err := decodeMember(raw)
		if err != nil {
			return nil, fmt.Errorf("members[%d]: %w", i, err)
		}
		all = append(all, mem)
	}
	if d := Disagreements(all); len(d) > 0 {
		return nil, fmt.Errorf("the members are not all run the same way, so a new member cannot be made like them "+
			"(make them agree, or add the member by hand): %s", strings.Join(d, "; "))
	}
	plan, err := Make(donor, Request{Name: o.Name, Address: o.Address, InitialCluster: o.InitialCluster, ClusterState: o.State})
	if err != nil {
		return nil, err
	}
	changed := false
	var before, after strings.Builder
	var written []string
	for _, f := range plan.Files {
		old, err := os.ReadFile(f.Path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read %s: %w", f.Path, err)
		}
		if bytes.Equal(old, []byte(f.Content)) {
			continue
		}
		changed = true
		written = append(written, f.Path)
		fmt.Fprintf(&before, "# %s\n%s", f.Path, old)
		fmt.Fprintf(&after, "# %s\n%s", f.Path, f.Content)
		if m.Meta.CheckMode {
			continue
		}
		if err := fsutil.WriteFile(f.Path, []byte(f.Content), f.Mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	for _, d := range plan.Dirs {
		made, err := ensureDir(d, m.Meta.CheckMode)
		if err != nil {
			return nil, err
		}
		if made {
			changed = true
			written = append(written, d.Path+"/")
		}
	}
	res := modrun.Result{"changed": changed, "binary": plan.Binary, "tls": plan.TLS, "files": written,
		"unit_file": plan.Files[0].Path, "data_dir": donor.DataDir, "wal_dir": donor.WALDir,
		"msg": fmt.Sprintf("member %s is set up like member %s (%s layout)", o.Name, donor.Name, donor.Layout)}
	if m.Meta.Diff && changed {
		res["diff"] = map[string]any{"before": before.String(), "after": after.String()}
	}
	return res, nil
}

// ensureDir creates a directory readable by its owner alone, if missing.
func ensureDir(d Dir, check bool) (bool, error) {
	if _, err := os.Stat(d.Path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("%s: %w", d.Path, err)
	}
	if check {
		return true, nil
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", d.Path, err)
	}
	if d.Owner == "" {
		return true, nil
	}
	u, err := user.Lookup(d.Owner)
	if err != nil {
		return false, fmt.Errorf("the user %s etcd runs as: %w", d.Owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(d.Path, uid, gid); err != nil {
		return false, fmt.Errorf("give %s to %s: %w", d.Path, d.Owner, err)
	}
	return true, nil
}
