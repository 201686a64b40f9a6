package maint

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

// WaitTimeoutDuration is how long leader_moved waits for the new leader and
// healthy waits for the cluster.
func (o options) WaitTimeoutDuration() time.Duration {
	return time.Duration(o.WaitTimeout * float64(time.Second))
}

func (r *runner) find(v *View) (*Member, error) {
	m := Find(v.Members, r.o.Member)
	if m == nil {
		names := make([]string, len(v.Members))
		for i, x := range v.Members {
			names[i] = x.Label()
		}
		return nil, fmt.Errorf("member %q is not in the member list (%s): give its name or hex id", r.o.Member, strings.Join(names, ", "))
	}
	return m, nil
}

// leaderMoved makes sure the member named by the member option does not
// lead: when it does, leadership goes to the member Transferee chooses,
// and the module waits until the cluster follows that one.
func (r *runner) leaderMoved(ctx context.Context) (modrun.Result, error) {
	v, err := r.view(ctx, true)
	if err != nil {
		return nil, err
	}
	res := r.result(v)
	res["moved_to"] = ""
	m, err := r.find(v)
	if err != nil {
		return res, err
	}
	res["member"] = r.memberStatus(m)
	if !m.IsLeader {
		lead := "no leader is known"
		if l := v.member(v.LeaderID); l != nil {
			lead = "the leader is " + l.Label()
		}
		res["msg"] = fmt.Sprintf("%s does not lead (%s): nothing to move", m.Label(), lead)
		return res, nil
	}
	to := Transferee(v.Members, m, r.o.Version)
	if to == nil {
		return res, fmt.Errorf("cannot move leadership away from %s: no other voting member is healthy", m.Label())
	}
	res["changed"], res["moved_to"] = true, to.Name
	if r.check {
		res["msg"] = fmt.Sprintf("would move leadership from %s to %s", m.Label(), to.Label())
		return res, nil
	}
	start := time.Now()
	if err := r.moveLeader(ctx, m, to); err != nil {
		res["changed"] = false
		return res, fmt.Errorf("move leadership from %s to %s: %w", m.Label(), to.Label(), err)
	}
	if v, err = r.view(ctx, true); err == nil {
		after := r.result(v)
		res["members"], res["leader_id"] = after["members"], after["leader_id"]
	}
	res["msg"] = fmt.Sprintf("moved leadership from %s to %s in %.1f s", m.Label(), to.Label(), time.Since(start).Seconds())
	return res, nil
}

// moveLeader asks the leader, at its own endpoint (only the leader hands
// leadership over), to make to the leader, then waits until a member other
// than from reports a leader other than from.
func (r *runner) moveLeader(ctx context.Context, from, to *Member) error {
	cli, err := etcdconn.New(r.o.Options, from.Endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, r.o.CommandTimeoutDuration())
	defer cancel()
	if _, err := cli.MoveLeader(cctx, to.ID); err != nil {
		return &etcdconn.Error{Op: "MoveLeader at " + from.Endpoint, Err: err}
	}
	wctx, wcancel := context.WithTimeout(ctx, r.o.WaitTimeoutDuration())
	defer wcancel()
	for {
		v, err := observe(wctx, r.o.Options)
		if err == nil && v.LeaderID != 0 && v.LeaderID != from.ID {
			if l := v.member(v.LeaderID); l != nil && l.Healthy {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("no leader other than %s within wait_timeout (%s)", from.Label(), r.o.WaitTimeoutDuration())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// healthy waits, for up to wait_timeout, until Readiness finds nothing
// missing; it changes nothing. In check mode the version is reported but
// not waited for: nothing was upgraded.
func (r *runner) healthy(ctx context.Context) (modrun.Result, error) {
	e := Expect{MaxLag: r.o.MaxLag, Version: r.o.Version}
	start := time.Now()
	deadline := start.Add(r.o.WaitTimeoutDuration())
	var missing []string
	var v *View
	for {
		var err error
		v, err = observe(ctx, r.o.Options)
		switch {
		case err != nil:
			missing = []string{err.Error()}
		case r.o.Member != "":
			var m *Member
			if m, err = r.find(v); err != nil {
				return r.result(v), err
			}
			e.Member = m
			fallthrough
		default:
			if r.check {
				e.Version = ""
			}
			missing = Readiness(v, e)
		}
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if v == nil {
		v = &View{}
	}
	res := r.result(v)
	waited := round(time.Since(start).Seconds())
	res["waited"] = waited
	versions := make([]string, 0, len(v.Members))
	for _, m := range v.Members {
		versions = append(versions, m.Name+" "+m.Version)
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("the cluster is not ready after %.0f s (wait_timeout): %s", waited, strings.Join(missing, "; "))
	}
	what := "every member is healthy and caught up"
	if r.o.Version != "" && r.check {
		what += " (check mode: the version is not waited for)"
	}
	res["msg"] = fmt.Sprintf("%s after %.1f s: %s; cluster version %s", what, waited, strings.Join(versions, ", "), v.ClusterVersion)
	return res, nil
}
