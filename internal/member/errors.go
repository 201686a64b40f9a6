package member

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// is reports whether err is (or wraps) the etcd server error target, one
// of rpctypes.ErrGRPC*.
func is(err, target error) bool { return etcdconn.IsServerError(err, target) }

// transient reports whether a membership request that failed with err may
// succeed if sent again: the cluster is electing, has just (re)started, or
// a connection dropped.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	for _, e := range []error{rpctypes.ErrGRPCUnhealthy, rpctypes.ErrGRPCNoLeader, rpctypes.ErrGRPCLeaderChanged,
		rpctypes.ErrGRPCNotLeader, rpctypes.ErrGRPCTimeout, rpctypes.ErrGRPCTimeoutDueToLeaderFail,
		rpctypes.ErrGRPCTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutWaitAppliedIndex} {
		if is(err, e) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable
}

// explainAdd describes why etcd refused to add a member. "unhealthy
// cluster" while voting members are down has two causes by version: from
// 3.6.11 on, the voting members connected to the receiving member are not a
// quorum once the new member counts (learners included); before 3.6.11 (and
// in 3.5 without the backport), etcd wants every voting member connected,
// even for a learner (etcd #21640). Both name the members that are down.
func explainAdd(err error, v *View, name string, learner bool) error {
	total, healthy, down := v.voters()
	if ee, ok := etcdconn.ServerError(err); ok && is(err, rpctypes.ErrGRPCUnhealthy) && len(down) > 0 {
		err = ee // as the client returns it: the server's text alone
		kind := "a voting member"
		if learner {
			kind = "a learner"
		}
		ver, ok := parseVersion(v.Version)
		if ok && (ver[0] > 3 || ver[0] == 3 && (ver[1] > 6 || ver[1] == 6 && ver[2] >= 11)) {
			return fmt.Errorf("etcd %s refused to add %s as %s: the voting members it is connected to would not be a quorum "+
				"with the new member counted as down (%d of the %d voting members are healthy, %d of %d needed; down: %s). "+
				"Bring %s back, or remove %s first (state: absent) (%w)",
				v.Version, name, kind, healthy, total, quorum(total+1), total+1, labels(down), labels(down), them(down), err)
		}
		version := "etcd"
		if v.Version != "" {
			version += " " + v.Version
		}
		return fmt.Errorf("%s refused to add %s as %s because of the voting members down or disconnected (%s): "+
			"etcd before 3.6.11 (and 3.5 without the backport of the fix for etcd issue #21640) refuses any new member, "+
			"even a learner, while a voting member is disconnected. Bring %s back, or remove %s first (state: absent), or upgrade etcd (%w)",
			version, name, kind, labels(down), labels(down), them(down), err)
	}
	return &etcdconn.Error{Op: "add " + name, Err: err}
}

func them(ms []*Member) string {
	if len(ms) == 1 {
		return "it"
	}
	return "them"
}
