package discover

import (
	"context"
	"errors"
	"fmt"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_facts module.
var ModuleSpec = modrun.Spec{Options: []modrun.Option{
	{Name: "unit", Type: modrun.TypeStr, Default: DefaultUnit},
	{Name: "connect", Type: modrun.TypeBool, Default: true},
	{Name: "dial_timeout", Type: modrun.TypeFloat, Default: 5},
	{Name: "binary", Type: modrun.TypePath},
}}

type options struct {
	Unit        string  `json:"unit"`
	Connect     bool    `json:"connect"`
	DialTimeout float64 `json:"dial_timeout"`
	Binary      string  `json:"binary"`
}

// Facts is what etcd_facts returns as the etcd_local fact.
type Facts struct {
	Found bool `json:"found"`
	Member
	ClientEndpoints []string `json:"client_endpoints"`
	// From the member itself (connect=true), when it answers.
	MemberID  string `json:"member_id"`
	ClusterID string `json:"cluster_id"`
	LeaderID  string `json:"leader_id"`
	IsLearner bool   `json:"is_learner"`
	Healthy   bool   `json:"healthy"`
	Error     string `json:"error,omitempty"`
}

// ConnOptions are the connection options that reach this member with its
// own TLS files: its client URLs, the CA it trusts for clients, and its
// server certificate, which kubeasz and this project issue for client
// authentication too.
func (m Member) ConnOptions() etcdconn.Options {
	o := etcdconn.Options{Endpoints: m.ClientEndpoints(), DialTimeout: 5, CommandTimeout: 30}
	t := m.ClientTLS
	if t.TrustedCAFile == "" {
		t.TrustedCAFile = m.PeerTLS.TrustedCAFile
	}
	o.CACert, o.ClientCert, o.ClientKey = t.TrustedCAFile, t.CertFile, t.KeyFile
	return o
}

// RunModule runs the etcd_facts module: read-only, it never changes
// anything, so check mode is the same run.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if o.DialTimeout <= 0 {
		return nil, fmt.Errorf("dial_timeout must be positive, got %v", o.DialTimeout)
	}
	if o.Binary != "" {
		return binaryVersion(ctx, o.Binary)
	}
	mem, err := Local(ctx, o.Unit)
	if errors.Is(err, ErrNoUnit) {
		return modrun.Result{"changed": false, "found": false,
			"msg":           fmt.Sprintf("no etcd here: systemd has no unit %s", o.Unit),
			"ansible_facts": map[string]any{"etcd_local": Facts{Found: false}}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find out how etcd runs here: %w", err)
	}
	if mem.Version, err = BinaryVersion(ctx, mem.Binary); err != nil {
		return nil, fmt.Errorf("find out which etcd runs here: %w", err)
	}
	f := Facts{Found: true, Member: mem, ClientEndpoints: mem.ClientEndpoints()}
	if o.Connect && mem.Unit.ActiveState != "inactive" && mem.Unit.ActiveState != "failed" {
		co := mem.ConnOptions()
		co.DialTimeout = o.DialTimeout
		if len(co.Endpoints) > 0 {
			st := etcdconn.Probe(ctx, co, co.Endpoints[0])
			if st.Status != nil {
				h := st.Status.Header
				f.MemberID, f.ClusterID = fmt.Sprintf("%x", h.MemberId), fmt.Sprintf("%x", h.ClusterId)
				f.LeaderID, f.IsLearner = fmt.Sprintf("%x", st.Status.Leader), st.Status.IsLearner
			}
			f.Healthy = st.Healthy()
			if st.Err != nil {
				f.Error = st.Err.Error()
			}
		}
	}
	msg := fmt.Sprintf("etcd %s runs here as %s (%s layout), member %q", mem.Version, mem.Unit.Name, mem.Layout, mem.Name)
	return modrun.Result{"changed": false, "found": true, "msg": msg, "layout": mem.Layout,
		"ansible_facts": map[string]any{"etcd_local": f}}, nil
}

// binaryVersion is etcd_facts with binary: the version that etcd binary
// reports (as "etcd --version" prints it), and nothing else; no fact is set.
func binaryVersion(ctx context.Context, binary string) (modrun.Result, error) {
	v, err := BinaryVersion(ctx, binary)
	if err != nil {
		return nil, fmt.Errorf("find out which etcd %s is: %w", binary, err)
	}
	return modrun.Result{"changed": false, "binary": binary, "version": v,
		"msg": fmt.Sprintf("%s is etcd %s", binary, v)}, nil
}
