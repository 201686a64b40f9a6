package maint

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// View is the cluster at one moment: its members with their status, and
// the alarms.
type View struct {
	ClusterID      uint64
	LeaderID       uint64
	ClusterVersion string // "3.6.0", from /version; empty when unknown
	Members        []*Member
	// Alarms lists every active alarm, "NOSPACE on etcd1 (…)".
	Alarms []string
}

// Unhealthy returns the members that are not healthy.
func (v *View) Unhealthy() []*Member {
	var out []*Member
	for _, m := range v.Members {
		if !m.Healthy {
			out = append(out, m)
		}
	}
	return out
}

func (v *View) member(id uint64) *Member {
	for _, m := range v.Members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// observe reads the member list and the alarms through the endpoints, then
// asks every member, at its own client URLs, for its status.
func observe(ctx context.Context, o etcdconn.Options) (*View, error) {
	list, alarms, err := listAll(ctx, o)
	if err != nil {
		return nil, err
	}
	v := &View{ClusterID: list.Header.ClusterId}
	owner := map[string]*Member{}
	var urls []string
	for _, pm := range list.Members {
		m := &Member{ID: pm.ID, Name: pm.Name, IsLearner: pm.IsLearner, ClientURLs: slices.Clone(pm.ClientURLs)}
		v.Members = append(v.Members, m)
		for _, u := range m.ClientURLs {
			owner[u] = m
			urls = append(urls, u)
		}
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID })
	for _, a := range alarms.Alarms {
		name := alarmName(a.Alarm)
		if m := v.member(a.MemberID); m != nil {
			m.Alarms = append(m.Alarms, name)
			v.Alarms = append(v.Alarms, name+" on "+m.Label())
		} else {
			v.Alarms = append(v.Alarms, fmt.Sprintf("%s on member %x", name, a.MemberID))
		}
	}

	problems := map[*Member][]string{}
	var term uint64
	for _, s := range etcdconn.ProbeAll(ctx, o, urls) {
		m := owner[s.Endpoint]
		if s.Status == nil {
			problems[m] = append(problems[m], etcdconn.Describe(s.Err))
			continue
		}
		st := s.Status
		if st.Header.ClusterId != v.ClusterID || st.Header.MemberId != m.ID {
			problems[m] = append(problems[m], fmt.Sprintf("%s answers as member %x of cluster %x", s.Endpoint, st.Header.MemberId, st.Header.ClusterId))
			continue
		}
		if st.Leader != 0 && st.RaftTerm >= term {
			term, v.LeaderID = st.RaftTerm, st.Leader
		}
		var errs []string
		for _, e := range st.Errors {
			if !strings.Contains(e, "NOSPACE") {
				errs = append(errs, e)
			}
		}
		if m.HasAlarm("CORRUPT") {
			errs = append(errs, "CORRUPT alarm")
		}
		if st.Leader == 0 {
			errs = append(errs, "no leader")
		}
		healthy := len(errs) == 0
		if m.Endpoint != "" && (m.Healthy || !healthy) {
			continue // an answer from another of its URLs is kept
		}
		m.Endpoint, m.Healthy = s.Endpoint, healthy
		m.Version, m.DBSize, m.DBSizeInUse = st.Version, st.DbSize, st.DbSizeInUse
		m.RaftIndex, m.RaftApplied, m.Revision = st.RaftIndex, st.RaftAppliedIndex, st.Header.Revision
		if !healthy {
			problems[m] = append(problems[m], s.Endpoint+": "+strings.Join(errs, ", "))
		}
	}
	for _, m := range v.Members {
		m.IsLeader = m.ID == v.LeaderID && v.LeaderID != 0
		switch {
		case m.Healthy:
		case m.Name == "":
			m.Problem = "added but not started"
		case len(problems[m]) > 0:
			m.Problem = strings.Join(problems[m], "; ")
		case len(m.ClientURLs) == 0:
			m.Problem = "advertises no client URL"
		default:
			m.Problem = "did not answer"
		}
	}
	v.ClusterVersion = clusterVersion(ctx, o, v)
	return v, nil
}

// listAll reads the member list and the alarms through the first endpoint
// that serves both: a learner or a member down does not, and a client over
// all endpoints may pick either.
func listAll(ctx context.Context, o etcdconn.Options) (*clientv3.MemberListResponse, *clientv3.AlarmResponse, error) {
	var errs []error
	for _, ep := range o.Endpoints {
		list, alarms, err := listAt(ctx, o, ep)
		if err == nil {
			return list, alarms, nil
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("cannot read the member list and alarms: %w", etcdconn.Join(errs...))
}

func listAt(ctx context.Context, o etcdconn.Options, ep string) (*clientv3.MemberListResponse, *clientv3.AlarmResponse, error) {
	cli, err := etcdconn.New(o, ep)
	if err != nil {
		return nil, nil, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, o.CommandTimeoutDuration())
	defer cancel()
	list, err := cli.MemberList(cctx)
	if err != nil {
		return nil, nil, &etcdconn.Error{Op: "list the members at " + ep, Err: err}
	}
	alarms, err := cli.AlarmList(cctx)
	if err != nil {
		return nil, nil, &etcdconn.Error{Op: "list the alarms at " + ep, Err: err}
	}
	return list, alarms, nil
}

func alarmName(a pb.AlarmType) string {
	switch a {
	case pb.AlarmType_NOSPACE:
		return "NOSPACE"
	case pb.AlarmType_CORRUPT:
		return "CORRUPT"
	}
	return a.String()
}

// clusterVersion asks the members' /version endpoint for the cluster
// version, the first that answers; "" when none does.
func clusterVersion(ctx context.Context, o etcdconn.Options, v *View) string {
	tlsCfg, err := o.TLSConfig()
	if err != nil {
		return ""
	}
	hc := &http.Client{Timeout: o.DialTimeoutDuration(), Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	for _, m := range v.Members {
		if m.Endpoint == "" {
			continue
		}
		u, err := url.JoinPath(m.Endpoint, "version")
		if err != nil {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var vs struct {
			Cluster string `json:"etcdcluster"`
		}
		if err == nil && resp.StatusCode == http.StatusOK && json.Unmarshal(body, &vs) == nil && vs.Cluster != "" && vs.Cluster != "not_decided" {
			return vs.Cluster
		}
	}
	return ""
}
