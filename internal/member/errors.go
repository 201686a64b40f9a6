package member

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// is reports whether err is (or wraps, or carries the text of) the etcd
// server error target, one of rpctypes.ErrGRPC*.
func is(err, target error) bool {
	if err == nil {
		return false
	}
	return strings.Contains(rpctypes.ErrorDesc(err), rpctypes.ErrorDesc(target))
}

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

// describe turns an etcd error from a membership request into a sentence
// an operator can act on.
func describe(err error) string {
	switch {
	case err == nil:
		return ""
	case is(err, rpctypes.ErrGRPCPeerURLExist):
		return "etcd says the peer URL is already used by a member (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCMemberExist):
		return "etcd says the member already exists (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCMemberNotFound):
		return "etcd says there is no such member (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCMemberBadURLs):
		return "etcd refused the peer URLs as invalid (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCMemberNotLearner):
		return "the member is not a learner, so there is nothing to promote (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCLearnerNotReady):
		return "the learner has not caught up with the leader yet: etcd promotes a learner once it has " +
			"at least 90% of the leader's log (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCTooManyLearners):
		return "the cluster already has as many learners as etcd allows (--max-learners, 1 by default): " +
			"promote or remove the learner first (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCMemberNotEnoughStarted):
		return "etcd refused: too few members have started for the change to keep a quorum; start the added " +
			"members or remove them first (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCBadLeaderTransferee):
		return "etcd refused the new leader: it must be a voting member (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCNotSupportedForLearner):
		return "the request reached a learner, which serves only status and serializable reads (" + rpctypes.ErrorDesc(err) + ")"
	case is(err, rpctypes.ErrGRPCUnhealthy):
		return "etcd refused the change as unsafe for the cluster's health right now: a voting member is " +
			"disconnected from the leader, or (re)started less than 5 s ago (" + rpctypes.ErrorDesc(err) + ")"
	}
	return etcdconn.Describe(err)
}

// explainAdd describes why etcd refused to add a member. etcd before 3.6.11
// (and 3.5 before the backport) answers "unhealthy cluster" even to a
// learner add while any voting member is disconnected (etcd #21640); that
// case names the members that are down.
func explainAdd(err error, v *View, name string, learner bool) error {
	_, _, down := v.voters()
	if learner && is(err, rpctypes.ErrGRPCUnhealthy) && len(down) > 0 {
		return fmt.Errorf("etcd refused to add %s as a learner because voting member(s) %s are down or disconnected: "+
			"etcd before 3.6.11 (and 3.5 without the backport of etcd issue #21640) refuses even a learner while "+
			"any voting member is disconnected. Bring %s back, or remove it first (state: absent), or upgrade etcd (%s)",
			name, labels(down), labels(down), rpctypes.ErrorDesc(err))
	}
	return fmt.Errorf("add %s: %s", name, describe(err))
}
