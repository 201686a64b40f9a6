package recovery

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Actions a Plan can name.
const (
	// ActionNone: a quorum answers and every host reached is a member.
	ActionNone = "none"
	// ActionRecover: no quorum answers; Chosen restarts as a one-member
	// cluster and Rejoin join it again, one at a time.
	ActionRecover = "recover"
	// ActionRejoin: a quorum answers, and hosts that are no longer its
	// members (moved aside by an earlier recovery, or powered on since
	// with their old data) join it again, through Chosen.
	ActionRejoin = "rejoin"
)

// Request is what the planner is given: every reachable host's Survivor,
// the hosts that could not be reached, and the host the operator names
// to recover from ("" lets the planner choose).
type Request struct {
	Survivors   []Survivor
	Unreachable []string
	RecoverFrom string
}

// Plan says what the recovery does. Chosen is the member recovered from
// (recover) or reached the cluster through (rejoin).
type Plan struct {
	Action  string   `json:"action"`
	Chosen  string   `json:"chosen"`
	Rejoin  []string `json:"rejoin"`
	LeftOut []string `json:"left_out"`
	// Stopped are members of the cluster whose etcd does not run: they
	// are neither recovered from nor moved aside.
	Stopped   []string `json:"stopped"`
	Losses    []Loss   `json:"losses"`
	Voting    int      `json:"voting"`
	Answering int      `json:"answering"`
	Needed    int      `json:"needed"`
	Endpoints []string `json:"endpoints"`
	Summary   string   `json:"summary"`
	// Report is the plan in lines for the operator: the summary, then
	// one line per other survivor with its revision and index.
	Report []string `json:"report"`
}

// Loss compares a survivor with the member recovered from: what its data
// has that the chosen member's lacks is lost when it is moved aside.
type Loss struct {
	Host         string `json:"host"`
	Name         string `json:"name"`
	Revision     int64  `json:"revision"`
	AppliedIndex uint64 `json:"applied_index"`
	// RevisionsAhead > 0: this survivor has that many revisions the
	// chosen member lacks, and they are lost.
	RevisionsAhead int64  `json:"revisions_ahead"`
	Note           string `json:"note"`
}

// ErrQuorum is returned (wrapped) when a quorum answers and nothing is to
// be done: recovery is refused.
var ErrQuorum = errors.New("a quorum answers")

// Decide makes the plan. It is pure: every fact comes in the Request.
func Decide(r Request) (Plan, error) {
	p, err := decide(r)
	p.Report = append([]string{p.Summary}, lossLines(p.Losses)...)
	// Lists are never null for the playbook: empty is [].
	for _, l := range []*[]string{&p.Rejoin, &p.LeftOut, &p.Stopped, &p.Endpoints} {
		if *l == nil {
			*l = []string{}
		}
	}
	if p.Losses == nil {
		p.Losses = []Loss{}
	}
	return p, err
}

func lossLines(ls []Loss) []string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s (%s): revision %d, applied index %d: %s", l.Host, l.Name, l.Revision, l.AppliedIndex, l.Note))
	}
	return out
}

func decide(r Request) (Plan, error) {
	ss := slices.Clone(r.Survivors)
	slices.SortFunc(ss, func(a, b Survivor) int { return cmp.Compare(a.Host, b.Host) })
	p := Plan{LeftOut: slices.Sorted(slices.Values(r.Unreachable))}

	removed := removedHosts(ss)
	var current []Survivor
	clusters := map[string]bool{}
	for _, s := range ss {
		if removed[s.Host] {
			continue
		}
		current = append(current, s)
		if s.ClusterID != "" {
			clusters[s.ClusterID] = true
		}
	}
	if len(clusters) > 1 {
		var desc []string
		for _, s := range current {
			if s.ClusterID != "" {
				desc = append(desc, fmt.Sprintf("%s: cluster %s", s.Host, s.ClusterID))
			}
		}
		return p, fmt.Errorf("the hosts answer for different clusters (%s): nothing was changed; stop etcd on the hosts that are not of the cluster to keep", strings.Join(desc, ", "))
	}

	view := memberView(current)
	for _, m := range view {
		if !m.IsLearner {
			p.Voting++
		}
	}
	quorum := false
	for _, s := range current {
		if s.Running && s.MemberID != "" && votingIn(view, s.MemberID) {
			p.Answering++
		}
		quorum = quorum || s.Quorum
	}
	p.Needed = p.Voting/2 + 1
	if quorum || (p.Voting > 0 && p.Answering >= p.Needed) {
		return planWithQuorum(p, ss, current, view, quorum)
	}
	return planRecovery(p, ss, current, r.RecoverFrom)
}

// removedHosts are the survivors that a member they still list has removed
// from its own list: members an earlier recovery left out, running again
// with their old data (etcd keeps the member ID through --force-new-cluster).
func removedHosts(ss []Survivor) map[string]bool {
	out := map[string]bool{}
	for _, s := range ss {
		if s.MemberID == "" || s.Members == nil {
			continue
		}
		for _, g := range ss {
			if g.Host == s.Host || g.MemberID == "" || g.MemberID == s.MemberID || g.Members == nil {
				continue
			}
			if hasID(s.Members, g.MemberID) && !hasID(g.Members, s.MemberID) {
				out[s.Host] = true
			}
		}
	}
	return out
}

// memberView is the member list of the cluster: as a member that answered
// a quorum read lists it, else as the first running member lists it.
func memberView(current []Survivor) []MemberInfo {
	for _, s := range current {
		if s.Quorum && s.Members != nil {
			return s.Members
		}
	}
	for _, s := range current {
		if s.Members != nil {
			return s.Members
		}
	}
	return nil
}

func hasID(ms []MemberInfo, id string) bool {
	return slices.ContainsFunc(ms, func(m MemberInfo) bool { return m.ID == id })
}

func votingIn(ms []MemberInfo, id string) bool {
	return slices.ContainsFunc(ms, func(m MemberInfo) bool { return m.ID == id && !m.IsLearner })
}

// inView: the survivor is a member of the cluster the view lists: by its
// member ID when it answered, else by its name or peer URL.
func inView(view []MemberInfo, s Survivor) bool {
	if s.MemberID != "" {
		return hasID(view, s.MemberID)
	}
	return slices.ContainsFunc(view, func(m MemberInfo) bool {
		return (m.Name != "" && m.Name == s.Name) || slices.ContainsFunc(s.PeerURLs, func(u string) bool { return slices.Contains(m.PeerURLs, u) })
	})
}

func planWithQuorum(p Plan, ss, current []Survivor, view []MemberInfo, quorum bool) (Plan, error) {
	if !quorum {
		return p, fmt.Errorf("%w, or is electing a leader: %d of %d voting members run (a quorum is %d) but none served a read; nothing was changed: wait, and run this again if it persists", ErrQuorum, p.Answering, p.Voting, p.Needed)
	}
	for _, s := range current {
		if s.Quorum && (p.Chosen == "" || s.MemberID == s.LeaderID) {
			p.Chosen = s.Host
		}
	}
	for _, s := range ss {
		switch {
		case !inView(view, s):
			p.Rejoin = append(p.Rejoin, s.Host)
		case !s.Running:
			p.Stopped = append(p.Stopped, s.Host)
		}
	}
	p.Endpoints = endpointsOf(view)
	if len(p.Rejoin) == 0 {
		p.Action = ActionNone
		msg := fmt.Sprintf("%d of %d voting members answer (a quorum is %d) and every host reached is a member: there is nothing to recover, nothing was changed", p.Answering, p.Voting, p.Needed)
		if len(p.Stopped) > 0 {
			msg += fmt.Sprintf("; etcd does not run on %s: start it there", strings.Join(p.Stopped, ", "))
		}
		if len(p.LeftOut) > 0 {
			msg += fmt.Sprintf("; not reached or without etcd: %s", strings.Join(p.LeftOut, ", "))
		}
		p.Summary = ErrQuorum.Error() + ": " + msg
		return p, fmt.Errorf("%w: %s", ErrQuorum, msg)
	}
	p.Action = ActionRejoin
	for _, s := range ss {
		if slices.Contains(p.Rejoin, s.Host) {
			p.Losses = append(p.Losses, loss(s, Survivor{Revision: maxRevision(current)}, "not a member of the cluster any more: its data is moved aside and it joins again"))
		}
	}
	p.Summary = fmt.Sprintf("a quorum answers (%d of %d voting members, through %s); %s are not its members and join it again, one at a time, as learners%s",
		p.Answering, p.Voting, p.Chosen, strings.Join(p.Rejoin, ", "), leftOutNote(p.LeftOut))
	return p, nil
}

func planRecovery(p Plan, ss, current []Survivor, from string) (Plan, error) {
	var chosen *Survivor
	if from != "" {
		i := slices.IndexFunc(current, func(s Survivor) bool { return s.Host == from || s.Name == from })
		if i < 0 || !current[i].HasData() {
			return p, fmt.Errorf("recover_from %q is not a reachable survivor whose data could be read (survivors: %s): nothing was changed", from, hostsWithData(current))
		}
		chosen = &current[i]
	} else {
		for i, s := range current {
			if !s.HasData() || s.IsLearner {
				continue
			}
			if chosen == nil || ahead(s, *chosen) {
				chosen = &current[i]
			}
		}
	}
	if chosen == nil {
		return p, fmt.Errorf("no quorum answers and no reachable host has etcd data to recover from (reached: %s; not reached: %s): nothing was changed",
			hostsOf(ss), strings.Join(p.LeftOut, ", "))
	}
	p.Action, p.Chosen = ActionRecover, chosen.Host
	for _, s := range ss {
		if s.Host == chosen.Host {
			continue
		}
		p.Rejoin = append(p.Rejoin, s.Host)
		note := "its data is moved aside and it joins again"
		if !s.HasData() {
			note = "no data could be read: " + s.Error
		}
		p.Losses = append(p.Losses, loss(s, *chosen, note))
	}
	p.Summary = fmt.Sprintf("no quorum: %d of %d voting members answer (a quorum is %d); recovering from %s (%s, applied index %d, revision %d)%s; then %s join again%s",
		p.Answering, p.Voting, p.Needed, chosen.Host, chosen.Name, chosen.AppliedIndex, chosen.Revision, chosenWhy(from),
		orNone(p.Rejoin), leftOutNote(p.LeftOut))
	return p, nil
}

// ahead: a has applied more than b (then committed more, then a newer
// revision); ties go to a running member, then to the first host.
func ahead(a, b Survivor) bool {
	if c := cmp.Or(cmp.Compare(a.AppliedIndex, b.AppliedIndex), cmp.Compare(a.RaftIndex, b.RaftIndex), cmp.Compare(a.Revision, b.Revision)); c != 0 {
		return c > 0
	}
	return a.Running && !b.Running
}

func loss(s, chosen Survivor, note string) Loss {
	l := Loss{Host: s.Host, Name: s.Name, Revision: s.Revision, AppliedIndex: s.AppliedIndex, Note: note}
	if s.HasData() && s.Revision > chosen.Revision {
		l.RevisionsAhead = s.Revision - chosen.Revision
		l.Note = fmt.Sprintf("%d revisions newer than the cluster's are lost; %s", l.RevisionsAhead, note)
	}
	return l
}

func maxRevision(ss []Survivor) int64 {
	var r int64
	for _, s := range ss {
		if s.Running {
			r = max(r, s.Revision)
		}
	}
	return r
}

func endpointsOf(view []MemberInfo) []string {
	var out []string
	for _, m := range view {
		out = append(out, m.ClientURLs...)
	}
	return out
}

func chosenWhy(from string) string {
	if from != "" {
		return ", as recover_from names"
	}
	return ", the survivor that applied the most"
}

func leftOutNote(hosts []string) string {
	if len(hosts) == 0 {
		return ""
	}
	return fmt.Sprintf("; left out, not reached or without etcd: %s (once they run again, run this again to bring them back)", strings.Join(hosts, ", "))
}

func orNone(hosts []string) string {
	if len(hosts) == 0 {
		return "no other host"
	}
	return strings.Join(hosts, ", ")
}

func hostsOf(ss []Survivor) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Host)
	}
	return orNone(out)
}

func hostsWithData(ss []Survivor) string {
	var out []string
	for _, s := range ss {
		if s.HasData() {
			out = append(out, s.Host)
		}
	}
	return orNone(out)
}
