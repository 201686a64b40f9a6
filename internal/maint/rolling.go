package maint

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DefaultMaxLag is how many raft entries a member may have applied fewer
// than the leader has committed and still count as caught up.
const DefaultMaxLag = 100

// Find returns the member that ref names: its hex id (as etcdctl prints
// it) or its name; nil when none does.
func Find(members []*Member, ref string) *Member {
	ref = strings.TrimSpace(ref)
	if id, err := strconv.ParseUint(ref, 16, 64); err == nil {
		for _, m := range members {
			if m.ID == id {
				return m
			}
		}
	}
	for _, m := range members {
		if m.Name == ref && ref != "" {
			return m
		}
	}
	return nil
}

// Transferee chooses the member to hand leadership to from leader: a
// healthy voting member other than it; those running prefer (the target
// of an upgrade, when not empty) first, then the one that has applied the
// most, then by Order. nil when there is none.
func Transferee(members []*Member, leader *Member, prefer string) *Member {
	var cands []*Member
	for _, m := range Order(members) {
		if m.ID != leader.ID && m.Healthy && !m.IsLearner {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	runsPreferred := func(m *Member) int {
		if prefer != "" && sameVersion(m.Version, prefer) {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(cands, func(a, b *Member) int {
		return cmp.Or(cmp.Compare(runsPreferred(a), runsPreferred(b)), cmp.Compare(b.RaftApplied, a.RaftApplied))
	})
	return cands[0]
}

func sameVersion(a, b string) bool {
	va, err1 := ParseVersion(a)
	vb, err2 := ParseVersion(b)
	return err1 == nil && err2 == nil && va.Compare(vb) == 0
}

// Expect is what state=healthy waits for besides every member being
// healthy and caught up.
type Expect struct {
	MaxLag int64 // see DefaultMaxLag
	// Version, when set: with Member, that member runs it; without, every
	// member runs it and the cluster version is its minor version.
	Version string
	Member  *Member
}

// Readiness lists what still keeps the cluster v from being ready as e
// asks, one sentence each; none when it is ready. A member caught up has
// applied at least the leader's committed index minus e.MaxLag (etcd 3.4
// reports the applied index too; 0 is taken as unknown and the member's
// own committed index stands for it).
func Readiness(v *View, e Expect) []string {
	var out []string
	for _, m := range v.Unhealthy() {
		out = append(out, m.Label()+" is not healthy: "+m.Problem)
	}
	leader := v.member(v.LeaderID)
	switch {
	case leader == nil:
		out = append(out, "no leader is known")
	case leader.Healthy:
		for _, m := range v.Members {
			if !m.Healthy || m.ID == leader.ID {
				continue
			}
			applied := m.RaftApplied
			if applied == 0 {
				applied = m.RaftIndex
			}
			if lag := int64(leader.RaftIndex) - int64(applied); lag > e.MaxLag {
				out = append(out, fmt.Sprintf("%s has applied raft index %d, %d behind the leader's %d (max_lag %d)",
					m.Label(), applied, lag, leader.RaftIndex, e.MaxLag))
			}
		}
	}
	if e.Version == "" {
		return out
	}
	want, err := ParseVersion(e.Version)
	if err != nil {
		return append(out, err.Error())
	}
	if e.Member != nil {
		if m := v.member(e.Member.ID); m == nil {
			out = append(out, e.Member.Label()+" is no longer a member")
		} else if m.Healthy && !sameVersion(m.Version, e.Version) {
			out = append(out, fmt.Sprintf("%s runs etcd %s, not %s", m.Label(), m.Version, want))
		}
		return out
	}
	for _, m := range v.Members {
		if m.Healthy && !sameVersion(m.Version, e.Version) {
			out = append(out, fmt.Sprintf("%s runs etcd %s, not %s", m.Label(), m.Version, want))
		}
	}
	cv, err := ParseVersion(v.ClusterVersion)
	if err != nil || !cv.sameMinor(want) {
		shown := v.ClusterVersion
		if shown == "" {
			shown = "unknown"
		}
		out = append(out, fmt.Sprintf("the cluster version is %s, not yet %s", shown, want.MinorString()))
	}
	return out
}
