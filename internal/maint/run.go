package maint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

// settleFor bounds the wait for every member to be healthy before a step.
func (r *runner) settleFor() time.Duration { return min(r.o.CommandTimeoutDuration(), 10*time.Second) }

// view observes the cluster; with settle, it gives a member that is not
// healthy at first sight (just defragmented, electing) a few seconds.
func (r *runner) view(ctx context.Context, settle bool) (*View, error) {
	deadline := time.Now().Add(r.settleFor())
	for {
		v, err := observe(ctx, r.o.Options)
		if err != nil || !settle || len(v.Unhealthy()) == 0 || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// settled observes the cluster after a compaction until, from the third
// observation on, every member's size in use is the same twice in a row
// (for at most settleFor). Each member compacts on its own, after the
// compaction is committed, and etcd counts the pages a compaction freed as
// free only after its backend has committed twice more, which a cluster
// nothing writes to never does: an entry that writes nothing, such as
// listing the alarms, commits nothing on etcd 3.6. So each observation
// first grants and revokes a lease, which writes etcd's lease bucket on
// every member and changes no key.
func (r *runner) settled(ctx context.Context, cli *clientv3.Client) (*View, error) {
	deadline := time.Now().Add(r.settleFor())
	r.nudge(ctx, cli)
	prev, err := r.view(ctx, true)
	for n := 1; err == nil && time.Now().Before(deadline); n++ {
		select {
		case <-ctx.Done():
			return prev, nil
		case <-time.After(250 * time.Millisecond):
		}
		r.nudge(ctx, cli)
		v, verr := r.view(ctx, true)
		if verr != nil {
			return nil, verr
		}
		if n >= 3 && sameUse(prev, v) {
			return v, nil
		}
		prev = v
	}
	return prev, err
}

// nudge makes every member's backend commit, by a lease granted and
// revoked. It is best effort: under a NOSPACE alarm etcd refuses the
// grant, and every member is then defragmented anyway.
func (r *runner) nudge(ctx context.Context, cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(ctx, r.o.CommandTimeoutDuration())
	defer cancel()
	if l, err := cli.Grant(ctx, 60); err == nil {
		cli.Revoke(ctx, l.ID)
	}
}

func sameUse(a, b *View) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i, m := range a.Members {
		if b.Members[i].ID != m.ID || b.Members[i].DBSizeInUse != m.DBSizeInUse {
			return false
		}
	}
	return true
}

// gate fails unless every member is healthy.
func gate(v *View, before string) error {
	bad := v.Unhealthy()
	if len(bad) == 0 {
		return nil
	}
	parts := make([]string, len(bad))
	for i, m := range bad {
		parts[i] = m.Label() + ": " + m.Problem
	}
	return fmt.Errorf("stopped before %s: not every member is healthy (%s); bring it back and run again", before, strings.Join(parts, "; "))
}

// MemberStatus is one member as the module returns it.
type MemberStatus struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	ClientURL   string   `json:"client_url"`
	IsLeader    bool     `json:"is_leader"`
	IsLearner   bool     `json:"is_learner"`
	Healthy     bool     `json:"healthy"`
	Problem     string   `json:"problem"`
	Version     string   `json:"version"`
	DBSize      int64    `json:"db_size"`
	DBSizeInUse int64    `json:"db_size_in_use"`
	FreeBytes   int64    `json:"free_bytes"`
	FreeShare   float64  `json:"free_share"`
	QuotaShare  float64  `json:"quota_share"`
	RaftIndex   uint64   `json:"raft_index"`
	RaftApplied uint64   `json:"raft_applied_index"`
	Revision    int64    `json:"revision"`
	Alarms      []string `json:"alarms"`
}

func round(x float64) float64 { return float64(int64(x*10000+0.5)) / 10000 }

func (r *runner) memberStatus(m *Member) MemberStatus {
	ep := m.Endpoint
	if ep == "" && len(m.ClientURLs) > 0 {
		ep = m.ClientURLs[0]
	}
	return MemberStatus{
		ID: fmt.Sprintf("%x", m.ID), Name: m.Name, ClientURL: ep, IsLeader: m.IsLeader, IsLearner: m.IsLearner,
		Healthy: m.Healthy, Problem: m.Problem, Version: m.Version,
		DBSize: m.DBSize, DBSizeInUse: m.DBSizeInUse, FreeBytes: m.FreeBytes(), FreeShare: round(m.FreeShare()),
		QuotaShare: round(float64(m.DBSize) / float64(r.o.QuotaBytes)),
		RaftIndex:  m.RaftIndex, RaftApplied: m.RaftApplied, Revision: m.Revision, Alarms: append([]string{}, m.Alarms...),
	}
}

// result is what every state returns about the cluster.
func (r *runner) result(v *View) modrun.Result {
	ms := make([]MemberStatus, 0, len(v.Members))
	for _, m := range v.Members {
		ms = append(ms, r.memberStatus(m))
	}
	res := modrun.Result{
		"changed": false, "members": ms, "cluster_id": fmt.Sprintf("%x", v.ClusterID), "leader_id": "",
		"cluster_version": v.ClusterVersion, "quota_bytes": r.o.QuotaBytes, "alarms": append([]string{}, v.Alarms...),
	}
	if v.LeaderID != 0 {
		res["leader_id"] = fmt.Sprintf("%x", v.LeaderID)
	}
	return res
}

func (r *runner) status(ctx context.Context) (modrun.Result, error) {
	v, err := r.view(ctx, false)
	if err != nil {
		return nil, err
	}
	res := r.result(v)
	var parts []string
	parts = append(parts, fmt.Sprintf("%d members", len(v.Members)))
	if l := v.member(v.LeaderID); l != nil {
		parts = append(parts, "leader "+l.Label())
	} else {
		parts = append(parts, "no leader")
	}
	if v.ClusterVersion != "" {
		parts = append(parts, "cluster version "+v.ClusterVersion)
	}
	for _, m := range v.Members {
		if !m.Healthy {
			parts = append(parts, "not healthy: "+m.Label()+": "+m.Problem)
			r.warn("%s is not healthy: %s", m.Label(), m.Problem)
		}
		if m.DBSize >= r.o.QuotaBytes*8/10 {
			r.warn("%s: its database (%d bytes) is at %.0f%% of quota_bytes %d", m.Label(), m.DBSize, 100*float64(m.DBSize)/float64(r.o.QuotaBytes), r.o.QuotaBytes)
		}
	}
	if len(v.Alarms) > 0 {
		parts = append(parts, "alarms: "+strings.Join(v.Alarms, ", "))
	}
	res["msg"] = strings.Join(parts, "; ")
	return res, nil
}

// Defragmented is one member's defragmentation as the module returns it.
type Defragmented struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	ClientURL         string  `json:"client_url"`
	Reason            string  `json:"reason"`
	WasLeader         bool    `json:"was_leader"`
	DBSizeBefore      int64   `json:"db_size_before"`
	DBSizeInUseBefore int64   `json:"db_size_in_use_before"`
	DBSizeAfter       int64   `json:"db_size_after"` // predicted in check mode: the size in use
	Seconds           float64 `json:"seconds"`
}

func (r *runner) defragment(ctx context.Context) (res modrun.Result, err error) {
	if r.o.Lock && !r.check {
		unlock, err := r.lock(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	v, err := r.view(ctx, true)
	if err != nil {
		return nil, err
	}
	res = r.result(v)
	done := []Defragmented{}
	res["defragmented"] = done
	res["compacted_revision"] = int64(0)
	res["disarmed"] = []string{}
	res["write_checked"] = false
	if err := gate(v, "defragmenting"); err != nil {
		return res, err
	}
	changed := false
	var compacted int64
	var notes []string
	cli, err := etcdconn.New(r.o.Options)
	if err != nil {
		return res, err
	}
	defer cli.Close()

	if r.o.Compact {
		rev, did, err := r.compact(ctx, cli, v)
		if err != nil {
			return res, err
		}
		if did {
			changed = true
			compacted = rev
			res["compacted_revision"] = rev
			if r.check {
				notes = append(notes, fmt.Sprintf("would compact to revision %d (the free shares below are before compaction)", rev))
			} else {
				notes = append(notes, fmt.Sprintf("compacted to revision %d", rev))
				if v, err = r.settled(ctx, cli); err != nil {
					return res, err
				}
			}
		}
	}

	thr := r.o.thresholds()
	plan, learners := PlanDefrag(v.Members, thr)
	for _, l := range learners {
		r.warn("%s is a learner (%s) and is not defragmented: etcd serves no defragment request on a learner; promote it first", l.Label(), l.Reason)
	}
	order := make([]string, len(plan))
	for i, m := range plan {
		order[i] = m.Name
	}
	res["order"] = order
	if r.check {
		for _, m := range plan {
			done = append(done, Defragmented{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, ClientURL: m.Endpoint, Reason: m.Reason,
				WasLeader: m.IsLeader, DBSizeBefore: m.DBSize, DBSizeInUseBefore: m.DBSizeInUse, DBSizeAfter: m.DBSizeInUse})
		}
		res["defragmented"] = done
		if len(plan) > 0 {
			changed = true
			notes = append(notes, "would defragment "+strings.Join(order, ", ")+" in this order")
		}
		if r.o.DisarmNospace && hasNoSpace(v) {
			changed = true
			notes = append(notes, "would disarm the NOSPACE alarms and check that a write works")
		}
		res["changed"] = changed
		res["msg"] = msg(notes, "nothing to defragment: no member is above the threshold")
		return res, nil
	}

	remaining := map[uint64]string{} // id → reason
	for _, m := range plan {
		remaining[m.ID] = m.Reason
	}
	fail := func(v *View, err error) (modrun.Result, error) {
		out := r.result(v)
		for k, x := range res {
			if _, ok := out[k]; !ok {
				out[k] = x
			}
		}
		out["defragmented"], out["changed"] = done, changed
		if len(done) > 0 {
			names := make([]string, len(done))
			for i, d := range done {
				names[i] = d.Name
			}
			err = fmt.Errorf("%w (already defragmented: %s)", err, strings.Join(names, ", "))
		}
		return out, err
	}
	for len(remaining) > 0 {
		var next *Member
		for _, m := range Order(v.Members) {
			if _, ok := remaining[m.ID]; ok {
				next = m
				break
			}
		}
		if next == nil { // removed meanwhile
			break
		}
		reason := remaining[next.ID]
		delete(remaining, next.ID)
		if err := gate(v, "defragmenting "+next.Label()); err != nil {
			return fail(v, err)
		}
		d := Defragmented{ID: fmt.Sprintf("%x", next.ID), Name: next.Name, ClientURL: next.Endpoint, Reason: reason,
			WasLeader: next.IsLeader, DBSizeBefore: next.DBSize, DBSizeInUseBefore: next.DBSizeInUse}
		start := time.Now()
		if err := r.defragOne(ctx, next); err != nil {
			return fail(v, err)
		}
		changed = true
		d.Seconds = round(time.Since(start).Seconds())
		if v, err = r.view(ctx, true); err != nil {
			return fail(&View{}, err)
		}
		if m := v.member(next.ID); m != nil {
			d.DBSizeAfter = m.DBSize
		}
		done = append(done, d)
	}
	if len(done) > 0 {
		var names []string
		for _, d := range done {
			names = append(names, fmt.Sprintf("%s (%d → %d bytes)", d.Name, d.DBSizeBefore, d.DBSizeAfter))
		}
		notes = append(notes, "defragmented "+strings.Join(names, ", "))
	}
	res = r.result(v)
	res["order"], res["defragmented"], res["disarmed"], res["write_checked"] = order, done, []string{}, false
	res["compacted_revision"] = compacted
	if r.o.DisarmNospace && hasNoSpace(v) {
		disarmed, err := r.disarm(ctx, cli, v)
		res["disarmed"] = disarmed
		if len(disarmed) > 0 {
			changed = true
		}
		if err != nil {
			res["changed"] = changed
			return res, err
		}
		res["write_checked"] = true
		if v, err = r.settled(ctx, cli); err != nil {
			res["changed"] = changed
			return res, err
		}
		after := r.result(v)
		res["members"], res["alarms"] = after["members"], after["alarms"]
		res["changed"] = changed
		if hasNoSpace(v) {
			return res, fmt.Errorf("disarmed NOSPACE on %s and a write worked, but the alarm is back (%s): the database is still "+
				"larger than that member's --quota-backend-bytes; delete data or raise the quota", strings.Join(disarmed, ", "),
				strings.Join(v.Alarms, ", "))
		}
		notes = append(notes, "disarmed NOSPACE on "+strings.Join(disarmed, ", ")+"; a write works again")
	}
	res["changed"] = changed
	res["msg"] = msg(notes, "nothing to defragment: no member is above the threshold")
	return res, nil
}

func msg(notes []string, none string) string {
	if len(notes) == 0 {
		return none
	}
	return strings.Join(notes, "; ")
}

func hasNoSpace(v *View) bool {
	for _, m := range v.Members {
		if m.HasAlarm("NOSPACE") {
			return true
		}
	}
	return false
}

// compact compacts the key space to the current revision, once for the
// cluster, waiting until the members have applied it. did is false when
// the revision was compacted already.
func (r *runner) compact(ctx context.Context, cli *clientv3.Client, v *View) (rev int64, did bool, err error) {
	for _, m := range v.Members {
		rev = max(rev, m.Revision)
	}
	if rev <= 1 {
		return rev, false, nil
	}
	if r.check {
		// Whether rev is compacted already cannot be asked without
		// compacting; a Get at rev-1 fails if it is.
		cctx, cancel := context.WithTimeout(ctx, r.o.CommandTimeoutDuration())
		defer cancel()
		_, err := cli.Get(cctx, ProbePrefix, clientv3.WithRev(rev-1), clientv3.WithCountOnly())
		if etcdconn.IsServerError(err, rpctypes.ErrGRPCCompacted) {
			return rev, false, nil
		}
		return rev, true, nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.DefragTimeoutDuration())
	defer cancel()
	_, err = cli.Compact(cctx, rev, clientv3.WithCompactPhysical())
	switch {
	case etcdconn.IsServerError(err, rpctypes.ErrGRPCCompacted):
		return rev, false, nil
	case err != nil:
		return rev, false, &etcdconn.Error{Op: fmt.Sprintf("compact to revision %d", rev), Err: err}
	}
	return rev, true, nil
}

// DefragTimeoutDuration is the time one member's defragmentation may take.
func (o options) DefragTimeoutDuration() time.Duration {
	return time.Duration(o.DefragTimeout * float64(time.Second))
}

// defragOne defragments member m, through a client of its own endpoint.
func (r *runner) defragOne(ctx context.Context, m *Member) error {
	cli, err := etcdconn.New(r.o.Options, m.Endpoint)
	if err != nil {
		return fmt.Errorf("defragment %s: %w", m.Label(), err)
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, r.o.DefragTimeoutDuration())
	defer cancel()
	if _, err := cli.Defragment(cctx, m.Endpoint); err != nil {
		return &etcdconn.Error{Op: "defragment " + m.Label() + " at " + m.Endpoint, Err: err}
	}
	return nil
}

// disarm disarms every NOSPACE alarm, then checks that a write works: it
// puts and deletes one key under ProbePrefix.
func (r *runner) disarm(ctx context.Context, cli *clientv3.Client, v *View) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.o.CommandTimeoutDuration())
	defer cancel()
	var disarmed []string
	for _, m := range v.Members {
		if !m.HasAlarm("NOSPACE") {
			continue
		}
		if _, err := cli.AlarmDisarm(cctx, &clientv3.AlarmMember{MemberID: m.ID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			return disarmed, &etcdconn.Error{Op: "disarm NOSPACE on " + m.Label(), Err: err}
		}
		disarmed = append(disarmed, m.Name)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	key := ProbePrefix + hex.EncodeToString(b)
	if _, err := cli.Put(cctx, key, "write check after disarming NOSPACE"); err != nil {
		if etcdconn.IsServerError(err, rpctypes.ErrGRPCNoSpace) {
			return disarmed, fmt.Errorf("the NOSPACE alarm was disarmed but a write raised it again: the database still exceeds "+
				"the members' --quota-backend-bytes after compaction and defragmentation; delete data or raise the quota (%w)", err)
		}
		return disarmed, &etcdconn.Error{Op: "write check (put " + key + ")", Err: err}
	}
	if _, err := cli.Delete(cctx, key); err != nil {
		return disarmed, &etcdconn.Error{Op: "write check (delete " + key + ")", Err: err}
	}
	return disarmed, nil
}

// UpgradeStep is one member in the order of a rolling upgrade.
type UpgradeStep struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ClientURL string `json:"client_url"`
	Version   string `json:"version"`
	IsLeader  bool   `json:"is_leader"`
	Upgrade   bool   `json:"upgrade"` // false: it runs the target already
}

func (r *runner) planUpgrade(ctx context.Context) (modrun.Result, error) {
	v, err := r.view(ctx, true)
	if err != nil {
		return nil, err
	}
	res := r.result(v)
	if err := gate(v, "planning the upgrade"); err != nil {
		return res, err
	}
	ordered := Order(v.Members)
	versions := make([]string, len(ordered))
	for i, m := range ordered {
		versions[i] = m.Version
	}
	p, err := PlanUpgrade(versions, v.ClusterVersion, r.o.Version)
	if err != nil {
		if errors.Is(err, ErrUpgradeRefused) {
			return res, fmt.Errorf("%w. Nothing was changed", err)
		}
		return res, err
	}
	pending := map[int]bool{}
	for _, i := range p.Pending {
		pending[i] = true
	}
	steps := make([]UpgradeStep, len(ordered))
	for i, m := range ordered {
		steps[i] = UpgradeStep{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, ClientURL: m.Endpoint, Version: m.Version,
			IsLeader: m.IsLeader, Upgrade: pending[i]}
	}
	res["upgrade_order"] = steps
	res["from_version"], res["to_version"], res["kind"] = p.From.String(), p.To.String(), p.Kind
	res["steps"] = p.Steps
	res["resumed"] = p.Resumed
	res["msg"] = strings.Join(p.Steps, "; ")
	return res, nil
}

// lock takes the etcd lock under LockKey (a key held by a lease of this
// run: it goes when the run ends or dies), waiting up to defrag_timeout
// for another holder, and returns what releases it.
func (r *runner) lock(ctx context.Context) (func(), error) {
	cli, err := etcdconn.New(r.o.Options)
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(30), concurrency.WithContext(ctx))
	if err != nil {
		cli.Close()
		return nil, &etcdconn.Error{Op: "take the lock " + LockKey + " (a lease)", Err: err}
	}
	mu := concurrency.NewMutex(s, LockKey)
	lctx, cancel := context.WithTimeout(ctx, r.o.DefragTimeoutDuration())
	defer cancel()
	if err := mu.Lock(lctx); err != nil {
		s.Close()
		cli.Close()
		return nil, &etcdconn.Error{Op: "take the lock " + LockKey + " (another defragmentation holds it)", Err: err}
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), r.o.CommandTimeoutDuration())
		defer cancel()
		_ = mu.Unlock(uctx) // the session's lease goes below in any case
		s.Close()
		cli.Close()
	}, nil
}
