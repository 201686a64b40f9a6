package inventory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	unlock, err := fsutil.LockDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Read under the lock (on the directory: the file is replaced by a
	// rename), so that an edit made meanwhile is not lost.
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
		if err := fsutil.WriteFileLike(name, before, info); err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
		res["backup_file"] = name
	}
	if err := fsutil.WriteFileLike(path, after, info); err != nil {
		return res, err
	}
	return res, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
