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
// server error target, one of rpctypes.ErrGRPC*. The texts are compared
// whole (a wrapped error ends with it): some are prefixes of others ("can
// only promote a learner member" and "… which is in sync with leader").
func is(err, target error) bool {
	if err == nil {
		return false
	}
	got, want := rpctypes.ErrorDesc(err), rpctypes.ErrorDesc(target)
	return strings.HasSuffix(got, want)
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

// explainAdd describes why etcd refused to add a member. "unhealthy
// cluster" while voting members are down has two causes by version: from
// 3.6.11 on, the voting members connected to the receiving member are not a
// quorum once the new member counts (learners included); before 3.6.11 (and
// in 3.5 without the backport), etcd wants every voting member connected,
// even for a learner (etcd #21640). Both name the members that are down.
func explainAdd(err error, v *View, name string, learner bool) error {
	total, healthy, down := v.voters()
	if is(err, rpctypes.ErrGRPCUnhealthy) && len(down) > 0 {
		kind := "a voting member"
		if learner {
			kind = "a learner"
		}
		ver, ok := parseVersion(v.Version)
		if ok && (ver[0] > 3 || ver[0] == 3 && (ver[1] > 6 || ver[1] == 6 && ver[2] >= 11)) {
			return fmt.Errorf("etcd %s refused to add %s as %s: the voting members it is connected to would not be a quorum "+
				"with the new member counted as down (%d of the %d voting members are healthy, %d of %d needed; down: %s). "+
				"Bring %s back, or remove %s first (state: absent) (%s)",
				v.Version, name, kind, healthy, total, quorum(total+1), total+1, labels(down), labels(down), them(down), rpctypes.ErrorDesc(err))
		}
		version := "etcd"
		if v.Version != "" {
			version += " " + v.Version
		}
		return fmt.Errorf("%s refused to add %s as %s because of the voting members down or disconnected (%s): "+
			"etcd before 3.6.11 (and 3.5 without the backport of the fix for etcd issue #21640) refuses any new member, "+
			"even a learner, while a voting member is disconnected. Bring %s back, or remove %s first (state: absent), or upgrade etcd (%s)",
			version, name, kind, labels(down), labels(down), them(down), rpctypes.ErrorDesc(err))
	}
	return fmt.Errorf("add %s: %s", name, describe(err))
}

func them(ms []*Member) string {
	if len(ms) == 1 {
		return "it"
	}
	return "them"
}
