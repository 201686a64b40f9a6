package member

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// retryEvery is the pause between two attempts of a refused change.
const retryEvery = 300 * time.Millisecond

// unhealthyGrace is how long an add refused as "unhealthy cluster" is
// retried while voting members are down: etcd's health window is 5 s.
const unhealthyGrace = 6 * time.Second

// executor makes the changes a plan calls for.
type executor struct {
	conn  etcdconn.Options
	wait  time.Duration // for a promotion, and for a new leader
	force bool
	warn  func(format string, args ...any)
}

// client connects to the endpoints through which v says a change can be
// sent, never to member skip.
func (x *executor) client(v *View, skip uint64) (*clientv3.Client, []string, error) {
	eps := v.callEndpoints(skip)
	if len(eps) == 0 {
		what := "no voting member answered at its client URLs"
		if m := v.member(skip); m != nil {
			what = "no voting member other than " + m.label() + " answered at its client URLs"
		}
		return nil, nil, fmt.Errorf("%s: there is nowhere to send the change (unreachable: %s)",
			what, strings.Join(v.Unreachable, "; "))
	}
	cli, err := etcdconn.New(x.conn, eps...)
	if err != nil {
		return nil, nil, err
	}
	return cli, eps, nil
}

// sleep waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// list reads the member list through cli with a fresh deadline (the
// caller's may be spent).
func (x *executor) list(ctx context.Context, cli *clientv3.Client) ([]*memberPB, error) {
	lctx, cancel := context.WithTimeout(ctx, x.conn.CommandTimeoutDuration())
	defer cancel()
	resp, err := cli.MemberList(lctx)
	if err != nil {
		return nil, err
	}
	return resp.Members, nil
}

// add adds a member with the peer URLs and returns its id. A refusal that
// may pass (a cluster that has just started, an election) is retried
// within command_timeout. After a failure the member list decides: the
// add may have been committed although the answer was lost.
func (x *executor) add(ctx context.Context, v *View, name string, peerURLs []string, learner bool) (uint64, error) {
	cli, _, err := x.client(v, 0)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, x.conn.CommandTimeoutDuration())
	defer cancel()
	// "unhealthy cluster" passes within 5 s of a (re)start; with voting
	// members down it lasts, so do not spend all of command_timeout on it.
	_, _, down := v.voters()
	unhealthyUntil := time.Now().Add(unhealthyGrace)
	var last error
	for {
		if len(down) > 0 && is(last, rpctypes.ErrGRPCUnhealthy) && time.Now().After(unhealthyUntil) {
			break
		}
		var resp *clientv3.MemberAddResponse
		if learner {
			resp, err = cli.MemberAddAsLearner(cctx, peerURLs)
		} else {
			resp, err = cli.MemberAdd(cctx, peerURLs)
		}
		if err == nil {
			return resp.Member.ID, nil
		}
		last = err
		if !transient(err) || !sleep(cctx, retryEvery) {
			break
		}
	}
	if ms, lerr := x.list(ctx, cli); lerr == nil {
		for _, m := range ms {
			if overlap(m.PeerURLs, peerURLs) {
				return m.ID, nil
			}
		}
	}
	return 0, explainAdd(last, v, name, learner)
}

// promote makes learner t a voting member, retrying while etcd says it has
// not caught up, for up to wait_timeout.
func (x *executor) promote(ctx context.Context, v *View, t *Member) error {
	cli, _, err := x.client(v, t.ID)
	if err != nil {
		return err
	}
	defer cli.Close()
	wctx, cancel := context.WithTimeout(ctx, x.wait)
	defer cancel()
	var last error
	for {
		actx, acancel := context.WithTimeout(wctx, x.conn.CommandTimeoutDuration())
		_, err := cli.MemberPromote(actx, t.ID)
		acancel()
		switch {
		case is(err, rpctypes.ErrGRPCLearnerNotReady), is(err, rpctypes.ErrGRPCMemberNotEnoughStarted), transient(err):
			last = err
		case err == nil, is(err, rpctypes.ErrGRPCMemberNotLearner):
			// Not a learner any more: an earlier attempt went through.
			return nil
		case is(err, rpctypes.ErrGRPCMemberNotFound):
			return fmt.Errorf("promote %s: it is no longer a member (removed meanwhile?)", t.label())
		case errors.Is(err, context.DeadlineExceeded) && wctx.Err() != nil:
			// wait_timeout is over; last says why.
		default:
			return &etcdconn.Error{Op: "promote " + t.label(), Err: err}
		}
		if !sleep(wctx, retryEvery) {
			break
		}
	}
	if ms, lerr := x.list(ctx, cli); lerr == nil {
		for _, m := range ms {
			if m.ID == t.ID && !m.IsLearner {
				return nil
			}
		}
	}
	if last == nil {
		last = context.DeadlineExceeded
	}
	return fmt.Errorf("%s was not promoted within wait_timeout (%s): %w; %s",
		t.label(), x.wait, &etcdconn.Error{Err: last}, x.progress(ctx, v, t))
}

// progress says how far learner t is behind the leader.
func (x *executor) progress(ctx context.Context, v *View, t *Member) string {
	now, err := observe(ctx, x.conn, v.endpointsWithout(x.conn.Endpoints, 0))
	if err != nil {
		return "its progress is unknown: " + err.Error()
	}
	m, leader := now.member(t.ID), now.member(now.LeaderID)
	switch {
	case m == nil:
		return "it is no longer a member"
	case !m.Started():
		return "it has not started: start etcd on it with --initial-cluster-state=existing and initial_cluster"
	case !m.Healthy:
		return "it is not healthy: " + m.Problem
	case leader == nil || leader.RaftIndex == 0:
		return fmt.Sprintf("its raft index is %d; the leader's is unknown", m.RaftIndex)
	}
	return fmt.Sprintf("its raft index is %d, the leader's %d (%.0f%%)", m.RaftIndex, leader.RaftIndex,
		100*float64(m.RaftIndex)/float64(leader.RaftIndex))
}

// remove removes member t through the other members. A leader first hands
// leadership to the most caught-up healthy voting member. It returns what
// happened to leadership, for the message.
func (x *executor) remove(ctx context.Context, v *View, t *Member) (string, error) {
	var note string
	if t.ID == v.LeaderID && !t.IsLearner {
		to := transferee(v, t.ID)
		switch {
		case to == nil:
			x.warn("%s leads and no other voting member is healthy: removing it without handing leadership over", t.label())
		case !t.Healthy || t.Endpoint == "":
			x.warn("%s leads but cannot be reached to hand leadership over: removing it directly; the cluster will elect a new leader", t.label())
		default:
			if err := x.moveLeader(ctx, v, t, to); err != nil {
				if !x.force {
					return "", fmt.Errorf("%s leads, and handing leadership to %s failed: %w; nothing was changed (force: true removes it anyway)",
						t.label(), to.label(), err)
				}
				x.warn("force: removing the leader %s although handing leadership to %s failed: %s", t.label(), to.label(), err)
			} else {
				note = "leadership moved to " + to.label() + " first"
			}
		}
	}

	cli, eps, err := x.client(v, t.ID)
	if err != nil {
		return note, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, x.conn.CommandTimeoutDuration())
	defer cancel()
	var last error
	for {
		_, err := cli.MemberRemove(cctx, t.ID)
		if err == nil || is(err, rpctypes.ErrGRPCMemberNotFound) {
			last = nil
			break
		}
		last = err
		if !transient(err) || !sleep(cctx, retryEvery) {
			break
		}
	}
	if last != nil {
		ms, lerr := x.list(ctx, cli)
		if lerr != nil || hasID(ms, t.ID) {
			return note, &etcdconn.Error{Op: "remove " + t.label(), Err: last}
		}
	}
	if _, err := x.waitLeader(ctx, eps, t.ID); err != nil {
		x.warn("%s was removed, but %s", t.label(), err)
	}
	return note, nil
}

func hasID(ms []*memberPB, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// moveLeader asks leader t (its own endpoint: only the leader can hand
// leadership over) to make to the leader, and waits until the others
// follow to.
func (x *executor) moveLeader(ctx context.Context, v *View, t, to *Member) error {
	cli, err := etcdconn.New(x.conn, t.Endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, x.conn.CommandTimeoutDuration())
	defer cancel()
	if _, err := cli.MoveLeader(cctx, to.ID); err != nil {
		return &etcdconn.Error{Err: err}
	}
	_, err = x.waitLeader(ctx, v.callEndpoints(t.ID), t.ID)
	return err
}

// waitLeader polls the endpoints until one of them reports a leader other
// than not, for up to wait_timeout.
func (x *executor) waitLeader(ctx context.Context, endpoints []string, not uint64) (uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, x.wait)
	defer cancel()
	for {
		for _, s := range etcdconn.ProbeAll(wctx, x.conn, endpoints) {
			if s.Healthy() && s.Status.Leader != 0 && s.Status.Leader != not {
				return s.Status.Leader, nil
			}
		}
		if !sleep(wctx, retryEvery/3) {
			return 0, fmt.Errorf("no new leader was seen within wait_timeout (%s) at %s", x.wait, strings.Join(endpoints, ", "))
		}
	}
}
