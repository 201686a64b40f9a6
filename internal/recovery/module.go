// Package recovery is the etcd_recovery Ansible module: it recovers a
// cluster that lost its quorum. state=inspected, run on each member, reads
// what the member's etcd says about itself (its Status, which etcd answers
// without a quorum, its own member list and whether a linearizable read
// answers), or its database file when etcd is stopped. state=planned, run
// once with every host's answer, decides (Decide, pure): refuse while a
// quorum answers, else which survivor to recover from, what the others'
// data would lose, and who joins again; after a recovery it names the
// hosts that are no longer members and join again. Neither state changes
// anything: the playbook acts on the plan.
package recovery

import (
	"context"
	"errors"
	"fmt"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_recovery module.
var ModuleSpec = modrun.Spec{Options: []modrun.Option{
	{Name: "state", Type: modrun.TypeStr, Default: "inspected", Choices: []string{"inspected", "planned"}},
	{Name: "unit", Type: modrun.TypeStr, Default: discover.DefaultUnit},
	{Name: "survivors", Type: modrun.TypeList, Elements: modrun.TypeDict},
	{Name: "unreachable", Type: modrun.TypeList, Elements: modrun.TypeStr},
	{Name: "recover_from", Type: modrun.TypeStr},
	{Name: "dial_timeout", Type: modrun.TypeFloat, Default: 5},
	{Name: "command_timeout", Type: modrun.TypeFloat, Default: 30},
}}

type options struct {
	State          string     `json:"state"`
	Unit           string     `json:"unit"`
	Survivors      []Survivor `json:"survivors"`
	Unreachable    []string   `json:"unreachable"`
	RecoverFrom    string     `json:"recover_from"`
	DialTimeout    float64    `json:"dial_timeout"`
	CommandTimeout float64    `json:"command_timeout"`
}

// RunModule runs etcd_recovery. Both states only read, so check mode is
// the same run.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if o.DialTimeout <= 0 || o.CommandTimeout <= 0 {
		return nil, fmt.Errorf("dial_timeout and command_timeout must be positive, got %v and %v", o.DialTimeout, o.CommandTimeout)
	}
	if o.State == "planned" {
		return runPlanned(o)
	}
	if len(o.Survivors) > 0 || len(o.Unreachable) > 0 || o.RecoverFrom != "" {
		return nil, errors.New("survivors, unreachable and recover_from are only for state=planned")
	}
	return runInspected(ctx, o)
}

func runInspected(ctx context.Context, o options) (modrun.Result, error) {
	mem, err := discover.Local(ctx, o.Unit)
	if err != nil {
		return nil, fmt.Errorf("find out how etcd runs here: %w", err)
	}
	co := mem.ConnOptions()
	co.DialTimeout, co.CommandTimeout = o.DialTimeout, o.CommandTimeout
	if len(co.Endpoints) == 0 {
		return nil, fmt.Errorf("%s has no client URL a client can dial", mem.Unit.Name)
	}
	s, err := Inspect(ctx, co, mem.Name, mem.DataDir)
	s.PeerURLs = mem.InitialAdvertisePeerURLs
	if err != nil {
		s.Error = err.Error()
	}
	msg := fmt.Sprintf("member %s: %s", mem.Name, describe(s))
	return modrun.Result{"changed": false, "survivor": s, "msg": msg}, nil
}

func describe(s Survivor) string {
	switch {
	case s.Source == "status" && s.Quorum:
		return fmt.Sprintf("runs, in a cluster with a quorum (applied index %d, revision %d)", s.AppliedIndex, s.Revision)
	case s.Source == "status":
		return fmt.Sprintf("runs without a quorum (applied index %d, revision %d)", s.AppliedIndex, s.Revision)
	case s.Source == "data":
		return fmt.Sprintf("etcd is stopped; its data applied index %d, revision %d", s.AppliedIndex, s.Revision)
	}
	return "no data: " + s.Error
}

func runPlanned(o options) (modrun.Result, error) {
	if len(o.Survivors) == 0 {
		return nil, fmt.Errorf("survivors: no host of the cluster answered (not reached: %v): nothing can be recovered", o.Unreachable)
	}
	for i, s := range o.Survivors {
		if s.Host == "" {
			return nil, fmt.Errorf("survivors[%d] has no host: give each survivor's inventory name as host", i)
		}
	}
	p, err := Decide(Request{Survivors: o.Survivors, Unreachable: o.Unreachable, RecoverFrom: o.RecoverFrom})
	res := modrun.Result{"changed": false, "plan": p, "msg": p.Summary}
	if err != nil {
		return res, err
	}
	return res, nil
}
