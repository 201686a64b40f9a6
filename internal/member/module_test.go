package member

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/pki"
)

func TestMain(m *testing.M) {
	etcdconn.Silence()
	os.Exit(m.Run())
}

// result is a module result as Ansible reads it (after JSON).
type result struct {
	Failed         bool         `json:"failed"`
	Changed        bool         `json:"changed"`
	Msg            string       `json:"msg"`
	Warnings       []string     `json:"warnings"`
	Members        []MemberInfo `json:"members"`
	Member         MemberInfo   `json:"member"`
	ClusterID      string       `json:"cluster_id"`
	LeaderID       string       `json:"leader_id"`
	InitialCluster string       `json:"initial_cluster"`
	Diff           *struct {
		Before string `json:"before"`
		After  string `json:"after"`
	} `json:"diff"`
}

func (r result) find(id string) *MemberInfo {
	for i := range r.Members {
		if r.Members[i].ID == id {
			return &r.Members[i]
		}
	}
	return nil
}

func (r result) warned(sub string) bool {
	return slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, sub) })
}

// execute runs the module through the modrun layer, as the binary does,
// with args and _ansible_* keys.
func execute(t *testing.T, args map[string]any) result {
	t.Helper()
	out := modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("result cannot be encoded: %v", err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if strings.Contains(r.Msg, "goroutine ") || strings.Contains(r.Msg, "panic") {
		t.Fatalf("stack trace in msg: %s", r.Msg)
	}
	return r
}

// args are the connection options for the members, plus kv pairs.
func args(c *etcdtest.Cluster, ms []*etcdtest.Member, kv ...any) map[string]any {
	a := map[string]any{
		"endpoints": c.Endpoints(ms...), "ca_cert": c.CAFile,
		"client_cert": c.Client.Cert, "client_key": c.Client.Key,
		"dial_timeout": 1, "command_timeout": 20, "wait_timeout": 30,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i].(string)] = kv[i+1]
	}
	return a
}

func mustOK(t *testing.T, r result) result {
	t.Helper()
	if r.Failed {
		t.Fatalf("failed: %s (warnings %v)", r.Msg, r.Warnings)
	}
	return r
}

func mustFail(t *testing.T, r result, subs ...string) {
	t.Helper()
	if !r.Failed {
		t.Fatalf("did not fail: %+v", r)
	}
	t.Logf("msg: %s", r.Msg)
	for _, s := range subs {
		if !strings.Contains(r.Msg, s) {
			t.Errorf("msg %q does not contain %q", r.Msg, s)
		}
	}
}

// listed is the member list read straight from the cluster, not through
// the module: id (hex) → member.
func listed(t *testing.T, c *etcdtest.Cluster, through ...*etcdtest.Member) map[string]*memberPB {
	t.Helper()
	cli, err := etcdconn.New(c.Options(through...))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*memberPB{}
	for _, m := range resp.Members {
		out[fmt.Sprintf("%x", m.ID)] = m
	}
	return out
}

func idOf(m *etcdtest.Member) string { return fmt.Sprintf("%x", uint64(m.Etcd.Server.MemberID())) }

// without returns ms minus drop.
func without(ms []*etcdtest.Member, drop ...*etcdtest.Member) []*etcdtest.Member {
	var out []*etcdtest.Member
	for _, m := range ms {
		if !slices.Contains(drop, m) {
			out = append(out, m)
		}
	}
	return out
}

// TestLifecycle walks one member through add as learner, start, promote,
// and removes the leader and a member through its own endpoint, checking
// check mode, idempotence and the one-change-at-a-time rule on the way.
func TestLifecycle(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	alive := append([]*etcdtest.Member(nil), c.Members...)
	leader := c.Leader()
	m3 := c.NewMember("m3")
	var m3ID, m3Initial string

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"info lists the members with health and leader", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "state", "info")))
			if r.Changed || len(r.Members) != 3 {
				t.Fatalf("changed=%v, %d members", r.Changed, len(r.Members))
			}
			for _, m := range alive {
				mi := r.find(idOf(m))
				if mi == nil || mi.Name != m.Name || !mi.Healthy || mi.IsLearner || mi.IsLeader != (m == leader) ||
					!slices.Equal(mi.PeerURLs, []string{m.PeerURL}) || !slices.Equal(mi.ClientURLs, []string{m.ClientURL}) {
					t.Errorf("%s: %+v (leader %s)", m.Name, mi, leader.Name)
				}
			}
			if r.LeaderID != idOf(leader) || r.ClusterID == "" {
				t.Errorf("leader_id %q, want %q; cluster_id %q", r.LeaderID, idOf(leader), r.ClusterID)
			}
			if !strings.HasPrefix(r.Msg, "3 members: 3 voting (3 healthy), 0 learners; leader "+leader.Name) {
				t.Errorf("msg %q", r.Msg)
			}
		}},
		{"check mode predicts the add and changes nothing", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL},
				"_ansible_check_mode", true, "_ansible_diff", true)))
			if !r.Changed || !strings.HasPrefix(r.Msg, "would add m3 as a learner") || len(r.Members) != 4 ||
				!r.Member.IsLearner || r.Member.ID != "" {
				t.Fatalf("%+v", r)
			}
			if !strings.HasSuffix(r.InitialCluster, ",m3="+m3.PeerURL) || r.Diff == nil ||
				strings.Count(r.Diff.After, "\n") != 4 || strings.Count(r.Diff.Before, "\n") != 3 {
				t.Errorf("initial_cluster %q, diff %+v", r.InitialCluster, r.Diff)
			}
			if n := len(listed(t, c, alive...)); n != 3 {
				t.Fatalf("check mode changed the cluster: %d members", n)
			}
		}},
		{"add as learner", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL}, "_ansible_diff", true)))
			m3ID, m3Initial = r.Member.ID, r.InitialCluster
			if !r.Changed || m3ID == "" || !r.Member.IsLearner || r.Member.Name != "" || r.Member.Healthy {
				t.Fatalf("%+v", r)
			}
			got := listed(t, c, alive...)[m3ID]
			if got == nil || !got.IsLearner || got.Name != "" {
				t.Fatalf("cluster lists %v", got)
			}
			for _, m := range append(alive, m3) {
				if !strings.Contains(m3Initial, m.Name+"="+m.PeerURL) {
					t.Errorf("initial_cluster %q lacks %s", m3Initial, m.Name)
				}
			}
			if r.Diff == nil || !strings.Contains(r.Diff.After, m3ID+", unstarted, , "+m3.PeerURL+", , true") ||
				strings.Contains(r.Diff.Before, m3.PeerURL) {
				t.Errorf("diff %+v", r.Diff)
			}
			if !strings.Contains(r.Msg, "then promote it") {
				t.Errorf("msg %q", r.Msg)
			}
		}},
		{"adding it again changes nothing", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL})))
			if r.Changed || r.Member.ID != m3ID || r.InitialCluster != m3Initial {
				t.Fatalf("%+v", r)
			}
		}},
		{"a second member waits for the first", func(t *testing.T) {
			m4 := c.NewMember("m4")
			mustFail(t, execute(t, args(c, alive, "name", "m4", "peer_urls", []string{m4.PeerURL})),
				"refused", "was added but has not started", "one member at a time")
			if n := len(listed(t, c, alive...)); n != 4 {
				t.Fatalf("%d members", n)
			}
		}},
		{"info shows the unstarted learner", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "state", "info", "peer_urls", []string{m3.PeerURL})))
			mi := r.find(m3ID)
			if mi == nil || !mi.IsLearner || mi.Healthy || mi.Name != "" || r.Member.ID != m3ID {
				t.Fatalf("%+v", r)
			}
		}},
		{"start it with initial_cluster", func(t *testing.T) {
			if err := c.StartNew(m3, m3Initial); err != nil {
				t.Fatal(err)
			}
			alive = append(alive, m3)
			r := mustOK(t, execute(t, args(c, alive, "state", "info")))
			if mi := r.find(m3ID); mi == nil || mi.Name != "m3" || !mi.Healthy || !mi.IsLearner {
				t.Fatalf("%+v", mi)
			}
		}},
		{"check mode predicts the promotion", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL}, "learner", false,
				"_ansible_check_mode", true)))
			if !r.Changed || r.Member.IsLearner || !strings.HasPrefix(r.Msg, "would promote m3") {
				t.Fatalf("%+v", r)
			}
			if !listed(t, c, alive...)[m3ID].IsLearner {
				t.Fatal("check mode promoted")
			}
		}},
		{"promote", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL}, "learner", false)))
			if !r.Changed || r.Member.IsLearner || r.Member.ID != m3ID {
				t.Fatalf("%+v", r)
			}
			for id, m := range listed(t, c, alive...) {
				if m.IsLearner {
					t.Errorf("%s is still a learner", id)
				}
			}
		}},
		{"promoting again changes nothing", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, alive, "name", "m3", "peer_urls", []string{m3.PeerURL}, "learner", false)))
			if r.Changed || r.Member.IsLearner {
				t.Fatalf("%+v", r)
			}
		}},
		{"check mode predicts removing the leader", func(t *testing.T) {
			leader = c.Leader()
			r := mustOK(t, execute(t, args(c, alive, "state", "absent", "peer_urls", []string{leader.PeerURL},
				"_ansible_check_mode", true)))
			if !r.Changed || len(r.Members) != 3 || r.find(idOf(leader)) != nil || r.LeaderID == idOf(leader) {
				t.Fatalf("%+v", r)
			}
			if _, ok := listed(t, c, alive...)[idOf(leader)]; !ok {
				t.Fatal("check mode removed the leader")
			}
		}},
		{"remove the leader", func(t *testing.T) {
			old, oldID := leader, idOf(leader)
			r := mustOK(t, execute(t, args(c, alive, "state", "absent", "peer_urls", []string{old.PeerURL})))
			alive = without(alive, old)
			c.Stop(old)
			if !r.Changed || r.Member.ID != oldID || !strings.Contains(r.Msg, "leadership moved to") {
				t.Fatalf("%+v", r)
			}
			if r.LeaderID == "" || r.LeaderID == oldID || len(r.Members) != 3 {
				t.Errorf("after: leader %q (old %q), %d members", r.LeaderID, oldID, len(r.Members))
			}
			if _, ok := listed(t, c, alive...)[oldID]; ok {
				t.Fatal("the old leader is still a member")
			}
			if l := c.Leader(); l == old || idOf(l) != r.LeaderID {
				t.Errorf("leader is %s, module says %s", l.Name, r.LeaderID)
			}
			r = mustOK(t, execute(t, args(c, alive, "state", "absent", "peer_urls", []string{old.PeerURL})))
			if r.Changed || !strings.Contains(r.Msg, "nothing to remove") {
				t.Fatalf("second removal: %+v", r)
			}
		}},
		{"remove the member whose endpoint is given", func(t *testing.T) {
			var x *etcdtest.Member
			for _, m := range alive {
				if m != c.Leader() {
					x = m
				}
			}
			xID := idOf(x)
			r := mustOK(t, execute(t, args(c, []*etcdtest.Member{x}, "state", "absent", "id", xID)))
			if !r.Changed || r.Member.ID != xID || len(r.Members) != 2 {
				t.Fatalf("%+v", r)
			}
			alive = without(alive, x)
			c.Stop(x)
			if _, ok := listed(t, c, alive...)[xID]; ok {
				t.Fatal("still a member")
			}
			// Again, through every endpoint, the removed one among them.
			r = mustOK(t, execute(t, args(c, append([]*etcdtest.Member{x}, alive...), "state", "absent", "id", xID)))
			if r.Changed || !strings.Contains(r.Msg, "no member has the id "+xID) {
				t.Fatalf("second removal: %+v", r)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// TestMembersDown checks the quorum arithmetic against a 5-member cluster
// with two, then one, voting members stopped, and that etcd agrees with it.
func TestMembersDown(t *testing.T) {
	c := etcdtest.NewCluster(t, 5)
	all := append([]*etcdtest.Member(nil), c.Members...)
	leader := c.Leader()
	var down []*etcdtest.Member
	for _, m := range all {
		if m != leader && len(down) < 2 {
			down = append(down, m)
		}
	}
	d0, d1 := down[0], down[1]
	d0ID, d1ID := idOf(d0), idOf(d1)
	downs := fmt.Sprintf("down: %s (%s), %s (%s)", d0.Name, d0ID, d1.Name, d1ID)
	if d1.Etcd.Server.MemberID() < d0.Etcd.Server.MemberID() { // labels follow the member list, ordered by id
		downs = fmt.Sprintf("down: %s (%s), %s (%s)", d1.Name, d1ID, d0.Name, d0ID)
	}
	c.Stop(d0)
	c.Stop(d1)
	up := without(all, down...)
	m5, m6 := c.NewMember("m5"), c.NewMember("m6")
	var m5ID string

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"info reports the members that are down", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, all, "state", "info")))
			if len(r.Members) != 5 {
				t.Fatalf("%d members", len(r.Members))
			}
			for _, mi := range r.Members {
				if mi.Healthy != (mi.ID != d0ID && mi.ID != d1ID) || mi.IsLeader != (mi.ID == idOf(leader)) {
					t.Errorf("%s healthy=%v leader=%v", mi.Name, mi.Healthy, mi.IsLeader)
				}
			}
			if len(r.Warnings) != 2 || !r.warned(d0.Name+" ("+d0ID+") is not healthy: connect to "+d0.ClientURL+": connection refused") {
				t.Errorf("warnings %q", r.Warnings)
			}
			if !strings.Contains(r.Msg, "5 voting (3 healthy)") || !strings.Contains(r.Msg, "not healthy: ") {
				t.Errorf("msg %q", r.Msg)
			}
		}},
		{"a voting member is refused", func(t *testing.T) {
			mustFail(t, execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL}, "learner", false)),
				"adding m5 as a voting member would leave 3 healthy of 6 voting members, fewer than the quorum of 4", downs)
		}},
		{"a learner is refused too, as etcd would", func(t *testing.T) {
			mustFail(t, execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL})),
				"even a learner", "adding m5 needs 4 healthy of 6 voting members, but only 3 of the 5 are healthy", downs)
		}},
		{"with force etcd itself refuses the learner", func(t *testing.T) {
			r := execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL}, "force", true))
			mustFail(t, r, "refused to add m5 as a learner", "(3 of the 5 voting members are healthy, 4 of 6 needed", "remove them first", "etcdserver: unhealthy cluster")
			if !r.warned("force: going ahead although etcd refuses to add a member, even a learner") {
				t.Errorf("warnings %q", r.Warnings)
			}
			if n := len(listed(t, c, up...)); n != 5 {
				t.Fatalf("%d members", n)
			}
		}},
		{"force in check mode goes ahead with a warning", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL}, "learner", false,
				"force", true, "_ansible_check_mode", true)))
			if !r.Changed || !r.warned("force: going ahead although adding m5 as a voting member would leave 3 healthy of 6") {
				t.Fatalf("%+v", r)
			}
			if n := len(listed(t, c, up...)); n != 5 {
				t.Fatalf("%d members", n)
			}
		}},
		{"removing a healthy member is refused", func(t *testing.T) {
			x := up[0]
			mustFail(t, execute(t, args(c, all, "state", "absent", "peer_urls", []string{x.PeerURL})),
				"removing "+x.Name+" ("+idOf(x)+") would leave 2 healthy of 4 voting members, fewer than the quorum of 3", downs)
			if n := len(listed(t, c, up...)); n != 5 {
				t.Fatalf("%d members", n)
			}
		}},
		{"a member that is down can be removed", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, all, "state", "absent", "peer_urls", []string{d0.PeerURL})))
			if !r.Changed || r.Member.ID != d0ID || len(r.Members) != 4 {
				t.Fatalf("%+v", r)
			}
			if got := listed(t, c, up...); len(got) != 4 || got[d0ID] != nil {
				t.Fatalf("members %v", got)
			}
		}},
		{"with one of four down a learner is allowed", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL})))
			m5ID = r.Member.ID
			if !r.Changed || !r.Member.IsLearner || listed(t, c, up...)[m5ID] == nil {
				t.Fatalf("%+v", r)
			}
		}},
		{"a learner that never starts is not promoted", func(t *testing.T) {
			r := execute(t, args(c, all, "name", "m5", "peer_urls", []string{m5.PeerURL}, "learner", false, "wait_timeout", 1.5))
			mustFail(t, r, "unstarted member "+m5ID, "was not promoted within wait_timeout (1.5s)",
				"has not caught up with the leader yet", "it has not started: start etcd on it")
			if !r.warned("is not healthy yet (added but not started): the promotion waits") {
				t.Errorf("warnings %q", r.Warnings)
			}
			if !listed(t, c, up...)[m5ID].IsLearner {
				t.Fatal("promoted")
			}
		}},
		{"force skips the one-at-a-time check, etcd still refuses", func(t *testing.T) {
			r := execute(t, args(c, all, "name", "m6", "peer_urls", []string{m6.PeerURL}, "force", true))
			mustFail(t, r, "add m6:", "--max-learners")
			if !r.warned("force: going ahead although unstarted member " + m5ID) {
				t.Errorf("warnings %q", r.Warnings)
			}
		}},
		{"the unstarted learner can be removed", func(t *testing.T) {
			r := mustOK(t, execute(t, args(c, all, "state", "absent", "peer_urls", []string{m5.PeerURL})))
			if !r.Changed || r.Member.ID != m5ID || listed(t, c, up...)[m5ID] != nil {
				t.Fatalf("%+v", r)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// TestSingleMember checks, on a 1-member cluster, the refusals that need a
// live server (the last member, a wrong CA, a missing client certificate,
// a closed port), then grows it: a voting member is refused (the cluster
// would lose its quorum until the member starts), a learner is added,
// started and promoted.
func TestSingleMember(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	m0 := c.Members[0]
	dir := t.TempDir()
	otherCA, err := pki.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(dir, "wrong-ca.pem")
	if err := os.WriteFile(wrongCA, otherCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	closed := "https://127.0.0.1:1"

	tests := []struct {
		name string
		args map[string]any
		want []string
	}{
		{"last member", args(c, nil, "state", "absent", "peer_urls", []string{m0.PeerURL}, "force", true),
			[]string{"m0 (" + idOf(m0) + ") is the only voting member"}},
		{"wrong CA", args(c, nil, "state", "info", "ca_cert", wrongCA),
			[]string{"none of the endpoints answered", m0.ClientURL, "not signed by ca_cert (wrong CA?)"}},
		{"no client certificate", args(c, nil, "state", "info", "client_cert", nil, "client_key", nil),
			[]string{m0.ClientURL, "refused the client certificate"}},
		{"closed port", args(c, nil, "state", "info", "endpoints", []string{closed}),
			[]string{closed, "connection refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, execute(t, tc.args), tc.want...)
		})
	}
	if n := len(listed(t, c)); n != 1 {
		t.Fatalf("%d members", n)
	}
	t.Run("no state and no member lists the cluster", func(t *testing.T) {
		r := mustOK(t, execute(t, args(c, nil)))
		if r.Changed || len(r.Members) != 1 || r.Members[0].Name != "m0" {
			t.Fatalf("%+v", r)
		}
	})

	m1 := c.NewMember("m1")
	t.Run("a voting member is refused", func(t *testing.T) {
		mustFail(t, execute(t, args(c, nil, "name", "m1", "peer_urls", []string{m1.PeerURL}, "learner", false)),
			"adding m1 as a voting member would leave 1 healthy of 2 voting members, fewer than the quorum of 2; add it as a learner")
		if n := len(listed(t, c)); n != 1 {
			t.Fatalf("%d members", n)
		}
	})
	t.Run("a learner is added, started and promoted", func(t *testing.T) {
		r := mustOK(t, execute(t, args(c, nil, "name", "m1", "peer_urls", []string{m1.PeerURL})))
		if !r.Changed || !r.Member.IsLearner || r.InitialCluster != "m0="+m0.PeerURL+",m1="+m1.PeerURL &&
			r.InitialCluster != "m1="+m1.PeerURL+",m0="+m0.PeerURL {
			t.Fatalf("%+v", r)
		}
		if err := c.StartNew(m1, r.InitialCluster); err != nil {
			t.Fatal(err)
		}
		r = mustOK(t, execute(t, args(c, []*etcdtest.Member{m0}, "name", "m1", "peer_urls", []string{m1.PeerURL}, "learner", false)))
		if !r.Changed || r.Member.IsLearner || !r.Member.Healthy || len(r.Members) != 2 {
			t.Fatalf("%+v", r)
		}
		for id, m := range listed(t, c) {
			if m.IsLearner {
				t.Errorf("%s is a learner", id)
			}
		}
	})
}

// TestBadArguments checks what fails before any connection.
func TestBadArguments(t *testing.T) {
	base := func(kv ...any) map[string]any {
		a := map[string]any{"endpoints": []string{"https://127.0.0.1:1"}, "name": "etcd1",
			"peer_urls": []string{"https://10.0.0.1:2380"}}
		for i := 0; i+1 < len(kv); i += 2 {
			a[kv[i].(string)] = kv[i+1]
		}
		return a
	}
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"unknown option", base("peers", "x"), "unsupported parameters: peers"},
		{"wrong type", base("dial_timeout", "soon"), "argument 'dial_timeout' is of type str and we were unable to convert to float"},
		{"wrong bool", base("learner", "perhaps"), "argument 'learner' is of type str and we were unable to convert to bool"},
		{"bad state", base("state", "gone"), "value of state must be one of: present, absent, info, got: gone"},
		{"present without peer_urls", base("state", "present", "peer_urls", nil), "state is present but all of the following are missing: peer_urls"},
		{"a name alone means present, which needs peer_urls", base("peer_urls", nil), "state=present needs the member's peer_urls"},
		{"an id alone", map[string]any{"endpoints": []string{"https://127.0.0.1:1"}, "id": "abc"}, `id "abc" is only for state=absent`},
		{"peer_urls and id", base("state", "absent", "id", "abc"), "parameters are mutually exclusive: peer_urls|id"},
		{"cert without key", base("client_cert", "/x.pem"), "parameters are required together: client_cert, client_key"},
		{"bad peer URL", base("peer_urls", []string{"10.0.0.1:2380"}), `peer_urls: "10.0.0.1:2380"`},
		{"bad endpoint", base("endpoints", []string{"ftp://10.0.0.1:2379"}), `endpoints: "ftp://10.0.0.1:2379": scheme must be http or https`},
		{"bad name", base("name", "etcd/1"), `name "etcd/1": a member name is`},
		{"missing cert file", base("ca_cert", "/nonexistent/ca.pem"), "ca_cert: /nonexistent/ca.pem: no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, execute(t, tc.args), tc.want)
		})
	}
}
