package member

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

type memberPB = pb.Member

// Member is one etcd member together with what the health probes learnt
// about it.
type Member struct {
	ID         uint64
	Name       string // empty while the member was added but has not started
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool

	IsLeader bool
	// Healthy: one of its client URLs answered Status for this cluster,
	// with no error and a known leader.
	Healthy bool
	// Endpoint is a client URL at which the member answered (healthy or
	// not); empty when none did.
	Endpoint  string
	RaftIndex uint64
	// Problem says why the member is not healthy.
	Problem string
}

// Started reports whether the member has ever started: etcd lists a member
// that was added but has not joined yet with an empty name.
func (m *Member) Started() bool { return m.Name != "" }

// label names the member in messages.
func (m *Member) label() string {
	switch {
	case m.ID == 0:
		return "the new member " + strings.Join(m.PeerURLs, ",")
	case !m.Started():
		return fmt.Sprintf("unstarted member %x (%s)", m.ID, strings.Join(m.PeerURLs, ","))
	}
	return fmt.Sprintf("%s (%x)", m.Name, m.ID)
}

// View is the cluster as seen from the endpoints at one moment.
type View struct {
	ClusterID uint64
	LeaderID  uint64 // 0 when no member knows a leader
	// Version is the lowest etcd server version the healthy members
	// report ("3.6.16"); empty when none answered.
	Version string
	Members []*Member
	// Stale: the member list was read without quorum (serializable), from
	// one member's local copy.
	Stale bool
	// Unreachable lists the given endpoints that did not answer, each with
	// the reason.
	Unreachable []string
	unreachable []string // their URLs
	// Notes are oddities worth a warning.
	Notes []string
	// endpointOwner maps each URL that answered to the member it belongs to.
	endpointOwner map[string]uint64
}

func (v *View) member(id uint64) *Member {
	for _, m := range v.Members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// withPeerURLs returns the members that have any of the peer URLs.
func (v *View) withPeerURLs(urls []string) []*Member {
	var out []*Member
	for _, m := range v.Members {
		if overlap(m.PeerURLs, urls) {
			out = append(out, m)
		}
	}
	return out
}

func (v *View) named(name string) *Member {
	for _, m := range v.Members {
		if name != "" && m.Name == name {
			return m
		}
	}
	return nil
}

// voters counts the voting members and the healthy ones, and lists those
// that are down.
func (v *View) voters() (total, healthy int, down []*Member) {
	for _, m := range v.Members {
		if m.IsLearner {
			continue
		}
		total++
		if m.Healthy {
			healthy++
		} else {
			down = append(down, m)
		}
	}
	return total, healthy, down
}

// hasQuorum reports whether the healthy voting members are a majority.
func (v *View) hasQuorum() bool {
	total, healthy, _ := v.voters()
	return total > 0 && healthy > total/2
}

// callEndpoints returns the client URLs through which to send a request:
// the URL at which each healthy voting member other than skip answered,
// then those of voting members that answered but are not healthy.
func (v *View) callEndpoints(skip uint64) []string {
	var good, other []string
	for _, m := range v.Members {
		if m.ID == skip || m.IsLearner || m.Endpoint == "" {
			continue
		}
		if m.Healthy {
			good = append(good, m.Endpoint)
		} else {
			other = append(other, m.Endpoint)
		}
	}
	if len(good) > 0 {
		return good
	}
	return other
}

// endpointsWithout returns the given endpoints that do not belong to member
// skip, plus the answering URL of every other member.
func (v *View) endpointsWithout(given []string, skip uint64) []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if k := normURL(u); !seen[k] {
			seen[k] = true
			out = append(out, u)
		}
	}
	for _, ep := range given {
		if id, ok := v.endpointOwner[normURL(ep)]; ok && id == skip {
			continue
		}
		if m := v.member(skip); m != nil && contains(m.ClientURLs, ep) {
			continue
		}
		add(ep)
	}
	for _, m := range v.Members {
		if m.ID != skip && m.Endpoint != "" {
			add(m.Endpoint)
		}
	}
	return out
}

// observe reads the member list and probes every member's health: the
// given endpoints first, then each member's advertised client URLs.
func observe(ctx context.Context, o etcdconn.Options, endpoints []string) (*View, error) {
	given := etcdconn.ProbeAll(ctx, o, endpoints)
	v := &View{endpointOwner: map[string]uint64{}}
	var answered []etcdconn.EndpointStatus
	var failed []error
	clusters := map[uint64][]string{}
	for _, s := range given {
		if s.Status == nil {
			v.Unreachable = append(v.Unreachable, probeError(s))
			v.unreachable = append(v.unreachable, s.Endpoint)
			failed = append(failed, s.Err)
			continue
		}
		answered = append(answered, s)
		clusters[s.Status.Header.ClusterId] = append(clusters[s.Status.Header.ClusterId], s.Endpoint)
	}
	if len(answered) == 0 {
		return nil, fmt.Errorf("none of the endpoints answered: %w", etcdconn.Join(failed...))
	}
	if len(clusters) > 1 {
		var parts []string
		for id, eps := range clusters {
			parts = append(parts, fmt.Sprintf("cluster %x at %s", id, strings.Join(eps, ",")))
		}
		sort.Strings(parts)
		return nil, fmt.Errorf("the endpoints belong to different etcd clusters (%s): give the endpoints of one cluster",
			strings.Join(parts, "; "))
	}
	v.ClusterID = answered[0].Status.Header.ClusterId

	list, stale, err := listMembers(ctx, o, answered)
	if err != nil {
		return nil, err
	}
	v.Stale = stale
	owner := map[string]uint64{} // advertised client URL → member
	for _, pm := range list {
		m := &Member{ID: pm.ID, Name: pm.Name, IsLearner: pm.IsLearner,
			PeerURLs: append([]string{}, pm.PeerURLs...), ClientURLs: append([]string{}, pm.ClientURLs...)}
		v.Members = append(v.Members, m)
		for _, u := range m.ClientURLs {
			owner[normURL(u)] = m.ID
		}
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID })

	probed := map[string]bool{}
	for _, ep := range endpoints {
		probed[normURL(ep)] = true
	}
	var extra []string
	for _, m := range v.Members {
		for _, u := range m.ClientURLs {
			if k := normURL(u); !probed[k] {
				probed[k] = true
				extra = append(extra, u)
			}
		}
	}
	all := append(given, etcdconn.ProbeAll(ctx, o, extra)...)

	problems := map[uint64][]string{}
	var term uint64
	for _, s := range all {
		if s.Status == nil {
			if id, ok := owner[normURL(s.Endpoint)]; ok {
				problems[id] = append(problems[id], probeError(s))
			}
			continue
		}
		st := s.Status
		if st.Header.ClusterId != v.ClusterID {
			if id, ok := owner[normURL(s.Endpoint)]; ok {
				problems[id] = append(problems[id], fmt.Sprintf("%s answers for cluster %x, not %x", s.Endpoint, st.Header.ClusterId, v.ClusterID))
			}
			continue
		}
		m := v.member(st.Header.MemberId)
		if m == nil {
			v.Notes = append(v.Notes, fmt.Sprintf("endpoint %s answered as member %x, which is not in the member list (removed?)",
				s.Endpoint, st.Header.MemberId))
			continue
		}
		v.endpointOwner[normURL(s.Endpoint)] = m.ID
		if st.Leader != 0 && st.RaftTerm >= term {
			term, v.LeaderID = st.RaftTerm, st.Leader
		}
		healthy := s.Healthy() && st.Leader != 0
		if m.Endpoint == "" || (healthy && !m.Healthy) {
			m.Endpoint, m.RaftIndex = s.Endpoint, st.RaftIndex
		}
		switch {
		case healthy:
			m.Healthy = true
			if v.Version == "" || versionLess(st.Version, v.Version) {
				v.Version = st.Version
			}
		case len(st.Errors) > 0:
			problems[m.ID] = append(problems[m.ID], fmt.Sprintf("%s reports: %s", s.Endpoint, strings.Join(st.Errors, ", ")))
		default:
			problems[m.ID] = append(problems[m.ID], s.Endpoint+" has no leader")
		}
	}
	for _, m := range v.Members {
		m.IsLeader = m.ID == v.LeaderID
		switch {
		case m.Healthy:
		case !m.Started():
			m.Problem = "added but not started"
		case len(problems[m.ID]) > 0:
			m.Problem = strings.Join(problems[m.ID], "; ")
		case len(m.ClientURLs) == 0:
			m.Problem = "advertises no client URL"
		default:
			m.Problem = "did not answer"
		}
	}
	return v, nil
}

// listMembers reads the member list from the first voting member that
// serves it linearizably; when none can (no quorum), from the local copy of
// any voting member, and then stale is true. Learners serve no member list.
func listMembers(ctx context.Context, o etcdconn.Options, answered []etcdconn.EndpointStatus) (members []*memberPB, stale bool, err error) {
	var voters []etcdconn.EndpointStatus
	for _, s := range answered {
		if !s.Status.IsLearner {
			voters = append(voters, s)
		}
	}
	if len(voters) == 0 {
		var eps []string
		for _, s := range answered {
			eps = append(eps, s.Endpoint)
		}
		return nil, false, fmt.Errorf("only learners answered (%s), and a learner cannot list the members: give a voting member's endpoint",
			strings.Join(eps, ", "))
	}
	var errs []error
	list := func(ep string, opts ...clientv3.OpOption) ([]*memberPB, error) {
		cli, err := etcdconn.New(o, ep)
		if err != nil {
			return nil, err
		}
		defer cli.Close()
		cctx, cancel := context.WithTimeout(ctx, o.DialTimeoutDuration())
		defer cancel()
		resp, err := cli.MemberList(cctx, opts...)
		if err != nil {
			return nil, &etcdconn.Error{Op: ep, Err: err}
		}
		return resp.Members, nil
	}
	for _, s := range voters {
		if s.Status.Leader == 0 {
			continue
		}
		ms, err := list(s.Endpoint)
		if err == nil {
			return ms, false, nil
		}
		errs = append(errs, err)
	}
	for _, s := range voters {
		ms, err := list(s.Endpoint, clientv3.WithSerializable())
		if err == nil {
			return ms, true, nil
		}
		errs = append(errs, err)
	}
	return nil, false, fmt.Errorf("cannot list the members: %w", etcdconn.Join(errs...))
}

func probeError(s etcdconn.EndpointStatus) string {
	if s.Err == nil {
		return s.Endpoint + ": no answer"
	}
	text := s.Err.Error()
	if !strings.Contains(text, s.Endpoint) {
		text = s.Endpoint + ": " + text
	}
	return text
}

// normURL is the form in which URLs are compared: scheme, lower-case host
// and port.
func normURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return strings.TrimRight(strings.ToLower(s), "/")
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

func contains(list []string, u string) bool {
	k := normURL(u)
	for _, x := range list {
		if normURL(x) == k {
			return true
		}
	}
	return false
}

func overlap(a, b []string) bool {
	for _, x := range b {
		if contains(a, x) {
			return true
		}
	}
	return false
}

func sameURLs(a, b []string) bool {
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !contains(a, x) {
			return false
		}
	}
	return true
}

// parseVersion reads "3.6.16" (a suffix such as "-rc.0" is ignored).
func parseVersion(s string) (v [3]int, ok bool) {
	s, _, _ = strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// versionLess compares two etcd versions; an unreadable one sorts first.
func versionLess(a, b string) bool {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		return !oka && okb
	}
	for i := range va {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	return false
}
