// Package etcdconn holds what the etcd modules share about reaching a
// cluster: the connection options, TLS set-up, a quiet client, per-endpoint
// probes, and errors that keep their types and say what they mean.
package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"

	"github.com/etcdops/etcdops/internal/modrun"
)

// Options are the connection options every etcd module takes.
type Options struct {
	Endpoints      []string `json:"endpoints"`
	CACert         string   `json:"ca_cert"`
	ClientCert     string   `json:"client_cert"`
	ClientKey      string   `json:"client_key"`
	DialTimeout    float64  `json:"dial_timeout"`
	CommandTimeout float64  `json:"command_timeout"`
}

// SpecOptions declares the connection options, for a module's modrun.Spec.
func SpecOptions() []modrun.Option {
	return []modrun.Option{
		{Name: "endpoints", Type: modrun.TypeList, Elements: modrun.TypeStr},
		{Name: "ca_cert", Type: modrun.TypePath},
		{Name: "client_cert", Type: modrun.TypePath},
		{Name: "client_key", Type: modrun.TypePath},
		{Name: "dial_timeout", Type: modrun.TypeFloat, Default: 5},
		{Name: "command_timeout", Type: modrun.TypeFloat, Default: 30},
	}
}

// SpecRequiredTogether is the rule that a client certificate needs its key.
var SpecRequiredTogether = []string{"client_cert", "client_key"}

// Validate checks the options before any connection is made: endpoint URLs
// parse and have a scheme etcd serves, certificate files are readable, the
// timeouts are positive.
func (o Options) Validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("endpoints: at least one endpoint is needed")
	}
	for _, ep := range o.Endpoints {
		if _, err := ParseURL(ep); err != nil {
			return fmt.Errorf("endpoints: %w", err)
		}
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		return errors.New("client_cert and client_key must be given together")
	}
	for _, f := range []struct{ name, path string }{{"ca_cert", o.CACert}, {"client_cert", o.ClientCert}, {"client_key", o.ClientKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.name, unwrapPathError(err))
		}
	}
	if o.DialTimeout <= 0 {
		return fmt.Errorf("dial_timeout must be positive, got %v", o.DialTimeout)
	}
	if o.CommandTimeout <= 0 {
		return fmt.Errorf("command_timeout must be positive, got %v", o.CommandTimeout)
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// ParseURL checks one etcd URL (client or peer): http or https, a host and
// a port, nothing else.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%q: a URL needs a host and a port, like https://10.0.0.1:2379", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q: a URL has only scheme, host and port", s)
	}
	return u, nil
}

// DialTimeoutDuration and CommandTimeoutDuration convert the seconds options.
func (o Options) DialTimeoutDuration() time.Duration {
	return time.Duration(o.DialTimeout * float64(time.Second))
}

// CommandTimeoutDuration is the time one operation (with retries) may take.
func (o Options) CommandTimeoutDuration() time.Duration {
	return time.Duration(o.CommandTimeout * float64(time.Second))
}

// TLSConfig builds the client TLS configuration, or nil when no TLS file is
// given (then https endpoints use the system roots).
func (o Options) TLSConfig() (*tls.Config, error) {
	if o.CACert == "" && o.ClientCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("ca_cert: %w", unwrapPathError(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_cert %s: no PEM certificate in it", o.CACert)
		}
		cfg.RootCAs = pool
	}
	if o.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client_cert/client_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Silence stops the gRPC library from logging; a module's output is its
// JSON result and nothing else.
func Silence() {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
}

// New connects to the given endpoints (all of o.Endpoints when none are
// given). The client never logs.
func New(o Options, endpoints ...string) (*clientv3.Client, error) {
	return dial(o, nil, endpoints)
}

// NewBulk connects to one endpoint for a large download (a snapshot): with
// flow-control windows and a read buffer sized for a stream of hundreds of
// MiB rather than gRPC's defaults (64 KiB windows grown by probing, 32 KiB
// reads), so the server is not held back waiting for window updates and
// the stream is read in fewer system calls.
func NewBulk(o Options, endpoint string) (*clientv3.Client, error) {
	return dial(o, []grpc.DialOption{
		grpc.WithInitialWindowSize(bulkWindow),
		grpc.WithInitialConnWindowSize(bulkWindow),
		grpc.WithReadBufferSize(bulkReadBuffer),
	}, []string{endpoint})
}

// Sizes for NewBulk.
const (
	bulkWindow     = 8 << 20
	bulkReadBuffer = 256 << 10
)

func dial(o Options, extra []grpc.DialOption, endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = o.Endpoints
	}
	tlsCfg, err := o.TLSConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          o.DialTimeoutDuration(),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(),
		// A blocking dial that keeps the last connection error surfaces TLS
		// and refused-connection errors at once instead of a bare timeout.
		//lint:ignore SA1019 still supported by the client/v3 dialer throughout grpc 1.x
		DialOptions: append([]grpc.DialOption{grpc.WithReturnConnectionError()}, extra...),
	})
	if err != nil {
		// gRPC returns a dial failure as text; ask the endpoints again
		// for a cause with a type.
		if cause := diagnoseAll(endpoints, tlsCfg, min(o.DialTimeoutDuration(), diagnoseTimeout)); cause != nil {
			err = cause
		}
		return nil, &Error{Op: "connect to " + strings.Join(endpoints, ","), Err: err}
	}
	return cli, nil
}

// diagnoseTimeout bounds the diagnosis of a failed connection.
const diagnoseTimeout = time.Second

// diagnoseAll diagnoses the endpoints concurrently and returns what went
// wrong at each, or nil when each accepted a connection.
func diagnoseAll(endpoints []string, cfg *tls.Config, timeout time.Duration) error {
	errs := make([]error, len(endpoints))
	done := make(chan struct{}, len(endpoints))
	for i, ep := range endpoints {
		go func() {
			errs[i] = diagnose(ep, cfg, timeout)
			done <- struct{}{}
		}()
	}
	for range endpoints {
		<-done
	}
	var list errorList
	for i, err := range errs {
		if err != nil {
			list = append(list, &Error{Op: endpoints[i], Err: err})
		}
	}
	switch {
	case len(list) == 0:
		return nil
	case len(endpoints) == 1:
		return errs[0]
	}
	return list
}

// diagnose connects to endpoint as the client does, TCP and then TLS, and
// returns what went wrong as the typed errors of net and crypto/tls, or nil
// when the connection was accepted. TLS 1.3 servers check the client's
// certificate after the client has finished its handshake: a refusal is
// an alert on the first read, which this connection waits for briefly
// (gRPC writes at once and then sees the server's reset instead).
func diagnose(endpoint string, cfg *tls.Config, timeout time.Duration) error {
	u, err := ParseURL(endpoint)
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	conn, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if u.Scheme != "https" {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg != nil {
		c = cfg.Clone()
	}
	c.ServerName, c.NextProtos = u.Hostname(), []string{"h2"}
	tc := tls.Client(conn, c)
	if err := tc.SetDeadline(deadline); err != nil {
		return nil
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	if err := tc.SetReadDeadline(time.Now().Add(min(timeout, 300*time.Millisecond))); err != nil {
		return nil
	}
	_, err = tc.Read(make([]byte, 1))
	if _, ok := remoteAlert(err); ok {
		return err
	}
	return nil
}

// EndpointStatus is what one endpoint answered to a Status call.
type EndpointStatus struct {
	Endpoint string
	Status   *clientv3.StatusResponse
	Err      error
}

// Healthy reports whether the endpoint answered and has no alarm or error
// of its own.
func (s EndpointStatus) Healthy() bool {
	return s.Err == nil && s.Status != nil && len(s.Status.Errors) == 0
}

// Probe asks one endpoint for its status, over a client of its own so that
// the answer comes from that member and no other.
func Probe(ctx context.Context, o Options, endpoint string) EndpointStatus {
	res := EndpointStatus{Endpoint: endpoint}
	cli, err := New(o, endpoint)
	if err != nil {
		res.Err = err
		return res
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, o.DialTimeoutDuration())
	defer cancel()
	st, err := cli.Status(cctx, endpoint)
	if err != nil {
		res.Err = &Error{Op: endpoint, Err: err}
		return res
	}
	res.Status = st
	return res
}

// ProbeAll probes every endpoint concurrently and returns the statuses in
// the order of endpoints.
func ProbeAll(ctx context.Context, o Options, endpoints []string) []EndpointStatus {
	out := make([]EndpointStatus, len(endpoints))
	done := make(chan struct{}, len(endpoints))
	for i, ep := range endpoints {
		go func() {
			out[i] = Probe(ctx, o, ep)
			done <- struct{}{}
		}()
	}
	for range endpoints {
		<-done
	}
	return out
}
