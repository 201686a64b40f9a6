package discover

import (
	"context"
	"fmt"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

// FillConn completes the connection options a task left out from the etcd
// that runs on this host, so that a module run on a member needs no
// arguments: no endpoints means the member's own client URLs; no TLS file
// at all means the member's own CA and certificate. Options the task gave
// are kept. Where endpoints are given and no etcd runs here, the options
// stay as they are (https is then checked against the system roots). The
// options are then validated (etcdconn.Options.Validate), as every module
// needs before it connects.
func FillConn(ctx context.Context, o *etcdconn.Options) error {
	needEndpoints := len(o.Endpoints) == 0
	needTLS := o.CACert == "" && o.ClientCert == "" && o.ClientKey == ""
	if !needEndpoints && !needTLS {
		return o.Validate()
	}
	m, err := Local(ctx, DefaultUnit)
	if err != nil {
		if needEndpoints {
			return fmt.Errorf("no endpoints given, and the etcd of this host cannot be used instead: %w", err)
		}
		return o.Validate()
	}
	local := m.ConnOptions()
	if needEndpoints {
		o.Endpoints = local.Endpoints
		if len(o.Endpoints) == 0 {
			return fmt.Errorf("no endpoints given, and the etcd of this host (%s) has no client URL a client can dial", m.Unit.Name)
		}
	}
	if needTLS {
		o.CACert, o.ClientCert, o.ClientKey = local.CACert, local.ClientCert, local.ClientKey
	}
	return o.Validate()
}
