package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapdir"
)

// ModuleSpec declares the options of the etcd_snapshot module.
var ModuleSpec = modrun.Spec{
	Options: append(etcdconn.SpecOptions(),
		modrun.Option{Name: "state", Type: modrun.TypeStr, Default: "saved", Choices: []string{"saved", "status"}},
		modrun.Option{Name: "path", Type: modrun.TypePath, Required: true},
		modrun.Option{Name: "latest_link", Type: modrun.TypeStr},
		modrun.Option{Name: "keep", Type: modrun.TypeInt},
		modrun.Option{Name: "mode", Type: modrun.TypeStr, Default: "0600"},
	),
	RequiredTogether: [][]string{etcdconn.SpecRequiredTogether},
}

type options struct {
	etcdconn.Options
	State      string `json:"state"`
	Path       string `json:"path"`
	LatestLink string `json:"latest_link"`
	Keep       *int   `json:"keep"`
	Mode       string `json:"mode"`
}

// RunModule runs the etcd_snapshot module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if o.State == "status" {
		st, err := ReadStatus(o.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Path, err)
		}
		if !st.HasTrailer {
			m.Warn("%s has no sha256 trailer (a copy of a member's database file, not a snapshot streamed from etcd): its integrity was checked by bbolt only", o.Path)
		}
		res := statusResult(st)
		res["changed"] = false
		res["msg"] = fmt.Sprintf("%s: revision %d, %d keys, hash %d", st.Path, st.Revision, st.TotalKeys, st.Hash)
		if o.LatestLink != "" || o.Keep != nil {
			r, err := snapdir.Rotate(o.Path, o.LatestLink, o.Keep, m.Meta.CheckMode)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", o.Path, err)
			}
			res["changed"] = r.Linked || len(r.Removed) > 0
			res["removed"] = r.Removed
			if r.Link != "" {
				res["latest_link"] = r.Link
			}
		}
		return res, nil
	}
	return save(ctx, m, o)
}

func statusResult(st Status) modrun.Result {
	return modrun.Result{
		"path": st.Path, "size": st.Size, "sha256": st.SHA256, "hash": st.Hash,
		"revision": st.Revision, "total_keys": st.TotalKeys, "total_size": st.TotalSize,
		"version": st.Version,
	}
}

// plan is a validated save request.
type plan struct {
	path string
	dir  string
	mode os.FileMode
}

func (o options) plan(now time.Time) (plan, error) {
	var p plan
	mode, err := strconv.ParseUint(strings.TrimPrefix(o.Mode, "0o"), 8, 32)
	if err != nil || mode > 0o777 || mode&0o400 == 0 {
		return p, fmt.Errorf("mode %q: give an octal file mode the owner can read, like 0600", o.Mode)
	}
	p.mode = os.FileMode(mode)
	info, err := os.Stat(o.Path)
	switch {
	case err == nil && info.IsDir():
		p.dir = o.Path
		p.path = snapdir.NewName(o.Path, now)
	case err == nil && !info.Mode().IsRegular():
		return p, fmt.Errorf("path %s exists and is neither a directory nor a regular file", o.Path)
	default:
		p.dir, p.path = filepath.Dir(o.Path), o.Path
		if d, err := os.Stat(p.dir); err != nil || !d.IsDir() {
			return p, fmt.Errorf("path %s: its directory %s does not exist", o.Path, p.dir)
		}
	}
	return p, snapdir.CheckRotation(p.path, o.LatestLink, o.Keep)
}

// ChooseEndpoint returns the first endpoint, in the order given, whose
// member answers without errors, preferring voting members to learners.
func ChooseEndpoint(ctx context.Context, o etcdconn.Options) (etcdconn.EndpointStatus, error) {
	statuses := etcdconn.ProbeAll(ctx, o, o.Endpoints)
	var learner *etcdconn.EndpointStatus
	var problems []string
	for i, s := range statuses {
		switch {
		case !s.Healthy():
			if s.Err != nil {
				problems = append(problems, s.Err.Error())
			} else {
				problems = append(problems, fmt.Sprintf("%s: %s", s.Endpoint, strings.Join(s.Status.Errors, ", ")))
			}
		case s.Status.IsLearner:
			if learner == nil {
				learner = &statuses[i]
			}
		default:
			return s, nil
		}
	}
	if learner != nil {
		return *learner, nil
	}
	return etcdconn.EndpointStatus{}, fmt.Errorf("no healthy member to take a snapshot from: %s", strings.Join(problems, "; "))
}

func save(ctx context.Context, m *modrun.Module, o options) (modrun.Result, error) {
	p, err := o.plan(time.Now())
	if err != nil {
		return nil, err
	}
	if err := discover.FillConn(ctx, &o.Options); err != nil {
		return nil, err
	}
	src, err := ChooseEndpoint(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	memberID := fmt.Sprintf("%x", src.Status.Header.MemberId)
	res := modrun.Result{"path": p.path, "endpoint": src.Endpoint, "member_id": memberID, "changed": true}
	if o.Keep != nil {
		would, err := snapdir.Prunable(p.dir, *o.Keep-1, p.path)
		if err != nil {
			return nil, err
		}
		res["removed"] = nonNil(would)
	}
	if m.Meta.CheckMode {
		res["msg"] = fmt.Sprintf("would save a snapshot of member %s (%s) to %s", memberID, src.Endpoint, p.path)
		return res, nil
	}

	cli, err := etcdconn.NewBulk(o.Options, src.Endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	start := time.Now()
	st, err := SaveVerified(ctx, cli, src.Endpoint, p.path, p.mode, o.CommandTimeoutDuration())
	if err != nil {
		return nil, err
	}
	took := time.Since(start).Seconds()
	res = statusResult(st)
	res["endpoint"], res["member_id"], res["changed"] = src.Endpoint, memberID, true
	res["duration_seconds"] = took
	if o.LatestLink != "" {
		link, err := snapdir.Link(p.path, o.LatestLink)
		if err != nil {
			return res, err
		}
		res["latest_link"] = link
	}
	res["removed"] = []string{}
	if o.Keep != nil {
		removed, err := snapdir.Prune(p.dir, *o.Keep, p.path)
		res["removed"] = nonNil(removed)
		if err != nil {
			return res, err
		}
	}
	res["msg"] = fmt.Sprintf("saved a snapshot of member %s (%s) to %s: %d bytes, revision %d, %d keys, in %.1fs",
		memberID, src.Endpoint, p.path, st.Size, st.Revision, st.TotalKeys, took)
	return res, nil
}

// SaveVerified saves a snapshot of the client's (single) endpoint to path
// as state=saved does (Save, with the numbers read from the file while it
// is fsynced) and returns its status. Errors say what broke, for an
// operator; on any error nothing is left behind.
func SaveVerified(ctx context.Context, cli *clientv3.Client, endpoint, path string, mode os.FileMode, stall time.Duration) (Status, error) {
	var st Status
	check := func(tmp string, saved Saved) error {
		var err error
		st, err = readStatus(tmp, saved.SHA256)
		if err != nil {
			return fmt.Errorf("the snapshot does not check out, so it was not kept: %w", err)
		}
		st.Path = path
		return nil
	}
	if _, err := Save(ctx, cli, path, mode, stall, check); err != nil {
		var se *StreamError
		if errors.As(err, &se) && se.Received > 0 {
			return st, fmt.Errorf("snapshot of %s to %s: the stream broke after %d bytes (the member stopped or the connection was lost): %w; nothing was kept",
				endpoint, path, se.Received, &etcdconn.Error{Err: se.Err})
		}
		return st, &etcdconn.Error{Op: fmt.Sprintf("snapshot of %s to %s", endpoint, path), Err: err}
	}
	return st, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
