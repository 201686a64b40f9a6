package maint

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanUpgrade(t *testing.T) {
	tests := []struct {
		name    string
		from    []string
		cluster string
		target  string
		kind    string
		pending []int
		resumed bool
		refused string // substring of the refusal; "" allowed
		err     string // substring of an error that is no refusal
	}{
		{name: "patch", from: []string{"3.5.21", "3.5.21", "3.5.21"}, cluster: "3.5.0", target: "3.5.26",
			kind: UpgradePatch, pending: []int{0, 1, 2}},
		{name: "minor from 3.5.26", from: []string{"3.5.26", "3.5.26", "3.5.26"}, cluster: "3.5.0", target: "3.6.16",
			kind: UpgradeMinor, pending: []int{0, 1, 2}},
		{name: "minor 3.4 to 3.5", from: []string{"3.4.34", "3.4.34", "3.4.34"}, cluster: "3.4.0", target: "3.5.26",
			kind: UpgradeMinor, pending: []int{0, 1, 2}},
		{name: "v prefix, unknown cluster version", from: []string{"3.5.26"}, target: "v3.6.0", kind: UpgradeMinor, pending: []int{0}},
		{name: "nothing to do", from: []string{"3.6.16", "3.6.16"}, cluster: "3.6.0", target: "3.6.16", kind: UpgradeNone},
		{name: "mid minor upgrade", from: []string{"3.6.16", "3.5.26", "3.5.26"}, cluster: "3.5.0", target: "3.6.16",
			kind: UpgradeMinor, pending: []int{1, 2}, resumed: true},
		{name: "mid patch upgrade", from: []string{"3.5.21", "3.5.26", "3.5.21"}, cluster: "3.5.0", target: "3.5.26",
			kind: UpgradePatch, pending: []int{0, 2}, resumed: true},
		{name: "downgrade", from: []string{"3.6.16", "3.6.16"}, cluster: "3.6.0", target: "3.5.26", refused: "etcdctl downgrade validate/enable 3.5"},
		{name: "patch downgrade", from: []string{"3.5.26"}, cluster: "3.5.0", target: "3.5.21", refused: "downgrade, which the rolling upgrade does not do; keep 3.5.26 or upgrade to a newer 3.5 release"},
		{name: "skip a minor", from: []string{"3.4.34", "3.4.34"}, cluster: "3.4.0", target: "3.6.16",
			refused: "upgrade to the latest 3.5 first (3.5.26 or later, needed before 3.6), then to 3.6.16"},
		{name: "3.6 from below 3.5.26", from: []string{"3.5.21", "3.5.21"}, cluster: "3.5.0", target: "3.6.16",
			refused: "upgrade to the latest 3.5 (3.5.26 or later) first, then to 3.6.16"},
		{name: "mixed, not toward target", from: []string{"3.5.21", "3.5.26"}, cluster: "3.5.0", target: "3.6.16",
			refused: "different versions (3.5.21, 3.5.26): bring every member to one version first (upgrade the older ones to 3.5.26)"},
		{name: "mixed with target and two others", from: []string{"3.5.21", "3.5.26", "3.6.16"}, cluster: "3.5.0", target: "3.6.16",
			refused: "different versions (3.5.21, 3.5.26, and the target 3.6.16)"},
		{name: "mid upgrade toward another target", from: []string{"3.6.16", "3.5.26"}, cluster: "3.5.0", target: "3.6.10",
			refused: "downgrade"},
		{name: "major", from: []string{"3.6.16"}, cluster: "3.6.0", target: "4.0.0", refused: "another major version"},
		{name: "cluster version behind", from: []string{"3.5.26", "3.5.26"}, cluster: "3.4.0", target: "3.6.16",
			refused: "cluster version is still 3.4"},
		{name: "cluster version ahead", from: []string{"3.5.26", "3.5.26"}, cluster: "3.6.0", target: "3.6.16",
			refused: "downgrade seems to be in progress"},
		{name: "bad target", from: []string{"3.5.26"}, target: "3.6", err: `"3.6" is not an etcd release`},
		{name: "pre-release target", from: []string{"3.5.26"}, target: "3.6.0-rc.1", err: "not an etcd release"},
		{name: "unknown member version", from: []string{"3.5.26", ""}, target: "3.6.0", err: "member 2"},
		{name: "no members", target: "3.6.0", err: "no member versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PlanUpgrade(tt.from, tt.cluster, tt.target)
			switch {
			case tt.refused != "":
				if !errors.Is(err, ErrUpgradeRefused) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("err = %v, want a refusal containing %q", err, tt.refused)
				}
				return
			case tt.err != "":
				if err == nil || errors.Is(err, ErrUpgradeRefused) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want a non-refusal containing %q", err, tt.err)
				}
				return
			case err != nil:
				t.Fatalf("refused: %v", err)
			}
			if p.Kind != tt.kind || !slices.Equal(p.Pending, tt.pending) || p.Resumed != tt.resumed {
				t.Errorf("plan = kind %s pending %v resumed %v; want %s %v %v", p.Kind, p.Pending, p.Resumed, tt.kind, tt.pending, tt.resumed)
			}
			if p.To.String() != strings.TrimPrefix(tt.target, "v") || len(p.Steps) == 0 {
				t.Errorf("plan to %s with steps %q", p.To, p.Steps)
			}
		})
	}
}

// members builds members from "name:flags" with flags L (leader), l
// (learner); member i has id i+1 and the sizes given.
func members(specs ...string) []*Member {
	var out []*Member
	for i, s := range specs {
		name, flags, _ := strings.Cut(s, ":")
		out = append(out, &Member{ID: uint64(i + 1), Name: name, IsLeader: strings.Contains(flags, "L"),
			IsLearner: strings.Contains(flags, "l"), Healthy: true})
	}
	return out
}

func planned(ps []Planned) []*Member {
	var out []*Member
	for _, p := range ps {
		out = append(out, p.Member)
	}
	return out
}

func names(ms []*Member) string {
	var n []string
	for _, m := range ms {
		n = append(n, m.Name)
	}
	return strings.Join(n, ",")
}

func TestOrder(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		want  string
	}{
		{"leader first in list", []string{"etcd1:L", "etcd2", "etcd3"}, "etcd2,etcd3,etcd1"},
		{"leader in the middle", []string{"etcd3", "etcd2:L", "etcd1"}, "etcd1,etcd3,etcd2"},
		{"learner before voters", []string{"etcd1:L", "etcd4:l", "etcd2"}, "etcd4,etcd2,etcd1"},
		{"no leader", []string{"b", "a"}, "a,b"},
		{"one member", []string{"etcd1:L"}, "etcd1"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := members(tt.specs...)
			before := names(in)
			if got := names(Order(in)); got != tt.want {
				t.Errorf("Order = %s, want %s", got, tt.want)
			}
			if names(in) != before {
				t.Errorf("Order changed its argument")
			}
		})
	}
}

func TestPlanDefrag(t *testing.T) {
	const mib = 1 << 20
	sized := func(ms []*Member, sizes ...[2]int64) []*Member {
		for i, s := range sizes {
			ms[i].DBSize, ms[i].DBSizeInUse = s[0], s[1]
		}
		return ms
	}
	tests := []struct {
		name     string
		members  []*Member
		thr      Thresholds
		want     string
		learners string
	}{
		{"share threshold, leader last",
			sized(members("etcd1:L", "etcd2", "etcd3"), [2]int64{100 * mib, 40 * mib}, [2]int64{100 * mib, 80 * mib}, [2]int64{100 * mib, 10 * mib}),
			Thresholds{MinFreeShare: 0.3}, "etcd3,etcd1", ""},
		{"exactly at the share",
			sized(members("etcd1:L", "etcd2"), [2]int64{100 * mib, 70 * mib}, [2]int64{100 * mib, 71 * mib}),
			Thresholds{MinFreeShare: 0.3}, "etcd1", ""},
		{"a large share of a small database",
			sized(members("etcd1:L", "etcd2"), [2]int64{2 * mib, 6 * mib / 5}, [2]int64{48 << 10, 16 << 10}),
			Thresholds{MinFreeShare: 0.3}, "", ""},
		{"bytes threshold",
			sized(members("etcd1:L", "etcd2"), [2]int64{1000 * mib, 900 * mib}, [2]int64{10 * mib, 9 * mib}),
			Thresholds{MinFreeShare: 0.3, MinFreeBytes: 50 * mib}, "etcd1", ""},
		{"nothing above",
			sized(members("etcd1:L", "etcd2"), [2]int64{100 * mib, 90 * mib}, [2]int64{100 * mib, 95 * mib}),
			Thresholds{MinFreeShare: 0.3}, "", ""},
		{"force",
			sized(members("etcd1:L", "etcd2", "etcd3"), [2]int64{100, 100}, [2]int64{100, 100}, [2]int64{100, 100}),
			Thresholds{MinFreeShare: 0.3, Force: true}, "etcd2,etcd3,etcd1", ""},
		{"NOSPACE with disarm",
			func() []*Member {
				ms := sized(members("etcd1:L", "etcd2"), [2]int64{100, 100}, [2]int64{100, 100})
				ms[0].Alarms = []string{"NOSPACE"}
				return ms
			}(),
			Thresholds{MinFreeShare: 0.3, NoSpace: true}, "etcd2,etcd1", ""},
		{"NOSPACE without disarm",
			func() []*Member {
				ms := sized(members("etcd1:L", "etcd2"), [2]int64{100, 100}, [2]int64{100, 100})
				ms[0].Alarms = []string{"NOSPACE"}
				return ms
			}(),
			Thresholds{MinFreeShare: 0.3}, "", ""},
		{"a learner cannot be defragmented",
			sized(members("etcd1:L", "etcd4:l", "etcd2"), [2]int64{100, 100}, [2]int64{100, 100}, [2]int64{100, 100}),
			Thresholds{Force: true}, "etcd2,etcd1", "etcd4"},
		{"unknown size is not free",
			members("etcd1:L", "etcd2"), Thresholds{MinFreeShare: 0}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, learners := PlanDefrag(tt.members, tt.thr)
			if got := names(planned(plan)); got != tt.want {
				t.Errorf("PlanDefrag = %q, want %q", got, tt.want)
			}
			if got := names(planned(learners)); got != tt.learners {
				t.Errorf("PlanDefrag's learners = %q, want %q", got, tt.learners)
			}
		})
	}
}
