package member

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// fake builds a view from a compact description: one entry per member,
// "name:flags" with flags v (voter) or l (learner), then h (healthy), L
// (leader), u (unstarted: no name). Member i has id i+1 and peer URL
// https://10.0.0.<i+1>:2380.
func fake(specs ...string) *View {
	v := &View{ClusterID: 0xc1}
	for i, s := range specs {
		name, flags, _ := strings.Cut(s, ":")
		ip := "10.0.0." + string(rune('1'+i))
		m := &Member{ID: uint64(i + 1), Name: name, IsLearner: strings.Contains(flags, "l"),
			Healthy: strings.Contains(flags, "h"), PeerURLs: []string{"https://" + ip + ":2380"}}
		if strings.Contains(flags, "u") {
			m.Name, m.Healthy = "", false
		} else {
			m.ClientURLs = []string{"https://" + ip + ":2379"}
		}
		if m.Healthy {
			m.Endpoint = m.ClientURLs[0]
		}
		if strings.Contains(flags, "L") {
			v.LeaderID, m.IsLeader = m.ID, true
		}
		v.Members = append(v.Members, m)
	}
	return v
}

func tru() *bool  { t := true; return &t }
func fals() *bool { f := false; return &f }

func peer(i int) []string { return []string{"https://10.0.0." + string(rune('0'+i)) + ":2380"} }

func TestDecide(t *testing.T) {
	three := []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh"}
	oneDown := []string{"etcd1:vhL", "etcd2:vh", "etcd3:v"}
	tests := []struct {
		name    string
		view    []string
		req     request
		act     action
		learner bool
		unsafe  []string // substrings of the joined unsafe reasons; none: safe
		err     string   // substring of a hard error
		why     string   // substring of the no-op reason
	}{
		{name: "add learner", view: three, req: request{state: "present", name: "etcd4", peerURLs: peer(4)},
			act: actAdd, learner: true},
		{name: "add voter", view: three, req: request{state: "present", name: "etcd4", peerURLs: peer(4), learner: fals()},
			act: actAdd},
		{name: "add voter with one down", view: oneDown,
			req: request{state: "present", name: "etcd4", peerURLs: peer(4), learner: fals()}, act: actAdd,
			unsafe: []string{"adding etcd4 as a voting member would leave 2 healthy of 4 voting members, fewer than the quorum of 3", "down: etcd3 (3)"}},
		// etcd (3.6.16 too) counts a new learner as a down voting member.
		{name: "add learner with one of three down", view: oneDown,
			req: request{state: "present", name: "etcd4", peerURLs: peer(4)}, act: actAdd, learner: true,
			unsafe: []string{"even a learner", "adding etcd4 needs 3 healthy of 4 voting members, but only 2 of the 3 are healthy (down: etcd3 (3))"}},
		{name: "add learner with one of five down", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", "etcd4:vh", "etcd5:v"},
			req: request{state: "present", name: "etcd6", peerURLs: peer(6)}, act: actAdd, learner: true},
		{name: "add voter with one of five down", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", "etcd4:vh", "etcd5:v"},
			req: request{state: "present", name: "etcd6", peerURLs: peer(6), learner: fals()}, act: actAdd},
		{name: "add learner to a single member", view: []string{"etcd1:vhL"},
			req: request{state: "present", name: "etcd2", peerURLs: peer(2)}, act: actAdd, learner: true},
		{name: "add voter to a single member", view: []string{"etcd1:vhL"},
			req: request{state: "present", name: "etcd2", peerURLs: peer(2), learner: fals()}, act: actAdd,
			unsafe: []string{"adding etcd2 as a voting member would leave 1 healthy of 2 voting members, fewer than the quorum of 2; add it as a learner"}},
		{name: "add learner with two of five down", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", "etcd4:v", "etcd5:v"},
			req: request{state: "present", name: "etcd6", peerURLs: peer(6)}, act: actAdd, learner: true,
			unsafe: []string{"needs 4 healthy of 6 voting members, but only 3 of the 5 are healthy"}},
		{name: "add without quorum", view: []string{"etcd1:vh", "etcd2:v", "etcd3:v"},
			req: request{state: "present", name: "etcd4", peerURLs: peer(4)}, act: actAdd, learner: true,
			unsafe: []string{"no quorum: 1 of its 3 voting members are healthy, 2 are needed"}},
		{name: "add while another learner exists", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", "etcd4:lh"},
			req: request{state: "present", name: "etcd5", peerURLs: peer(5)}, act: actAdd, learner: true,
			unsafe: []string{"etcd4 (4) is still a learner", "one member at a time"}},
		{name: "add while an unstarted member exists", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", ":lu"},
			req: request{state: "present", name: "etcd5", peerURLs: peer(5)}, act: actAdd, learner: true,
			unsafe: []string{"unstarted member 4 (https://10.0.0.4:2380) was added but has not started"}},
		{name: "add the same unstarted member again", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", ":lu"},
			req: request{state: "present", name: "etcd4", peerURLs: peer(4)}, act: actNone, why: "already a learner, added but not started"},
		{name: "present voter", view: three, req: request{state: "present", name: "etcd2", peerURLs: peer(2)},
			act: actNone, why: "etcd2 (2) is already a voting member"},
		{name: "present voter asked as learner", view: three, req: request{state: "present", name: "etcd2", peerURLs: peer(2), learner: tru()},
			act: actNone, why: "already a voting member"},
		{name: "promote", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:vh", "etcd4:lh"},
			req: request{state: "present", name: "etcd4", peerURLs: peer(4), learner: fals()}, act: actPromote},
		{name: "promote in a 1-member cluster", view: []string{"etcd1:vhL", "etcd2:l"},
			req: request{state: "present", name: "etcd2", peerURLs: peer(2), learner: fals()}, act: actPromote},
		{name: "promote with two of four down", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:v", "etcd4:v", "etcd5:lh"},
			req: request{state: "present", name: "etcd5", peerURLs: peer(5), learner: fals()}, act: actPromote,
			unsafe: []string{"no quorum: 2 of its 4 voting members"}},
		{name: "learner stays learner", view: []string{"etcd1:vhL", "etcd2:lh"},
			req: request{state: "present", name: "etcd2", peerURLs: peer(2)}, act: actNone, why: "already a learner"},
		{name: "peer URL of another name", view: three, req: request{state: "present", name: "etcd9", peerURLs: peer(2)},
			err: `peer URL https://10.0.0.2:2380 belongs to member etcd2 (2), not "etcd9"`},
		{name: "name of another peer URL", view: three, req: request{state: "present", name: "etcd2", peerURLs: peer(7)},
			err: `a member named "etcd2" already exists with the peer URLs https://10.0.0.2:2380`},
		{name: "peer URLs of two members", view: three, req: request{state: "present", name: "etcd2", peerURLs: append(peer(2), peer(3)...)},
			err: "belong to different members (etcd2 (2), etcd3 (3))"},
		{name: "remove follower", view: three, req: request{state: "absent", peerURLs: peer(2)}, act: actRemove},
		{name: "remove by id", view: three, req: request{state: "absent", id: 3}, act: actRemove},
		{name: "remove healthy with one down", view: oneDown, req: request{state: "absent", peerURLs: peer(2)}, act: actRemove,
			unsafe: []string{"removing etcd2 (2) would leave 1 healthy of 2 voting members, fewer than the quorum of 2", "down: etcd3 (3)"}},
		{name: "remove the down member", view: oneDown, req: request{state: "absent", peerURLs: peer(3)}, act: actRemove},
		{name: "remove learner", view: []string{"etcd1:vhL", "etcd2:vh", "etcd3:v", ":lu"},
			req: request{state: "absent", peerURLs: peer(4)}, act: actRemove},
		{name: "remove the last voting member", view: []string{"etcd1:vhL"}, req: request{state: "absent", peerURLs: peer(1), force: true},
			err: "etcd1 (1) is the only voting member: a cluster cannot remove its last voting member"},
		{name: "remove absent", view: three, req: request{state: "absent", peerURLs: peer(8)}, act: actNone,
			why: "no member has the peer URL https://10.0.0.8:2380"},
		{name: "remove absent id", view: three, req: request{state: "absent", id: 0xabc}, act: actNone, why: "no member has the id abc"},
		{name: "remove with a wrong name", view: three, req: request{state: "absent", name: "etcd3", peerURLs: peer(2)},
			err: `etcd2 (2) is not named "etcd3"`},
		{name: "info", view: three, req: request{state: "info"}, act: actNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := decide(fake(tc.view...), tc.req)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.act != tc.act {
				t.Fatalf("action = %d, want %d (plan %+v)", p.act, tc.act, p)
			}
			if p.act == actAdd && p.learner != tc.learner {
				t.Errorf("learner = %v, want %v", p.learner, tc.learner)
			}
			unsafe := strings.Join(p.unsafe, "; ")
			if len(tc.unsafe) == 0 && unsafe != "" {
				t.Errorf("refused: %s", unsafe)
			}
			for _, want := range tc.unsafe {
				if !strings.Contains(unsafe, want) {
					t.Errorf("unsafe = %q, want it to contain %q", unsafe, want)
				}
			}
			if !strings.Contains(p.why, tc.why) {
				t.Errorf("why = %q, want it to contain %q", p.why, tc.why)
			}
		})
	}
}

func TestInitialCluster(t *testing.T) {
	v := fake("etcd1:vhL", "etcd2:vh", ":lu")
	v.Members[1].PeerURLs = append(v.Members[1].PeerURLs, "https://10.1.0.2:2380")
	got := initialCluster(v.Members, v.Members[2], "etcd3")
	want := "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380,etcd2=https://10.1.0.2:2380,etcd3=https://10.0.0.3:2380"
	if got != want {
		t.Errorf("existing target:\n got %s\nwant %s", got, want)
	}
	// A member not added yet (check mode) comes last.
	got = initialCluster(v.Members[:2], &Member{PeerURLs: peer(9)}, "etcd9")
	if !strings.HasSuffix(got, ",etcd9=https://10.0.0.9:2380") || strings.Count(got, "etcd9") != 1 {
		t.Errorf("new target: %s", got)
	}
}

func TestPredict(t *testing.T) {
	v := fake("etcd1:vhL", "etcd2:vh", "etcd3:vh")
	v.Members[1].RaftIndex, v.Members[2].RaftIndex = 10, 20
	p, err := decide(v, request{state: "absent", peerURLs: peer(1)})
	if err != nil {
		t.Fatal(err)
	}
	ms, leader := predict(v, p)
	if len(ms) != 2 || leader != 3 || !ms[1].IsLeader {
		t.Errorf("removing the leader: %d members, leader %x; want 2, the most caught up (3)", len(ms), leader)
	}
	if len(v.Members) != 3 || !v.Members[0].IsLeader {
		t.Error("predict changed the view it was given")
	}
}

func TestExplainAdd(t *testing.T) {
	oneDown := func(version string) *View {
		v := fake("etcd1:vhL", "etcd2:vh", "etcd3:v")
		v.Version = version
		return v
	}
	tests := []struct {
		name    string
		err     error
		view    *View
		learner bool
		want    []string
		not     string
	}{
		{"learner refused while a voter is down, old etcd (#21640)", rpctypes.ErrGRPCUnhealthy, oneDown("3.6.10"), true,
			[]string{"etcd 3.6.10 refused to add etcd4 as a learner because of the voting members down or disconnected (etcd3 (3))",
				"before 3.6.11", "#21640", "(etcdserver: unhealthy cluster)"}, ""},
		{"the same through the client's error type, 3.5", rpctypes.ErrUnhealthy, oneDown("3.5.21"), true,
			[]string{"#21640", "etcd3 (3)"}, ""},
		{"learner refused while a voter is down, fixed etcd", rpctypes.ErrGRPCUnhealthy, oneDown("3.6.16"), true,
			[]string{"etcd 3.6.16 refused to add etcd4 as a learner", "(2 of the 3 voting members are healthy, 3 of 4 needed; down: etcd3 (3))", "remove it first"}, "#21640"},
		{"unhealthy with every voter up", rpctypes.ErrGRPCUnhealthy, fake("etcd1:vhL", "etcd2:vh"), true,
			[]string{"add etcd4: etcd refused the change as unsafe", "less than 5 s ago"}, "#21640"},
		{"too many learners", rpctypes.ErrGRPCTooManyLearners, oneDown("3.6.16"), true, []string{"--max-learners"}, ""},
		{"permission denied", rpctypes.ErrGRPCPermissionDenied, oneDown("3.6.16"), true, []string{"permission denied", "root"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := explainAdd(tc.err, tc.view, "etcd4", tc.learner).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q does not contain %q", got, w)
				}
			}
			if tc.not != "" && strings.Contains(got, tc.not) {
				t.Errorf("%q contains %q", got, tc.not)
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"3.5.21", "3.6.0", true}, {"3.6.10", "3.6.9", false}, {"3.6.9", "3.6.10", true}, {"3.6.16", "3.6.16", false},
		{"", "3.6.0", true}, {"3.7.0-alpha.0", "3.6.16", false}} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func TestIs(t *testing.T) {
	notReady := rpctypes.ErrGRPCLearnerNotReady
	if is(notReady, rpctypes.ErrGRPCMemberNotLearner) {
		t.Error("'not ready' taken for 'not a learner' (its text is a prefix)")
	}
	for _, err := range []error{notReady, rpctypes.ErrMemberLearnerNotReady, fmt.Errorf("promote: %w", notReady)} {
		if !is(err, rpctypes.ErrGRPCLearnerNotReady) {
			t.Errorf("%v not recognised", err)
		}
	}
	if text := errors.New("promote: " + rpctypes.ErrorDesc(notReady)); is(text, rpctypes.ErrGRPCLearnerNotReady) {
		t.Error("an error that only has the text of 'not ready' taken for it")
	}
}

func TestTransient(t *testing.T) {
	for _, e := range []error{rpctypes.ErrGRPCUnhealthy, rpctypes.ErrNoLeader, rpctypes.ErrGRPCLeaderChanged} {
		if !transient(e) {
			t.Errorf("%v should be retried", e)
		}
	}
	for _, e := range []error{rpctypes.ErrGRPCPeerURLExist, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCTooManyLearners,
		errors.New("something else")} {
		if transient(e) {
			t.Errorf("%v should not be retried", e)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	base := options{State: "present", Name: "etcd-192.168.1.6", PeerURLs: []string{"https://192.168.1.6:2380"}, WaitTimeout: 60}
	tests := []struct {
		name string
		edit func(*options)
		want string // "" valid
	}{
		{"kubeasz name", func(o *options) {}, ""},
		{"name with underscore", func(o *options) { o.Name = "etcd_1" }, ""},
		{"name with a space", func(o *options) { o.Name = "etcd 1" }, `name "etcd 1": a member name is`},
		{"name starting with a dot", func(o *options) { o.Name = ".etcd" }, "starting with a letter or digit"},
		{"present without a name", func(o *options) { o.Name = "" }, "state=present needs the member's name"},
		{"present with id", func(o *options) { o.ID = "abc" }, "id is only for state=absent"},
		{"peer URL without port", func(o *options) { o.PeerURLs = []string{"https://10.0.0.1"} }, `peer_urls: "https://10.0.0.1": a URL needs a host and a port`},
		{"peer URL with another scheme", func(o *options) { o.PeerURLs = []string{"unix://x:1"} }, "scheme must be http or https"},
		{"absent without identity", func(o *options) { o.State, o.PeerURLs = "absent", nil }, "state=absent needs the member's peer_urls or id"},
		{"absent by id", func(o *options) { o.State, o.PeerURLs, o.ID = "absent", nil, "8e9e05c52164694d" }, ""},
		{"bad id", func(o *options) { o.State, o.PeerURLs, o.ID = "absent", nil, "xyz" }, `id "xyz": a member id is hexadecimal`},
		{"info without anything", func(o *options) { o.State, o.Name, o.PeerURLs = "info", "", nil }, ""},
		{"wait_timeout zero", func(o *options) { o.WaitTimeout = 0 }, "wait_timeout must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			_, err := o.request()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	after := fake("etcd1:vhL", "etcd2:vh", "etcd3:lh")
	learner := after.Members[2]
	tests := []struct {
		name string
		p    plan
		id   uint64
		want string
	}{
		{"added and listed", plan{act: actAdd}, 3, ""},
		{"added but not listed", plan{act: actAdd}, 9, "does not show it"},
		{"promoted but still a learner", plan{act: actPromote, target: learner}, 3, "does not show it as a voting member"},
		{"promoted", plan{act: actPromote, target: after.Members[1]}, 2, ""},
		{"removed but still listed", plan{act: actRemove, target: learner}, 3, "still shows it"},
		{"removed", plan{act: actRemove, target: &Member{ID: 9}}, 9, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(tc.p, after, tc.id)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify = %v, want %q", err, tc.want)
			}
		})
	}
}
