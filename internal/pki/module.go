package pki

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_cert module.
var ModuleSpec = modrun.Spec{Options: []modrun.Option{
	{Name: "path", Type: modrun.TypePath, Required: true},
	{Name: "ca_common_name", Type: modrun.TypeStr, Default: "etcd-ca"},
	{Name: "name", Type: modrun.TypeStr},
	{Name: "common_name", Type: modrun.TypeStr},
	{Name: "usage", Type: modrun.TypeStr, Default: "member", Choices: []string{"member", "client"}},
	{Name: "ip_addresses", Type: modrun.TypeList, Elements: modrun.TypeStr, Default: []any{}},
	{Name: "dns_names", Type: modrun.TypeList, Elements: modrun.TypeStr, Default: []any{}},
	{Name: "validity_days", Type: modrun.TypeInt, Default: 3650},
	{Name: "renew_before_days", Type: modrun.TypeInt, Default: 30},
}}

type options struct {
	Path            string   `json:"path"`
	CACommonName    string   `json:"ca_common_name"`
	Name            string   `json:"name"`
	CommonName      string   `json:"common_name"`
	Usage           string   `json:"usage"`
	IPAddresses     []string `json:"ip_addresses"`
	DNSNames        []string `json:"dns_names"`
	ValidityDays    int      `json:"validity_days"`
	RenewBeforeDays int      `json:"renew_before_days"`
}

// RunModule runs the etcd_cert module.
func RunModule(_ context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if o.ValidityDays < 1 || o.RenewBeforeDays < 0 || o.RenewBeforeDays >= o.ValidityDays {
		return nil, fmt.Errorf("validity_days must be positive and renew_before_days smaller (got %d and %d)", o.ValidityDays, o.RenewBeforeDays)
	}
	req := Request{CommonName: o.CommonName, DNSNames: o.DNSNames, Usage: Usage(o.Usage),
		Validity: time.Duration(o.ValidityDays) * 24 * time.Hour}
	if req.CommonName == "" {
		req.CommonName = o.Name
	}
	for _, s := range o.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("ip_addresses: %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	store := Store{Dir: o.Path}
	res := modrun.Result{}
	if !m.Meta.CheckMode {
		unlock, err := store.Lock()
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	// The CA lives 10 years more than any leaf it signs would need.
	ca, err := store.EnsureCA(o.CACommonName, req.Validity+3650*24*time.Hour, m.Meta.CheckMode)
	if err != nil {
		return nil, err
	}
	res["ca_cert"] = ca.Cert
	changed := ca.Changed
	var reasons []string
	if ca.Changed {
		reasons = append(reasons, "CA: "+ca.Reason)
	}
	if o.Name != "" {
		cert, key := store.Paths(o.Name)
		out := Outcome{Changed: true, Reason: "no CA yet", Cert: cert, Key: key}
		// In check mode a CA that does not exist yet cannot be read, and a
		// leaf under a new CA is new anyway.
		if !(m.Meta.CheckMode && ca.Changed) {
			out, err = store.Ensure(o.Name, req, time.Duration(o.RenewBeforeDays)*24*time.Hour, m.Meta.CheckMode)
			if err != nil {
				return res, err
			}
		}
		res["cert"], res["key"] = out.Cert, out.Key
		if out.Changed {
			changed = true
			reasons = append(reasons, o.Name+": "+out.Reason)
		}
	}
	res["changed"] = changed
	if changed {
		res["msg"] = fmt.Sprintf("issued (%v)", reasons)
	} else {
		res["msg"] = "certificates are up to date"
	}
	return res, nil
}
