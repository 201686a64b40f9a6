package maint

import (
	"cmp"
	"fmt"
	"slices"
)

// Member is one etcd member with what its status and the alarm list say.
type Member struct {
	ID         uint64
	Name       string
	ClientURLs []string
	IsLearner  bool
	IsLeader   bool
	// Endpoint is the client URL at which the member answered; empty when
	// none did.
	Endpoint string
	// Healthy: it answered Status for this cluster, knows a leader and
	// reports no error other than a NOSPACE alarm (which defragmenting
	// resolves, and during which etcd serves reads and maintenance).
	Healthy bool
	Problem string // why not healthy

	Version     string // etcd server version, as Status reports it
	DBSize      int64  // bytes the database file takes
	DBSizeInUse int64  // bytes of it in use; the rest is free pages
	RaftIndex   uint64
	RaftApplied uint64
	Revision    int64
	Alarms      []string // NOSPACE, CORRUPT
}

// FreeBytes is the space defragmenting would give back.
func (m *Member) FreeBytes() int64 { return max(m.DBSize-m.DBSizeInUse, 0) }

// FreeShare is the share of the database file that is free, 0 to 1.
func (m *Member) FreeShare() float64 {
	if m.DBSize <= 0 {
		return 0
	}
	return float64(m.FreeBytes()) / float64(m.DBSize)
}

// HasAlarm reports whether the member has the alarm ("NOSPACE").
func (m *Member) HasAlarm(a string) bool { return slices.Contains(m.Alarms, a) }

// Label names the member in messages: "etcd1 (8e9e05c52164694d)".
func (m *Member) Label() string {
	name := m.Name
	if name == "" {
		name = "unstarted member"
	}
	return fmt.Sprintf("%s (%x)", name, m.ID)
}

// Order returns the members in the order of a rolling operation: learners,
// then voting followers, then the leader last; by name and then id within
// each group. The slice given is not changed.
func Order(members []*Member) []*Member {
	out := slices.Clone(members)
	rank := func(m *Member) int {
		switch {
		case m.IsLeader:
			return 2
		case m.IsLearner:
			return 0
		}
		return 1
	}
	slices.SortStableFunc(out, func(a, b *Member) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// MinFreeForShare is the least free space for which the free share counts:
// in a small database a few free pages are a large share, and
// defragmenting them gains nothing.
const MinFreeForShare = 1 << 20

// Thresholds say which members are worth defragmenting.
type Thresholds struct {
	MinFreeShare float64 // defragment when at least this share of the file is free
	MinFreeBytes int64   // or when at least this many bytes are free (0: not used)
	Force        bool    // defragment every member
	// NoSpace (disarm_nospace): while any member has a NOSPACE alarm,
	// defragment every member, as etcd's recovery procedure does: etcd
	// checks the quota against each member's file size, and the free
	// pages a compaction made are counted only after the member's backend
	// has committed writes again, which the alarm prevents.
	NoSpace bool
}

// reason says why m is to be defragmented, or "" when it is not; noSpace:
// the cluster has a NOSPACE alarm.
func (t Thresholds) reason(m *Member, noSpace bool) string {
	switch {
	case t.Force:
		return "forced"
	case m.FreeBytes() >= MinFreeForShare && m.FreeShare() >= t.MinFreeShare:
		return fmt.Sprintf("free share %.2f ≥ %.2f", m.FreeShare(), t.MinFreeShare)
	case t.MinFreeBytes > 0 && m.FreeBytes() >= t.MinFreeBytes:
		return fmt.Sprintf("%d free bytes ≥ %d", m.FreeBytes(), t.MinFreeBytes)
	case t.NoSpace && noSpace:
		return "NOSPACE alarm in the cluster"
	}
	return ""
}

// Planned is a member to defragment and why.
type Planned struct {
	*Member
	Reason string
}

// PlanDefrag returns the members to defragment, in Order, each with its
// reason, and the learners that would be defragmented but cannot be: etcd
// serves no defragment request on a learner.
func PlanDefrag(members []*Member, t Thresholds) (plan, learners []Planned) {
	noSpace := slices.ContainsFunc(members, func(m *Member) bool { return m.HasAlarm("NOSPACE") })
	for _, m := range Order(members) {
		r := t.reason(m, noSpace)
		switch {
		case r == "":
		case m.IsLearner:
			learners = append(learners, Planned{m, r})
		default:
			plan = append(plan, Planned{m, r})
		}
	}
	return plan, learners
}
