package recovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// Survivor is what one host's etcd says about itself: from the running
// member's Status (which etcd answers without a quorum, with "no leader"
// among its errors) and its own member list, or, when etcd does not
// answer, from its database file.
type Survivor struct {
	Host     string   `json:"host"`
	Name     string   `json:"name"`
	PeerURLs []string `json:"peer_urls"`
	Running  bool     `json:"running"`
	// Source is where the indexes come from: "status" (the running
	// member) or "data" (its database file, etcd stopped).
	Source       string `json:"source"`
	MemberID     string `json:"member_id"`
	ClusterID    string `json:"cluster_id"`
	LeaderID     string `json:"leader_id"`
	IsLearner    bool   `json:"is_learner"`
	RaftTerm     uint64 `json:"raft_term"`
	RaftIndex    uint64 `json:"raft_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Revision     int64  `json:"revision"`
	// Quorum: a linearizable read through this member answered, so the
	// cluster it belongs to has a quorum.
	Quorum  bool         `json:"quorum"`
	Members []MemberInfo `json:"members"`
	DataDir string       `json:"data_dir"`
	Error   string       `json:"error,omitempty"`
}

// MemberInfo is one entry of a member list.
type MemberInfo struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	IsLearner  bool     `json:"is_learner"`
}

// HasData: the survivor's indexes are known, so it can be recovered from.
func (s Survivor) HasData() bool { return s.Source != "" }

// Inspect asks the member at its own client URL (o.Endpoints[0]) for its
// status, its member list (serializable: served without a quorum) and a
// linearizable read; when it does not answer, it reads the database file
// under dataDir instead. Inspect fails only when neither answers.
func Inspect(ctx context.Context, o etcdconn.Options, name, dataDir string) (Survivor, error) {
	s := Survivor{Name: name, DataDir: dataDir}
	st := etcdconn.Probe(ctx, o, o.Endpoints[0])
	if st.Status != nil {
		h := st.Status.Header
		s.Running, s.Source = true, "status"
		s.MemberID, s.ClusterID = hexID(h.MemberId), hexID(h.ClusterId)
		if st.Status.Leader != 0 {
			s.LeaderID = hexID(st.Status.Leader)
		}
		s.IsLearner = st.Status.IsLearner
		s.RaftTerm, s.RaftIndex, s.AppliedIndex = st.Status.RaftTerm, st.Status.RaftIndex, st.Status.RaftAppliedIndex
		s.Revision = h.Revision
		cli, err := etcdconn.New(o, o.Endpoints[0])
		if err != nil {
			return s, fmt.Errorf("connect to %s: %w", o.Endpoints[0], err)
		}
		defer cli.Close()
		if s.Members, err = memberList(ctx, cli, o.CommandTimeoutDuration()); err != nil {
			s.Error = etcdconn.Describe(err)
		}
		s.Quorum = quorumRead(ctx, cli, o.DialTimeoutDuration())
		return s, nil
	}
	b, err := ReadBackend(DBPath(dataDir))
	if err != nil {
		return s, fmt.Errorf("etcd does not answer (%s) and its data cannot be read: %w", etcdconn.Describe(st.Err), err)
	}
	s.Source, s.Error = "data", etcdconn.Describe(st.Err)
	s.AppliedIndex, s.RaftIndex, s.RaftTerm, s.Revision = b.ConsistentIndex, b.ConsistentIndex, b.Term, b.Revision
	return s, nil
}

func memberList(ctx context.Context, cli *clientv3.Client, timeout time.Duration) ([]MemberInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := cli.MemberList(cctx, clientv3.WithSerializable())
	if err != nil {
		return nil, &etcdconn.Error{Op: "list the members", Err: err}
	}
	out := make([]MemberInfo, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, MemberInfo{ID: hexID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out, nil
}

// quorumRead makes the read etcdctl's endpoint health makes: a
// linearizable get, which the member serves only once a quorum has
// confirmed its leader. Permission denied is an answer too.
func quorumRead(ctx context.Context, cli *clientv3.Client, timeout time.Duration) bool {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cli.Get(cctx, "health")
	return err == nil || errors.Is(err, rpctypes.ErrPermissionDenied)
}

func hexID(id uint64) string { return fmt.Sprintf("%x", id) }
