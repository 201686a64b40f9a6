package member

import (
	"fmt"
	"strings"
)

// request is what the task asks for, validated.
type request struct {
	state    string // present, absent or info
	name     string
	peerURLs []string
	id       uint64
	learner  *bool // nil: not given
	force    bool
}

type action int

const (
	actNone action = iota
	actAdd
	actPromote
	actRemove
)

// plan is the change a request needs in a given view, and whether it is
// safe. Decided from the member list alone, never from error texts.
type plan struct {
	act action
	// target is the member concerned: an existing one, or for actAdd the
	// one to add (ID 0). Nil when the request names no member.
	target  *Member
	learner bool // actAdd: add as a learner
	// unsafe lists the safety checks the change fails; it is refused unless
	// force is given.
	unsafe []string
	notes  []string // warnings
	why    string   // actNone: why nothing is to be done
}

// quorum is the number of voting members that must agree in a cluster of n.
func quorum(n int) int { return n/2 + 1 }

func labels(ms []*Member) string {
	if len(ms) == 0 {
		return "none"
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.label()
	}
	return strings.Join(parts, ", ")
}

// quorumNow is the check every change needs: the healthy voting members
// form a quorum now, or etcd cannot commit anything.
func quorumNow(v *View) string {
	total, healthy, down := v.voters()
	if healthy >= quorum(total) {
		return ""
	}
	return fmt.Sprintf("the cluster has no quorum: %d of its %d voting members are healthy, %d are needed (down: %s)",
		healthy, total, quorum(total), labels(down))
}

// quorumAfter checks that after a change to total voting members of which
// healthy are healthy, the healthy ones still form a quorum.
func quorumAfter(change string, total, healthy int, down []*Member, hint string) string {
	if healthy >= quorum(total) {
		return ""
	}
	var downs string
	if len(down) > 0 {
		downs = " (down: " + labels(down) + ")"
	}
	return fmt.Sprintf("%s would leave %d healthy of %d voting members, fewer than the quorum of %d%s%s",
		change, healthy, total, quorum(total), downs, hint)
}

// decide works out what r needs in v. An error is a request that cannot be
// met at all (force does not help); unsafe changes are listed in the plan.
func decide(v *View, r request) (plan, error) {
	switch r.state {
	case "present":
		return decidePresent(v, r)
	case "absent":
		return decideAbsent(v, r)
	}
	return plan{target: find(v, r), why: "read only"}, nil
}

// find returns the member r names (by id, peer URL or name), if any.
func find(v *View, r request) *Member {
	if r.id != 0 {
		return v.member(r.id)
	}
	if len(r.peerURLs) > 0 {
		if ms := v.withPeerURLs(r.peerURLs); len(ms) > 0 {
			return ms[0]
		}
		return nil
	}
	return v.named(r.name)
}

func decidePresent(v *View, r request) (plan, error) {
	var p plan
	matches := v.withPeerURLs(r.peerURLs)
	if len(matches) > 1 {
		return p, fmt.Errorf("the peer URLs %s belong to different members (%s): give the peer URLs of one member",
			strings.Join(r.peerURLs, ", "), labels(matches))
	}
	total, healthy, down := v.voters()
	if len(matches) == 1 {
		t := matches[0]
		p.target = t
		if t.Started() && t.Name != r.name {
			return p, fmt.Errorf("peer URL %s belongs to member %s, not %q: remove that member first (state: absent), or use its name",
				strings.Join(r.peerURLs, ","), t.label(), r.name)
		}
		if !sameURLs(t.PeerURLs, r.peerURLs) {
			p.notes = append(p.notes, fmt.Sprintf("%s has the peer URLs %s, not %s; this module does not change a member's peer URLs",
				t.label(), strings.Join(t.PeerURLs, ","), strings.Join(r.peerURLs, ",")))
		}
		switch {
		case t.IsLearner && r.learner != nil && !*r.learner:
			p.act = actPromote
			if !t.Healthy {
				p.notes = append(p.notes, fmt.Sprintf("%s is not healthy yet (%s): the promotion waits up to wait_timeout for it to start and catch up",
					t.label(), t.Problem))
			}
			if s := quorumNow(v); s != "" {
				p.unsafe = append(p.unsafe, s)
			} else if s := quorumAfter("promoting "+t.label(), total+1, healthy+1, down,
				"; bring the down members back first"); s != "" {
				// Promotion happens only once the learner has caught up, so
				// it counts as healthy.
				p.unsafe = append(p.unsafe, s)
			}
		case t.IsLearner:
			p.why = t.label() + " is already a learner"
			if !t.Started() {
				p.why += ", added but not started: start etcd on it with initial_cluster"
			}
		default:
			p.why = t.label() + " is already a voting member"
			if !t.Started() {
				p.why += ", added but not started: start etcd on it with initial_cluster"
			}
			if r.learner != nil && *r.learner {
				p.notes = append(p.notes, t.label()+" is a voting member; etcd cannot turn a voting member back into a learner")
			}
		}
		return p, nil
	}

	if m := v.named(r.name); m != nil {
		return p, fmt.Errorf("a member named %q already exists with the peer URLs %s: remove it first (state: absent), or choose another name",
			r.name, strings.Join(m.PeerURLs, ","))
	}
	p.act = actAdd
	p.learner = r.learner == nil || *r.learner
	p.target = &Member{PeerURLs: append([]string{}, r.peerURLs...), IsLearner: p.learner}
	for _, m := range v.Members {
		switch {
		case !m.Started():
			p.unsafe = append(p.unsafe, fmt.Sprintf("%s was added but has not started: finish that change first "+
				"(start it, or remove it); etcd membership changes one member at a time", m.label()))
		case m.IsLearner:
			p.unsafe = append(p.unsafe, fmt.Sprintf("%s is still a learner: finish that change first "+
				"(promote it with learner: false, or remove it); etcd membership changes one member at a time", m.label()))
		}
	}
	if s := quorumNow(v); s != "" {
		p.unsafe = append(p.unsafe, s)
	} else if s := addQuorum(r.name, p.learner, total, healthy, down); s != "" {
		p.unsafe = append(p.unsafe, s)
	}
	return p, nil
}

// addQuorum checks an add. A voting member counts as down until it has
// started and caught up, so the healthy voting members must be a quorum of
// the cluster with it. etcd's own rule (--strict-reconfig-check, on by
// default) is the same for learners, except in a single-member cluster: the
// member that receives the add must have been connected for 5 s to a quorum
// of the voting members counted with the new one (3.6.11 and later; before,
// every voting member, etcd #21640). So a learner does not help a 3-member
// cluster with one member down: it takes no new member until that one is
// back or removed.
func addQuorum(name string, learner bool, total, healthy int, down []*Member) string {
	if healthy >= quorum(total+1) || learner && total == 1 && healthy == 1 {
		return ""
	}
	hint := "; bring the down members back, or remove them first (state: absent)"
	if len(down) == 0 {
		hint = "; add it as a learner (learner: true) and promote it once it has caught up"
	}
	if !learner {
		return quorumAfter(fmt.Sprintf("adding %s as a voting member", name), total+1, healthy, down, hint)
	}
	return fmt.Sprintf("etcd refuses to add a member, even a learner, unless its healthy voting members would be a quorum "+
		"with the new member counted as down: adding %s needs %d healthy of %d voting members, but only %d of the %d are healthy (down: %s)%s",
		name, quorum(total+1), total+1, healthy, total, labels(down), hint)
}

func decideAbsent(v *View, r request) (plan, error) {
	var p plan
	var t *Member
	if r.id != 0 {
		t = v.member(r.id)
		if t == nil {
			p.why = fmt.Sprintf("no member has the id %x: nothing to remove", r.id)
			return p, nil
		}
	} else {
		matches := v.withPeerURLs(r.peerURLs)
		if len(matches) > 1 {
			return p, fmt.Errorf("the peer URLs %s belong to different members (%s): remove them one at a time",
				strings.Join(r.peerURLs, ", "), labels(matches))
		}
		if len(matches) == 0 {
			p.why = fmt.Sprintf("no member has the peer URL %s: nothing to remove", strings.Join(r.peerURLs, ","))
			return p, nil
		}
		t = matches[0]
	}
	p.target = t
	if r.name != "" && t.Started() && t.Name != r.name {
		return p, fmt.Errorf("%s is not named %q: check name and peer_urls/id", t.label(), r.name)
	}
	total, healthy, down := v.voters()
	if !t.IsLearner && total == 1 {
		return p, fmt.Errorf("%s is the only voting member: a cluster cannot remove its last voting member", t.label())
	}
	p.act = actRemove
	if s := quorumNow(v); s != "" {
		p.unsafe = append(p.unsafe, s)
	} else if !t.IsLearner {
		after := healthy
		if t.Healthy {
			after--
		}
		var others []*Member
		for _, m := range down {
			if m != t {
				others = append(others, m)
			}
		}
		if s := quorumAfter("removing "+t.label(), total-1, after, others,
			"; bring the down members back, or remove a down member first"); s != "" {
			p.unsafe = append(p.unsafe, s)
		}
	}
	return p, nil
}

// transferee picks the voting member to hand leadership to before the
// leader skip is removed: a healthy one, the most caught up.
func transferee(v *View, skip uint64) *Member {
	var best *Member
	for _, m := range v.Members {
		if m.ID == skip || m.IsLearner || !m.Healthy || m.Endpoint == "" {
			continue
		}
		if best == nil || m.RaftIndex > best.RaftIndex {
			best = m
		}
	}
	return best
}

// same reports whether a and b are the same member: the same id, or the
// same new member (id 0, not yet added).
func same(a, b *Member) bool {
	return a == b || (a.ID != 0 && a.ID == b.ID)
}

// initialCluster is the --initial-cluster value a member must start with:
// name=peerURL for every peer URL of every member, in the order of the
// member list (by id), the target named name. A target not yet in the list
// (check mode) comes last.
func initialCluster(members []*Member, target *Member, name string) string {
	var parts []string
	seen := false
	for _, m := range members {
		n := m.Name
		if target != nil && same(m, target) {
			n, seen = name, true
		}
		if n == "" {
			// Only under force can another member be unstarted; its name is
			// not known yet, and any unique key will do for joining.
			n = fmt.Sprintf("%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	if target != nil && !seen {
		for _, u := range target.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// predict is the member list after p, for check mode.
func predict(v *View, p plan) (members []*Member, leader uint64) {
	leader = v.LeaderID
	for _, m := range v.Members {
		c := *m
		switch {
		case p.act == actRemove && same(m, p.target):
			continue
		case p.act == actPromote && same(m, p.target):
			c.IsLearner = false
		}
		members = append(members, &c)
	}
	switch p.act {
	case actAdd:
		members = append(members, p.target)
	case actRemove:
		if p.target.ID == leader {
			leader = 0
			if t := transferee(v, p.target.ID); t != nil {
				leader = t.ID
			}
		}
	}
	for _, m := range members {
		m.IsLeader = m.ID != 0 && m.ID == leader
	}
	return members, leader
}
