package maint

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MinBefore36 is the oldest 3.5 release from which etcd 3.6 may be
// reached: older 3.5 members can fail once 3.6 members join (kubespray
// #12634, etcd's 3.6 upgrade guide).
var MinBefore36 = Version{3, 5, 26}

// Upgrade kinds.
const (
	UpgradeNone  = "none"  // every member runs the target already
	UpgradePatch = "patch" // within one minor version
	UpgradeMinor = "minor" // to the next minor version
)

// UpgradePlan is an allowed upgrade.
type UpgradePlan struct {
	From Version // the version the members still to upgrade run
	To   Version
	Kind string // UpgradeNone, UpgradePatch or UpgradeMinor
	// Pending holds the indexes, into the versions PlanUpgrade was given,
	// of the members still to upgrade; they are all at From.
	Pending []int
	// Resumed: some members run the target already (an upgrade was
	// interrupted and goes on).
	Resumed bool
	// Steps say what to do, in order.
	Steps []string
}

// ErrUpgradeRefused is what every refusal of PlanUpgrade wraps.
var ErrUpgradeRefused = errors.New("upgrade refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUpgradeRefused, fmt.Sprintf(format, args...))
}

// PlanUpgrade decides whether a cluster whose members run the versions from
// (one per member) and whose cluster version is clusterVersion ("3.5.0", as
// /version reports it; empty when unknown) may be upgraded to target, one
// member at a time, and how. It refuses, saying which path to take
// instead: a downgrade, a major version change, skipping a minor version,
// 3.5 to 3.6 from below 3.5.26, and members at different versions, unless
// they are exactly mid-upgrade to target (some at target, the others at
// one version from which target may be reached).
func PlanUpgrade(from []string, clusterVersion, target string) (UpgradePlan, error) {
	to, err := ParseVersion(target)
	if err != nil {
		return UpgradePlan{}, fmt.Errorf("version: %w", err)
	}
	if len(from) == 0 {
		return UpgradePlan{}, errors.New("no member versions given")
	}
	vs := make([]Version, len(from))
	for i, s := range from {
		if vs[i], err = ParseVersion(s); err != nil {
			return UpgradePlan{}, fmt.Errorf("member %d: %w", i+1, err)
		}
	}
	p := UpgradePlan{To: to}
	var others []Version // the distinct versions other than the target
	atTarget := false
	for i, v := range vs {
		if v.Compare(to) == 0 {
			atTarget = true
			continue
		}
		p.Pending = append(p.Pending, i)
		if !slices.Contains(others, v) {
			others = append(others, v)
		}
	}
	slices.SortFunc(others, Version.Compare)
	p.Resumed = atTarget && len(others) > 0
	for _, v := range others {
		if v.Major != to.Major {
			return p, refuse("a member runs etcd %s and the target %s is another major version: etcd supports upgrades within "+
				"one major version only; migrate the data to a new cluster instead (snapshot and restore)", v, to)
		}
	}
	if len(others) > 0 && others[len(others)-1].Compare(to) > 0 {
		newest := others[len(others)-1]
		if newest.sameMinor(to) {
			return p, refuse("a member runs etcd %s, newer than the target %s: this is a downgrade, which the rolling upgrade "+
				"does not do; keep %s or upgrade to a newer %s release (patch releases of one minor version share the data "+
				"format, so an operator may put back the older binary member by member, at their own risk)",
				newest, to, newest, to.MinorString())
		}
		return p, refuse("a member runs etcd %s, newer than the target %s: this is a downgrade, which the rolling upgrade "+
			"does not do; keep %s, or follow etcd's downgrade procedure (etcdctl downgrade validate/enable %s, then the "+
			"binaries member by member), or restore a snapshot taken on %s", newest, to, newest, to.MinorString(), to.MinorString())
	}
	if len(others) > 1 {
		var list []string
		for _, v := range others {
			list = append(list, v.String())
		}
		return p, refuse("the members run different versions (%s%s): bring every member to one version first "+
			"(upgrade the older ones to %s), then to %s", strings.Join(list, ", "), alsoTarget(p.Resumed, to),
			others[len(others)-1], to)
	}
	if len(others) == 0 {
		p.From, p.Kind = to, UpgradeNone
		p.Steps = []string{fmt.Sprintf("nothing to do: every member runs etcd %s", to)}
		return p, checkClusterVersion(clusterVersion, to, to, true)
	}
	src := others[0]
	p.From = src
	if err := checkClusterVersion(clusterVersion, src, to, p.Resumed); err != nil {
		return p, err
	}
	switch {
	case src.sameMinor(to):
		p.Kind = UpgradePatch
	case src.Minor+1 < to.Minor:
		next := Version{src.Major, src.Minor + 1, 0}
		return p, refuse("etcd %s to %s skips minor version %s: etcd upgrades one minor version at a time; upgrade to the "+
			"latest %s first%s, then to %s", src, to, next.MinorString(), next.MinorString(), latestNote(next), to)
	default:
		p.Kind = UpgradeMinor
		if to.Major == 3 && to.Minor == 6 && src.Compare(MinBefore36) < 0 {
			return p, refuse("etcd %s to %s: 3.6 may only be reached from %s or later; upgrade to the latest 3.5 (%s or later) "+
				"first, then to %s", src, to, MinBefore36, MinBefore36, to)
		}
	}
	p.Steps = []string{
		"take a verified snapshot",
		fmt.Sprintf("upgrade one member at a time from %s to %s: followers first, the leader last, moving leadership away before it restarts", src, to),
		"after each member, wait until every member is healthy and caught up",
	}
	if p.Kind == UpgradeMinor {
		p.Steps = append(p.Steps, fmt.Sprintf("once every member runs %s, the cluster version becomes %s by itself", to, to.MinorString()))
	}
	if p.Kind == UpgradeMinor && to.Major == 3 && to.Minor == 6 {
		// etcd 3.6 panics on v2 requests in the raft log after the last
		// snapshot ("detected disallowed v2 WAL"); etcd 3.4's /health
		// wrote such requests (QGET), 3.5's does not.
		p.Steps = append(p.Steps, "etcd 3.6 does not start on a member whose raft log still holds etcd v2 requests since its last "+
			"snapshot (etcd 3.4's /health wrote them; see etcd's 3.5 to 3.6 upgrade guide): the run then stops at that member "+
			"with the others serving; let the 3.5 members snapshot first (--snapshot-count entries, or one restart with "+
			"--snapshot-count=1)")
	}
	return p, nil
}

// checkClusterVersion refuses a cluster version that does not fit an
// upgrade from src to to: only src's minor version (or, when every member
// runs to already or mid-upgrade, to's) is possible. Empty is unknown.
func checkClusterVersion(clusterVersion string, src, to Version, resumed bool) error {
	if clusterVersion == "" {
		return nil
	}
	cv, err := ParseVersion(clusterVersion)
	if err != nil {
		return fmt.Errorf("cluster version: %w", err)
	}
	switch {
	case cv.sameMinor(src), resumed && cv.sameMinor(to):
		return nil
	case cv.Compare(src) > 0:
		return refuse("the cluster version is %s, above the members' %s: a downgrade seems to be in progress; finish or cancel "+
			"it first (etcdctl downgrade cancel)", cv.MinorString(), src)
	default:
		return refuse("the cluster version is still %s although the members run %s: the last upgrade has not finished; "+
			"wait until every member is healthy and the cluster version is %s, then plan again", cv.MinorString(), src, src.MinorString())
	}
}

func alsoTarget(resumed bool, to Version) string {
	if resumed {
		return ", and the target " + to.String()
	}
	return ""
}

func latestNote(v Version) string {
	if v.Major == 3 && v.Minor == 5 {
		return fmt.Sprintf(" (%s or later, needed before 3.6)", MinBefore36)
	}
	return ""
}
