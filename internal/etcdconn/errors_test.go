package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdops/etcdops/internal/pki"
)

// TestDescribeClassifiesByType: errors are told apart by their types, never
// by their text, so an error that merely reads like another is not taken
// for it (a reset is not a TLS problem).
func TestDescribeClassifiesByType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // "" no hint: the message is the error's own text
	}{
		{"reset is not TLS", fmt.Errorf("read: %w", syscall.ECONNRESET), ""},
		{"text of a reset is not TLS", errors.New("read tcp 127.0.0.1:2379: connection reset by peer"), ""},
		{"text of a server error is not it", errors.New(rpctypes.ErrorDesc(rpctypes.ErrGRPCMemberExist)), ""},
		{"server error as gRPC status", rpctypes.ErrGRPCUnhealthy, "unsafe for the cluster's health"},
		{"server error as the client returns it", fmt.Errorf("add: %w", rpctypes.ErrMemberExist), "the member already exists"},
		{"learner not ready is not 'not a learner'", rpctypes.ErrGRPCLearnerNotReady, "has not caught up"},
		{"permission denied", rpctypes.ErrPermissionDenied, "permission denied"},
		{"no leader", rpctypes.ErrNoLeader, "no leader"},
		{"deadline", fmt.Errorf("status: %w", context.DeadlineExceeded), "timed out"},
		{"deadline as gRPC status", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "timed out"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "connection refused: is etcd running"},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}, "cannot be reached"},
		{"wrong CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "not signed by ca_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Describe(tt.err)
			switch {
			case tt.want == "" && got != rpctypes.ErrorDesc(tt.err):
				t.Errorf("Describe = %q, want the error's own text %q", got, rpctypes.ErrorDesc(tt.err))
			case tt.want != "" && (!strings.HasPrefix(got, hint(tt.err)) || !strings.Contains(got, tt.want)):
				t.Errorf("Describe = %q, want it to start with a hint saying %q", got, tt.want)
			}
		})
	}
}

func TestErrorIsDescribedOnce(t *testing.T) {
	inner := &Error{Op: "https://10.0.0.1:2379", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	err := &Error{Op: "connect", Err: Join(inner, &Error{Op: "https://10.0.0.2:2379", Err: rpctypes.ErrGRPCNoLeader})}
	msg := err.Error()
	if n := strings.Count(msg, "connection refused: is etcd running"); n != 1 {
		t.Errorf("%q describes the refusal %d times", msg, n)
	}
	if !strings.Contains(msg, "10.0.0.2:2379: the cluster has no leader") {
		t.Errorf("%q: each endpoint's failure is not described on its own", msg)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !IsServerError(err, rpctypes.ErrGRPCNoLeader) {
		t.Error("the failures cannot be found in the error any more")
	}
}

// TestDiagnose connects to real TLS servers that refuse the connection
// each in its own way, and to a plain HTTP server and a closed port.
func TestDiagnose(t *testing.T) {
	must := func(p pki.Pair, err error) pki.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := must(pki.NewCA("ca", time.Hour))
	other := must(pki.NewCA("other", time.Hour))
	local := []net.IP{net.ParseIP("127.0.0.1")}
	server := must(pki.Issue(ca, pki.Request{CommonName: "m0", IPs: local, Usage: pki.UsageMember, Validity: time.Hour}))
	elsewhere := must(pki.Issue(ca, pki.Request{CommonName: "m1", IPs: []net.IP{net.ParseIP("10.9.9.9")}, Usage: pki.UsageMember, Validity: time.Hour}))
	client := must(pki.Issue(ca, pki.Request{CommonName: "root", Usage: pki.UsageClient, Validity: time.Hour}))
	foreign := must(pki.Issue(other, pki.Request{CommonName: "root", Usage: pki.UsageClient, Validity: time.Hour}))

	good := tlsServer(t, ca, server)
	misnamed := tlsServer(t, ca, elsewhere)
	plain := plainServer(t)
	closed := closedPort(t)

	tests := []struct {
		name     string
		endpoint string
		cfg      *tls.Config
		want     string // "" the connection is accepted
	}{
		{"accepted", good, clientConfig(t, ca, &client), ""},
		{"wrong CA", good, clientConfig(t, other, &client), "not signed by ca_cert"},
		{"no client certificate", good, clientConfig(t, ca, nil), "refused the client certificate"},
		{"client certificate of another CA", good, clientConfig(t, ca, &foreign), "refused the client certificate"},
		{"server certificate for another address", misnamed, clientConfig(t, ca, &client), "does not name this endpoint's address"},
		{"plain HTTP", plain, clientConfig(t, ca, &client), "speaks plain HTTP"},
		{"closed port", closed, clientConfig(t, ca, &client), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := diagnose(tt.endpoint, tt.cfg, 2*time.Second)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("diagnose = %v, want the connection accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(Describe(err), tt.want)):
				t.Fatalf("diagnose = %v (%q), want %q", err, Describe(err), tt.want)
			}
		})
	}
}

func clientConfig(t *testing.T, ca pki.Pair, cert *pki.Pair) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// tlsServer serves TLS 1.3 on a loopback port as etcd does with
// --client-cert-auth: a client certificate signed by ca is required. It
// reads what a client sends and answers nothing, as etcd waits for the
// client's first bytes.
func tlsServer(t *testing.T, ca, cert pki.Pair) string {
	t.Helper()
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	return "https://" + ln.Addr().String()
}

func plainServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, func(c net.Conn) {
		c.Read(make([]byte, 512))
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	})
	return "https://" + ln.Addr().String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

func serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
