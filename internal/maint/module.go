// Package maint is the etcd_maintenance Ansible module: it reports each
// member's database size, free share, alarms and versions; defragments
// the members worth it one at a time, followers first and the leader last,
// only while every member is healthy, optionally after compacting and
// followed by disarming NOSPACE alarms; and plans a rolling upgrade,
// refusing the paths etcd does not support; and carries one out with two
// steps a playbook runs around each member's restart: moving leadership
// away from the member (leader_moved) and waiting until every member is
// healthy, caught up and at the expected version (healthy). The decisions
// (PlanUpgrade, Order, PlanDefrag, Transferee, Readiness) are pure
// functions apart from the I/O.
package maint

import (
	"context"
	"fmt"
	"math"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

// DefaultQuota is kubeasz's --quota-backend-bytes (8 GiB).
const DefaultQuota = 8589934592

// LockKey is the prefix of the etcd lock that defragmentations with
// lock=true (the scheduled ones, on every member) take turns through.
const LockKey = "/etcdops/lock/defragment"

// ProbePrefix is the key prefix under which the write check puts and
// deletes one key.
const ProbePrefix = "/etcdops/probe/"

// ModuleSpec declares the options of the etcd_maintenance module.
var ModuleSpec = modrun.Spec{
	Options: append(etcdconn.SpecOptions(),
		modrun.Option{Name: "state", Type: modrun.TypeStr, Default: "status", Choices: []string{"status", "defragmented", "upgrade_planned", "leader_moved", "healthy"}},
		modrun.Option{Name: "quota_bytes", Type: modrun.TypeInt, Default: DefaultQuota},
		modrun.Option{Name: "min_free_share", Type: modrun.TypeFloat, Default: 0.3},
		modrun.Option{Name: "min_free_bytes", Type: modrun.TypeInt},
		modrun.Option{Name: "force", Type: modrun.TypeBool, Default: false},
		modrun.Option{Name: "compact", Type: modrun.TypeBool, Default: false},
		modrun.Option{Name: "disarm_nospace", Type: modrun.TypeBool, Default: false},
		modrun.Option{Name: "defrag_timeout", Type: modrun.TypeFloat, Default: 600},
		modrun.Option{Name: "version", Type: modrun.TypeStr},
		modrun.Option{Name: "member", Type: modrun.TypeStr},
		modrun.Option{Name: "wait_timeout", Type: modrun.TypeFloat, Default: 120},
		modrun.Option{Name: "max_lag", Type: modrun.TypeInt, Default: DefaultMaxLag},
		modrun.Option{Name: "lock", Type: modrun.TypeBool, Default: false},
	),
	RequiredTogether: [][]string{etcdconn.SpecRequiredTogether},
	RequiredIf: []modrun.RequiredIf{
		{Key: "state", Value: "upgrade_planned", Requires: []string{"version"}},
		{Key: "state", Value: "leader_moved", Requires: []string{"member"}},
	},
}

type options struct {
	etcdconn.Options
	State         string  `json:"state"`
	QuotaBytes    int64   `json:"quota_bytes"`
	MinFreeShare  float64 `json:"min_free_share"`
	MinFreeBytes  *int64  `json:"min_free_bytes"`
	Force         bool    `json:"force"`
	Compact       bool    `json:"compact"`
	DisarmNospace bool    `json:"disarm_nospace"`
	DefragTimeout float64 `json:"defrag_timeout"`
	Version       string  `json:"version"`
	Member        string  `json:"member"`
	WaitTimeout   float64 `json:"wait_timeout"`
	MaxLag        int64   `json:"max_lag"`
	Lock          bool    `json:"lock"`
}

func (o options) validate() error {
	if o.QuotaBytes <= 0 {
		return fmt.Errorf("quota_bytes must be positive, got %d", o.QuotaBytes)
	}
	if o.MinFreeShare < 0 || o.MinFreeShare > 1 || math.IsNaN(o.MinFreeShare) {
		return fmt.Errorf("min_free_share is a share of the database, from 0 to 1; got %v", o.MinFreeShare)
	}
	if o.MinFreeBytes != nil && *o.MinFreeBytes <= 0 {
		return fmt.Errorf("min_free_bytes must be positive, got %d", *o.MinFreeBytes)
	}
	if o.DefragTimeout <= 0 {
		return fmt.Errorf("defrag_timeout must be positive, got %v", o.DefragTimeout)
	}
	if o.State != "defragmented" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"force", o.Force}, {"compact", o.Compact}, {"disarm_nospace", o.DisarmNospace}, {"lock", o.Lock}} {
			if f.set {
				return fmt.Errorf("%s is only for state=defragmented", f.name)
			}
		}
	}
	switch {
	case o.Version != "" && o.State != "upgrade_planned" && o.State != "leader_moved" && o.State != "healthy":
		return fmt.Errorf("version is only for state=upgrade_planned, leader_moved and healthy")
	case o.Member != "" && o.State != "leader_moved" && o.State != "healthy":
		return fmt.Errorf("member is only for state=leader_moved and healthy")
	case o.Member != "" && o.State == "healthy" && o.Version == "":
		return fmt.Errorf("member with state=healthy names the member that must run version: give version too")
	case o.WaitTimeout <= 0 || math.IsNaN(o.WaitTimeout):
		return fmt.Errorf("wait_timeout must be positive, got %v", o.WaitTimeout)
	case o.MaxLag < 0:
		return fmt.Errorf("max_lag must be 0 or more, got %d", o.MaxLag)
	}
	if o.Version != "" && o.State != "upgrade_planned" {
		if _, err := ParseVersion(o.Version); err != nil {
			return fmt.Errorf("version: %w", err)
		}
	}
	return nil
}

func (o options) thresholds() Thresholds {
	t := Thresholds{MinFreeShare: o.MinFreeShare, Force: o.Force, NoSpace: o.DisarmNospace}
	if o.MinFreeBytes != nil {
		t.MinFreeBytes = *o.MinFreeBytes
	}
	return t
}

// RunModule runs the etcd_maintenance module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := discover.FillConn(ctx, &o.Options); err != nil {
		return nil, err
	}
	r := &runner{o: o, check: m.Meta.CheckMode, warn: m.Warn}
	switch o.State {
	case "defragmented":
		return r.defragment(ctx)
	case "upgrade_planned":
		return r.planUpgrade(ctx)
	case "leader_moved":
		return r.leaderMoved(ctx)
	case "healthy":
		return r.healthy(ctx)
	}
	return r.status(ctx)
}

type runner struct {
	o     options
	check bool
	warn  func(format string, args ...any)
}
