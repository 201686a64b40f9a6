package maint

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/modrun"
)

func TestMain(m *testing.M) {
	etcdconn.Silence()
	os.Exit(m.Run())
}

type result struct {
	Failed            bool           `json:"failed"`
	Changed           bool           `json:"changed"`
	Msg               string         `json:"msg"`
	Warnings          []string       `json:"warnings"`
	Members           []MemberStatus `json:"members"`
	LeaderID          string         `json:"leader_id"`
	ClusterVersion    string         `json:"cluster_version"`
	Alarms            []string       `json:"alarms"`
	Order             []string       `json:"order"`
	Defragmented      []Defragmented `json:"defragmented"`
	CompactedRevision int64          `json:"compacted_revision"`
	Disarmed          []string       `json:"disarmed"`
	WriteChecked      bool           `json:"write_checked"`
}

func (r result) member(name string) MemberStatus {
	for _, m := range r.Members {
		if m.Name == name {
			return m
		}
	}
	return MemberStatus{}
}

func execute(t *testing.T, c *etcdtest.Cluster, kv ...any) result {
	t.Helper()
	args := map[string]any{
		"endpoints": c.Endpoints(), "ca_cert": c.CAFile,
		"client_cert": c.Client.Cert, "client_key": c.Client.Key, "dial_timeout": 1, "command_timeout": 20,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		args[kv[i].(string)] = kv[i+1]
	}
	out := modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return r
}

// fill writes n values of 64 KiB under prefix and deletes them again, so
// that after a compaction their pages are free.
func fill(t *testing.T, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	value := strings.Repeat("x", 64<<10)
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), value); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if _, err := cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

func client(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := etcdconn.New(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestDefragment(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	cli := client(t, c)
	fill(t, cli, "/fill/", 320) // 20 MiB
	resp, err := cli.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// etcd counts the freed pages once its backend has committed again:
	// wait for writes (as a real cluster always has) to show them.
	var st result
	for i := 0; ; i++ {
		if _, err := cli.Put(context.Background(), "/tick", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		st = execute(t, c)
		if i == 20 || !slices.ContainsFunc(st.Members, func(m MemberStatus) bool { return m.FreeShare < 0.5 }) {
			break
		}
	}
	leader := c.Leader().Name

	if st.Failed || st.Changed || len(st.Members) != 3 || st.ClusterVersion == "" {
		t.Fatalf("status: %+v", st)
	}
	for _, m := range st.Members {
		t.Logf("%s: db_size %d, in use %d, free share %.2f, version %s, leader %v", m.Name, m.DBSize, m.DBSizeInUse, m.FreeShare, m.Version, m.IsLeader)
		if !m.Healthy || m.FreeShare < 0.5 || m.DBSize < 20<<20 || m.Version == "" || m.RaftApplied == 0 {
			t.Errorf("status of %s: %+v", m.Name, m)
		}
		if m.IsLeader != (m.Name == leader) {
			t.Errorf("%s: is_leader %v, but the leader is %s", m.Name, m.IsLeader, leader)
		}
	}

	// Check mode: the plan, and nothing sent.
	pred := execute(t, c, "state", "defragmented", "_ansible_check_mode", true)
	if pred.Failed || !pred.Changed || len(pred.Order) != 3 || pred.Order[2] != leader {
		t.Fatalf("check mode: %+v", pred)
	}
	again := execute(t, c)
	for _, m := range again.Members {
		if m.DBSize != st.member(m.Name).DBSize {
			t.Errorf("check mode changed %s's size: %d → %d", m.Name, st.member(m.Name).DBSize, m.DBSize)
		}
	}

	start := time.Now()
	res := execute(t, c, "state", "defragmented")
	t.Logf("defragmented in %v: %s", time.Since(start), res.Msg)
	if res.Failed || !res.Changed || len(res.Defragmented) != 3 {
		t.Fatalf("defragmented: %+v", res)
	}
	for i, d := range res.Defragmented {
		if d.Name != pred.Order[i] {
			t.Errorf("defragmented #%d is %s, check mode predicted %s", i, d.Name, pred.Order[i])
		}
		want := st.member(d.Name).DBSizeInUse + 1<<20
		if d.DBSizeAfter > want || d.DBSizeAfter > d.DBSizeBefore/2 {
			t.Errorf("%s: %d → %d bytes, want at most %d (in use before, plus 1 MiB)", d.Name, d.DBSizeBefore, d.DBSizeAfter, want)
		}
		if res.member(d.Name).DBSize != d.DBSizeAfter {
			t.Errorf("%s: members says %d bytes, defragmented %d", d.Name, res.member(d.Name).DBSize, d.DBSizeAfter)
		}
	}
	if last := res.Defragmented[2]; last.Name != leader || !last.WasLeader {
		t.Errorf("the leader %s was not defragmented last: %+v", leader, res.Defragmented)
	}

	second := execute(t, c, "state", "defragmented")
	if second.Failed || second.Changed || len(second.Defragmented) != 0 {
		t.Errorf("second run: %+v", second)
	}

	// A member down stops the run before anything is sent.
	var follower *etcdtest.Member
	for _, m := range c.Members {
		if m.Name != leader {
			follower = m
			break
		}
	}
	c.Stop(follower)
	down := execute(t, c, "state", "defragmented", "force", true)
	if !down.Failed || down.Changed || !strings.Contains(down.Msg, follower.Name) || !strings.Contains(down.Msg, "not every member is healthy") {
		t.Errorf("with %s down: %+v", follower.Name, down)
	}
}

func TestNoSpace(t *testing.T) {
	const quota = 16 << 20
	c := etcdtest.NewCluster(t, 3, etcdtest.QuotaBackendBytes(quota))
	cli := client(t, c)
	ctx := context.Background()
	value := strings.Repeat("x", 64<<10)
	full := false
	for i := range 1000 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/fill/%06d", i), value); err != nil {
			if !etcdconn.IsServerError(err, rpctypes.ErrGRPCNoSpace) {
				t.Fatalf("put %d: %v", i, err)
			}
			full = true
			break
		}
	}
	if !full {
		t.Fatal("no NOSPACE after 1000 puts of 64 KiB")
	}
	if _, err := cli.Delete(ctx, "/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	st := execute(t, c, "quota_bytes", quota)
	if st.Failed || len(st.Alarms) == 0 {
		t.Fatalf("status shows no alarm: %+v", st)
	}
	t.Logf("alarms: %v", st.Alarms)
	for _, m := range st.Members {
		t.Logf("%s: db_size %d, in use %d, quota share %.2f, alarms %v", m.Name, m.DBSize, m.DBSizeInUse, m.QuotaShare, m.Alarms)
	}

	res := execute(t, c, "state", "defragmented", "compact", true, "disarm_nospace", true, "quota_bytes", quota)
	t.Logf("%s", res.Msg)
	for _, d := range res.Defragmented {
		t.Logf("%+v", d)
	}
	if res.Failed || !res.Changed || res.CompactedRevision == 0 || len(res.Disarmed) == 0 || !res.WriteChecked || len(res.Alarms) != 0 {
		t.Fatalf("recovery: %+v", res)
	}
	for _, d := range res.Defragmented {
		t.Logf("%s: %d → %d bytes", d.Name, d.DBSizeBefore, d.DBSizeAfter)
	}
	if _, err := cli.Put(ctx, "/after", "works"); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	probe, err := cli.Get(ctx, ProbePrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || probe.Count != 0 {
		t.Errorf("probe keys left: %v %v", probe, err)
	}
	second := execute(t, c, "state", "defragmented", "compact", true, "disarm_nospace", true)
	if second.Failed {
		t.Fatalf("second run: %+v", second)
	}
	// The write above made a revision to compact, and nothing else.
	if !second.Changed || second.CompactedRevision == 0 || len(second.Defragmented) != 0 || len(second.Disarmed) != 0 {
		t.Errorf("second run: %+v", second)
	}
	third := execute(t, c, "state", "defragmented", "compact", true, "disarm_nospace", true)
	if third.Failed || third.Changed {
		t.Errorf("third run: %+v", third)
	}
}

// withLearner adds a fourth member, m3, as a learner and starts it.
func withLearner(t *testing.T, c *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	cli := client(t, c)
	l := c.NewMember("m3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, err := cli.MemberAddAsLearner(ctx, []string{l.PeerURL})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("add learner: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // a new cluster refuses members for 5 s
	}
	if err := c.StartNew(l, c.InitialCluster(c.Members...)+","+l.Name+"="+l.PeerURL); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestUpgradePlanned(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	leader := c.Leader().Name
	learner := withLearner(t, c)
	ok := execute(t, c, "state", "upgrade_planned", "version", "3.6.99")
	if ok.Failed {
		t.Fatalf("patch upgrade refused: %s", ok.Msg)
	}
	down := execute(t, c, "state", "upgrade_planned", "version", "3.5.26")
	if !down.Failed || !strings.Contains(down.Msg, "downgrade") || !strings.Contains(down.Msg, "Nothing was changed") {
		t.Errorf("downgrade: %+v", down)
	}
	var plan struct {
		Order []UpgradeStep `json:"upgrade_order"`
		Kind  string        `json:"kind"`
	}
	out := modrun.ExecuteArgs(context.Background(), map[string]any{
		"endpoints": c.Endpoints(learner, c.Members[0]), "ca_cert": c.CAFile, "client_cert": c.Client.Cert, "client_key": c.Client.Key,
		"state": "upgrade_planned", "version": "3.6.99",
	}, ModuleSpec, RunModule)
	b, _ := json.Marshal(out)
	if err := json.Unmarshal(b, &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Kind != UpgradePatch || len(plan.Order) != 4 || plan.Order[0].Name != learner.Name || plan.Order[3].Name != leader ||
		!plan.Order[0].Upgrade {
		t.Errorf("plan (through the learner's endpoint first): %s", b)
	}

	alone := execute(t, c, "endpoints", c.Endpoints(learner))
	t.Logf("through a learner alone: %s", alone.Msg)
	if !alone.Failed || !strings.Contains(alone.Msg, "learner") {
		t.Errorf("through a learner alone: %+v", alone)
	}

	// A learner is never sent a defragment; the others are, and the run
	// says so.
	res := execute(t, c, "state", "defragmented", "force", true)
	if res.Failed || len(res.Defragmented) != 3 || res.Defragmented[2].Name != leader ||
		!slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "m3") && strings.Contains(w, "learner") }) {
		t.Errorf("force with a learner: %+v", res)
	}
}

func TestBadArguments(t *testing.T) {
	tests := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"state": "upgrade_planned"}, "version"},
		{map[string]any{"version": "3.6.16"}, "version is only for state=upgrade_planned"},
		{map[string]any{"compact": true}, "compact is only for state=defragmented"},
		{map[string]any{"state": "leader_moved"}, "member"},
		{map[string]any{"lock": true}, "lock is only for state=defragmented"},
		{map[string]any{"member": "etcd1"}, "member is only for state=leader_moved and healthy"},
		{map[string]any{"state": "healthy", "member": "etcd1"}, "give version too"},
		{map[string]any{"state": "healthy", "version": "3.6"}, "not an etcd release"},
		{map[string]any{"state": "healthy", "wait_timeout": 0}, "wait_timeout must be positive"},
		{map[string]any{"state": "healthy", "max_lag": -1}, "max_lag must be 0 or more"},
		{map[string]any{"state": "defragmented", "min_free_share": 1.5}, "min_free_share is a share"},
		{map[string]any{"state": "defragmented", "min_free_bytes": -1}, "min_free_bytes must be positive"},
		{map[string]any{"quota_bytes": 0}, "quota_bytes must be positive"},
		{map[string]any{"state": "defragment"}, "state"},
		{map[string]any{"endpoints": []string{"127.0.0.1:2379"}}, "is not a URL"},
		{map[string]any{"endpoints": []string{"tcp://127.0.0.1:2379"}}, "scheme must be http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			args := map[string]any{"endpoints": []string{"https://127.0.0.1:1"}, "ca_cert": "/nonexistent/ca.pem"}
			for k, v := range tt.args {
				args[k] = v
			}
			out := modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
			msg, _ := out["msg"].(string)
			if out["failed"] != true || !strings.Contains(msg, tt.want) {
				t.Errorf("%v: %v", tt.args, out)
			}
		})
	}
}

// compact=true on a cluster nothing else writes to: the pages the
// compaction frees are counted by each member only after its backend has
// committed twice more, which the module brings about itself, so every
// member is defragmented by the default free-share threshold.
func TestCompactThenDefragmentIdle(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	fill(t, client(t, c), "/fill/", 160) // 10 MiB
	res := execute(t, c, "state", "defragmented", "compact", true)
	if res.Failed || !res.Changed || res.CompactedRevision == 0 {
		t.Fatalf("compact and defragment: %+v", res)
	}
	if len(res.Defragmented) != 3 {
		t.Fatalf("defragmented %d members after the compaction, want 3: %s", len(res.Defragmented), res.Msg)
	}
	for _, d := range res.Defragmented {
		if d.DBSizeAfter > d.DBSizeBefore/2 {
			t.Errorf("%s: %d → %d bytes", d.Name, d.DBSizeBefore, d.DBSizeAfter)
		}
	}
}
