// Package member is the etcd_member Ansible module: it lists the members of
// an etcd cluster with the health of each, adds a member (as a learner by
// default), promotes a learner once it has caught up, and removes a member
// — each only when the cluster keeps a quorum of healthy voting members,
// one change at a time, and idempotently (decided from the member list by
// peer URL).
package member

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_member module: the shared
// connection options and the member options.
var ModuleSpec = modrun.Spec{
	Options: append(etcdconn.SpecOptions(),
		modrun.Option{Name: "state", Type: modrun.TypeStr, Choices: []string{"present", "absent", "info"}},
		modrun.Option{Name: "name", Type: modrun.TypeStr},
		modrun.Option{Name: "peer_urls", Type: modrun.TypeList, Elements: modrun.TypeStr},
		modrun.Option{Name: "id", Type: modrun.TypeStr},
		modrun.Option{Name: "learner", Type: modrun.TypeBool},
		modrun.Option{Name: "force", Type: modrun.TypeBool, Default: false},
		modrun.Option{Name: "wait_timeout", Type: modrun.TypeFloat, Default: 60},
	),
	MutuallyExclusive: [][]string{{"peer_urls", "id"}},
	RequiredTogether:  [][]string{etcdconn.SpecRequiredTogether},
	RequiredIf: []modrun.RequiredIf{
		{Key: "state", Value: "present", Requires: []string{"name", "peer_urls"}},
	},
}

type options struct {
	etcdconn.Options
	State       string   `json:"state"`
	Name        string   `json:"name"`
	PeerURLs    []string `json:"peer_urls"`
	ID          string   `json:"id"`
	Learner     *bool    `json:"learner"`
	Force       bool     `json:"force"`
	WaitTimeout float64  `json:"wait_timeout"`
}

// nameRE is what a member name may be: kubeasz's etcd1 or etcd-192.168.1.6.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// request validates the member options.
func (o options) request() (request, error) {
	if o.State == "" {
		// Omitted: a member described is to be present; nothing described
		// lists the cluster (`ansible etcd -m etcd_member`).
		switch {
		case o.Name != "" || len(o.PeerURLs) > 0 || o.Learner != nil:
			o.State = "present"
		case o.ID != "":
			return request{}, fmt.Errorf("id %q is only for state=absent: say state=absent to remove that member", o.ID)
		default:
			o.State = "info"
		}
	}
	r := request{state: o.State, name: o.Name, learner: o.Learner, force: o.Force}
	if o.Name != "" && !nameRE.MatchString(o.Name) {
		return r, fmt.Errorf("name %q: a member name is 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit (like etcd1 or etcd-192.168.1.6)", o.Name)
	}
	for _, u := range o.PeerURLs {
		if _, err := etcdconn.ParseURL(u); err != nil {
			return r, fmt.Errorf("peer_urls: %w", err)
		}
		if !contains(r.peerURLs, u) {
			r.peerURLs = append(r.peerURLs, u)
		}
	}
	if o.ID != "" {
		id, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(o.ID)), "0x"), 16, 64)
		if err != nil || id == 0 {
			return r, fmt.Errorf("id %q: a member id is hexadecimal, as etcdctl member list prints it (like 8e9e05c52164694d)", o.ID)
		}
		r.id = id
	}
	switch o.State {
	case "present":
		if o.Name == "" {
			return r, fmt.Errorf("state=present needs the member's name")
		}
		if len(r.peerURLs) == 0 {
			return r, fmt.Errorf("state=present needs the member's peer_urls")
		}
		if r.id != 0 {
			return r, fmt.Errorf("id is only for state=absent: etcd chooses a new member's id; identify it by peer_urls")
		}
	case "absent":
		if len(r.peerURLs) == 0 && r.id == 0 {
			return r, fmt.Errorf("state=absent needs the member's peer_urls or id")
		}
	}
	if o.WaitTimeout <= 0 {
		return r, fmt.Errorf("wait_timeout must be positive, got %v", o.WaitTimeout)
	}
	return r, nil
}

// RunModule runs the etcd_member module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	r, err := o.request()
	if err != nil {
		return nil, err
	}
	if err := discover.FillConn(ctx, &o.Options); err != nil {
		return nil, err
	}
	run := &runner{
		conn: o.Options, req: r, check: m.Meta.CheckMode, diff: m.Meta.Diff, warn: m.Warn,
		x: &executor{conn: o.Options, wait: time.Duration(o.WaitTimeout * float64(time.Second)), force: r.force, warn: m.Warn},
	}
	return run.run(ctx)
}

type runner struct {
	conn  etcdconn.Options
	req   request
	check bool
	diff  bool
	warn  func(format string, args ...any)
	x     *executor
}

// view observes the cluster. Before a change it gives a cluster that has
// no quorum at first sight (an election, a member that just restarted) a
// few seconds to settle.
func (r *runner) view(ctx context.Context, endpoints []string, settle bool) (*View, error) {
	settleFor := min(r.conn.CommandTimeoutDuration(), 10*time.Second)
	deadline := time.Now().Add(settleFor)
	for {
		v, err := observe(ctx, r.conn, endpoints)
		if err != nil || !settle || v.hasQuorum() || time.Now().After(deadline) {
			return v, err
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return v, nil
		}
	}
}

func (r *runner) run(ctx context.Context) (modrun.Result, error) {
	before, err := r.view(ctx, r.conn.Endpoints, r.req.state != "info")
	if err != nil {
		return nil, err
	}
	r.report(before)
	p, err := decide(before, r.req)
	for _, n := range p.notes {
		r.warn("%s", n)
	}
	res := r.result(before, before.Members, before.LeaderID, p.target)
	if err != nil {
		return res, err
	}
	if len(p.unsafe) > 0 {
		if !r.req.force {
			return res, fmt.Errorf("refused: %s. Nothing was changed (force: true skips these checks)",
				strings.Join(p.unsafe, "; "))
		}
		r.warn("force: going ahead although %s", strings.Join(p.unsafe, "; "))
	}
	if p.act == actNone {
		res["msg"] = r.noop(before, p)
		return res, nil
	}

	if r.check {
		members, leader := predict(before, p)
		res = r.result(before, members, leader, p.target)
		res["changed"] = true
		res["msg"] = "would " + r.what(p, 0, "")
		r.addDiff(res, before.Members, members)
		return res, nil
	}

	var id uint64
	var note string
	switch p.act {
	case actAdd:
		id, err = r.x.add(ctx, before, r.req.name, r.req.peerURLs, p.learner)
	case actPromote:
		id, err = p.target.ID, r.x.promote(ctx, before, p.target)
	case actRemove:
		id = p.target.ID
		note, err = r.x.remove(ctx, before, p.target)
	}
	if err != nil {
		return res, err
	}

	endpoints := r.conn.Endpoints
	if p.act == actRemove {
		endpoints = before.endpointsWithout(r.conn.Endpoints, id)
	}
	after, aerr := r.view(ctx, endpoints, false)
	if aerr != nil {
		r.warn("the change was made, but the cluster could not be read again: %s", aerr)
		members, leader := predict(before, p)
		after = &View{ClusterID: before.ClusterID, LeaderID: leader, Members: members}
	}
	if aerr == nil && !after.Stale {
		if err := verify(p, after, id); err != nil {
			res = r.result(after, after.Members, after.LeaderID, after.member(id))
			res["changed"] = true
			return res, err
		}
	}
	target := p.target
	if p.act == actAdd {
		target = &Member{ID: id, PeerURLs: r.req.peerURLs, IsLearner: p.learner}
	}
	res = r.result(after, after.Members, after.LeaderID, target)
	res["changed"] = true
	res["msg"] = r.what(p, id, note)
	r.addDiff(res, before.Members, after.Members)
	return res, nil
}

// verify checks in the member list read after a change that etcd made it:
// the list, not the answer to the request, has the last word.
func verify(p plan, after *View, id uint64) error {
	got := after.member(id)
	switch {
	case p.act == actAdd && got == nil:
		return fmt.Errorf("etcd accepted adding member %x, but the member list does not show it", id)
	case p.act == actPromote && (got == nil || got.IsLearner):
		return fmt.Errorf("etcd accepted promoting %s, but the member list does not show it as a voting member", p.target.label())
	case p.act == actRemove && got != nil:
		return fmt.Errorf("etcd accepted removing %s, but the member list still shows it", p.target.label())
	}
	return nil
}

// report warns about what the view shows wrong.
func (r *runner) report(v *View) {
	for i, u := range v.Unreachable {
		// A member's own URL is reported with the member.
		if !slices.ContainsFunc(v.Members, func(m *Member) bool { return contains(m.ClientURLs, v.unreachable[i]) }) {
			r.warn("endpoint did not answer: %s", u)
		}
	}
	for _, n := range v.Notes {
		r.warn("%s", n)
	}
	if v.Stale {
		r.warn("the member list was read without quorum, from one member's local copy: it may be out of date")
	}
	for _, m := range v.Members {
		if !m.Healthy && m.Started() {
			r.warn("%s is not healthy: %s", m.label(), m.Problem)
		}
	}
}

// what describes the change, done or (id 0) predicted.
func (r *runner) what(p plan, id uint64, note string) string {
	name := r.req.name
	if p.target != nil && p.target.Started() {
		name = p.target.Name
	}
	var s string
	switch p.act {
	case actAdd:
		kind := "a voting member"
		if p.learner {
			kind = "a learner"
		}
		if id != 0 {
			s = fmt.Sprintf("added %s (%x) as %s; start etcd on it with initial_cluster and --initial-cluster-state=existing", name, id, kind)
			if p.learner {
				s += ", then promote it (learner: false)"
			}
		} else {
			s = fmt.Sprintf("add %s as %s", name, kind)
		}
	case actPromote:
		s = fmt.Sprintf("promote %s to a voting member", p.target.label())
		if id != 0 {
			s = fmt.Sprintf("promoted %s to a voting member", p.target.label())
		}
	case actRemove:
		s = "remove " + p.target.label()
		if id != 0 {
			s = "removed " + p.target.label()
		}
		if note != "" {
			s += "; " + note
		}
	}
	return s
}

func (r *runner) noop(v *View, p plan) string {
	if r.req.state != "info" {
		return p.why
	}
	total, healthy, down := v.voters()
	s := fmt.Sprintf("%d members: %d voting (%d healthy), %d learners", len(v.Members), total, healthy, len(v.Members)-total)
	if l := v.member(v.LeaderID); l != nil {
		s += "; leader " + l.label()
	} else {
		s += "; no leader"
	}
	if len(down) > 0 {
		s += "; not healthy: " + labels(down)
	}
	return s
}

// MemberInfo is one member as the module returns it.
type MemberInfo struct {
	ID         string   `json:"id"` // hexadecimal, as etcdctl prints it; empty for a member check mode predicts
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	IsLearner  bool     `json:"is_learner"`
	IsLeader   bool     `json:"is_leader"`
	Healthy    bool     `json:"healthy"`
}

func info(m *Member) MemberInfo {
	mi := MemberInfo{Name: m.Name, PeerURLs: append([]string{}, m.PeerURLs...), ClientURLs: append([]string{}, m.ClientURLs...),
		IsLearner: m.IsLearner, IsLeader: m.IsLeader, Healthy: m.Healthy}
	if m.ID != 0 {
		mi.ID = fmt.Sprintf("%x", m.ID)
	}
	return mi
}

// result is what every run returns: the members, the cluster and leader
// ids, the member concerned (as members lists it, when it does) and the
// initial cluster it must start with.
func (r *runner) result(v *View, members []*Member, leader uint64, target *Member) modrun.Result {
	for _, m := range members {
		if target != nil && same(m, target) {
			target = m
		}
	}
	infos := make([]MemberInfo, 0, len(members))
	for _, m := range members {
		infos = append(infos, info(m))
	}
	res := modrun.Result{
		"members":    infos,
		"cluster_id": fmt.Sprintf("%x", v.ClusterID),
		"leader_id":  "",
		"member":     map[string]any{},
		"changed":    false,
	}
	if leader != 0 {
		res["leader_id"] = fmt.Sprintf("%x", leader)
	}
	name := r.req.name
	if target != nil {
		res["member"] = info(target)
		if r.req.state != "present" && target.Started() {
			name = target.Name
		}
	}
	if r.req.state == "present" {
		res["initial_cluster"] = initialCluster(members, target, name)
	} else {
		res["initial_cluster"] = initialCluster(members, nil, "")
	}
	return res
}

// addDiff puts the member lists before and after in the result, for --diff.
func (r *runner) addDiff(res modrun.Result, before, after []*Member) {
	if !r.diff {
		return
	}
	res["diff"] = map[string]any{
		"before_header": "etcd members", "after_header": "etcd members",
		"before": memberLines(before), "after": memberLines(after),
	}
}

// memberLines is the member list as text, one member a line, like
// etcdctl member list: id, state, name, peer URLs, client URLs, learner.
func memberLines(ms []*Member) string {
	var b strings.Builder
	for _, m := range ms {
		id, state := "(new)", "started"
		if m.ID != 0 {
			id = fmt.Sprintf("%x", m.ID)
		}
		if !m.Started() {
			state = "unstarted"
		}
		fmt.Fprintf(&b, "%s, %s, %s, %s, %s, %t\n", id, state, m.Name,
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner)
	}
	return b.String()
}
