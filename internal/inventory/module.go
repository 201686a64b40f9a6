package inventory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/etcdops/etcdops/internal/fsutil"
	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the hosts_group_move module.
var ModuleSpec = modrun.Spec{
	Options: []modrun.Option{
		{Name: "path", Type: modrun.TypePath, Required: true},
		{Name: "host", Type: modrun.TypeStr, Required: true},
		{Name: "from_group", Type: modrun.TypeStr},
		{Name: "to_group", Type: modrun.TypeStr},
		{Name: "create_group", Type: modrun.TypeBool, Default: false},
		{Name: "backup", Type: modrun.TypeBool, Default: false},
	},
	RequiredOneOf: [][]string{{"from_group", "to_group"}},
}

type options struct {
	Path        string `json:"path"`
	Host        string `json:"host"`
	FromGroup   string `json:"from_group"`
	ToGroup     string `json:"to_group"`
	CreateGroup bool   `json:"create_group"`
	Backup      bool   `json:"backup"`
}

var groupNameRE = regexp.MustCompile(`^[^:\]\[\s#;]+$`)

func (o options) validate() error {
	if o.Host == "" || strings.ContainsAny(o.Host, " \t\r\n#=") {
		return fmt.Errorf("host %q: give the host as the inventory writes it, like 192.168.1.6 or etcd4", o.Host)
	}
	for name, g := range map[string]string{"from_group": o.FromGroup, "to_group": o.ToGroup} {
		if g != "" && !groupNameRE.MatchString(g) {
			return fmt.Errorf("%s %q is not a group name (no spaces, ':', '[', ']', '#' or ';')", name, g)
		}
	}
	if o.FromGroup != "" && o.FromGroup == o.ToGroup {
		return fmt.Errorf("from_group and to_group are both %q", o.FromGroup)
	}
	return nil
}

// RunModule runs the hosts_group_move module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	path, err := filepath.EvalSymlinks(o.Path)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", o.Path, err)
	}
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Read under the lock, so that an edit made meanwhile is not lost.
	before, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", o.Path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(before)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid INI inventory: %w", o.Path, err)
	}
	out, err := f.Apply(Move{Host: o.Host, From: o.FromGroup, To: o.ToGroup, CreateGroup: o.CreateGroup})
	if err != nil {
		return modrun.Result{"path": o.Path, "groups": nonNil(f.Groups(o.Host))}, err
	}
	res := modrun.Result{"changed": out.Changed, "msg": out.Msg, "groups": nonNil(out.Groups), "path": o.Path}
	if !out.Changed {
		return res, nil
	}
	after := f.Bytes()
	res["diff"] = map[string]any{"before": string(before), "after": string(after),
		"before_header": o.Path + " (before)", "after_header": o.Path + " (after)"}
	if m.Meta.CheckMode {
		return res, nil
	}
	if o.Backup {
		name := fmt.Sprintf("%s.%d.%s", path, os.Getpid(), time.Now().Format("2006-01-02@15:04:05~"))
		if err := writeLike(name, before, info); err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
		res["backup_file"] = name
	}
	if err := writeLike(path, after, info); err != nil {
		return res, err
	}
	return res, nil
}

// lockDir takes an exclusive flock on the inventory's directory, so that
// concurrent edits of the file (which the rename replaces, so a lock on the
// file itself would not hold) happen one after the other. Nothing is
// created in the directory for the lock.
func lockDir(dir string) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { d.Close() }, nil
}

// writeLike writes data to path atomically with the mode and owner of info.
func writeLike(path string, data []byte, info os.FileInfo) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid()) {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("keep the owner of %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	return fsutil.SyncDir(dir)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
