package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"reflect"
	"strings"
	"syscall"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed request to etcd. Op says what was asked, of whom
// ("connect to https://10.0.0.1:2379", an endpoint, "add etcd4"), or is
// empty when the message around the error says it. The message is Op, then
// what the failure most likely means for the operator, then the client's
// own text; Unwrap gives the failure itself, for errors.Is and errors.As.
// The failure is described here and nowhere else, when the message is
// printed.
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string {
	if e.Op == "" {
		return Describe(e.Err)
	}
	return e.Op + ": " + Describe(e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// errorList is several failures, one per endpoint, each described on its
// own.
type errorList []error

func (l errorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (l errorList) Unwrap() []error { return l }

// Join returns the errors as one, its message theirs joined by "; ", or nil
// when there are none.
func Join(errs ...error) error {
	var l errorList
	for _, err := range errs {
		if err != nil {
			l = append(l, err)
		}
	}
	if len(l) == 0 {
		return nil
	}
	return l
}

// ServerError returns the etcd server error err carries (one of rpctypes'
// errors), whether the client converted it already or it arrived as a
// gRPC status.
func ServerError(err error) (rpctypes.EtcdError, bool) {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee, true
	}
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		ee, ok := rpctypes.Error(gs.GRPCStatus().Err()).(rpctypes.EtcdError)
		return ee, ok
	}
	return ee, false
}

// IsServerError reports whether err is the etcd server error target, one
// of rpctypes.ErrGRPC*.
func IsServerError(err, target error) bool {
	want, ok := rpctypes.Error(target).(rpctypes.EtcdError)
	got, gok := ServerError(err)
	return ok && gok && got == want
}

// Describe turns an error from the etcd client into a sentence an operator
// can act on: what it most likely means, then its own text (the TLS error,
// say). An error that holds an Error is described by it.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var described *Error
	if errors.As(err, &described) {
		return err.Error()
	}
	text := rpctypes.ErrorDesc(err) // a gRPC status without its "rpc error: code = …" prefix
	h := hint(err)
	if h == "" {
		return text
	}
	if text == "" || strings.Contains(h, text) {
		return h
	}
	return h + " (" + text + ")"
}

// serverHints say what etcd's refusals mean.
var serverHints = []struct {
	err  error
	hint string
}{
	{rpctypes.ErrGRPCPeerURLExist, "etcd says the peer URL is already used by a member"},
	{rpctypes.ErrGRPCMemberExist, "etcd says the member already exists"},
	{rpctypes.ErrGRPCMemberNotFound, "etcd says there is no such member"},
	{rpctypes.ErrGRPCMemberBadURLs, "etcd refused the peer URLs as invalid"},
	{rpctypes.ErrGRPCMemberNotLearner, "the member is not a learner, so there is nothing to promote"},
	{rpctypes.ErrGRPCLearnerNotReady, "the learner has not caught up with the leader yet: etcd promotes a learner once it has " +
		"at least 90% of the leader's log"},
	{rpctypes.ErrGRPCTooManyLearners, "the cluster already has as many learners as etcd allows (--max-learners, 1 by default): " +
		"promote or remove the learner first"},
	{rpctypes.ErrGRPCMemberNotEnoughStarted, "etcd refused: too few members have started for the change to keep a quorum; start the added " +
		"members or remove them first"},
	{rpctypes.ErrGRPCBadLeaderTransferee, "etcd refused the new leader: it must be a voting member"},
	{rpctypes.ErrGRPCNotSupportedForLearner, "the request reached a learner, which serves only status and serializable reads"},
	{rpctypes.ErrGRPCUnhealthy, "etcd refused the change as unsafe for the cluster's health right now: a voting member is " +
		"disconnected from the leader, or (re)started less than 5 s ago"},
	{rpctypes.ErrGRPCPermissionDenied, "permission denied: the client certificate's user lacks the role this needs (root for membership changes)"},
	{rpctypes.ErrGRPCNoLeader, "the cluster has no leader: it has lost quorum or is electing one"},
}

// TLS alerts a server sends about the client's certificate (RFC 8446 6.2).
const (
	alertBadCertificate      = 42
	alertCertificateExpired  = 45
	alertUnknownCA           = 48
	alertCertificateRequired = 116
)

// hint classifies err by its type: the server errors etcd's client
// returns, gRPC status codes, and the errors of crypto/x509, crypto/tls and
// the network that a connection's diagnosis (see diagnose) returns.
func hint(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var notTLS tls.RecordHeaderError
	var netErr net.Error
	alert, remote := remoteAlert(err)
	switch {
	case errors.As(err, &unknownCA):
		return "TLS: the server's certificate is not signed by ca_cert (wrong CA?)"
	case errors.As(err, &hostname):
		return "TLS: the server's certificate does not name this endpoint's address"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired,
		remote && alert == alertCertificateExpired:
		return "TLS: a certificate has expired or is not yet valid (check the clocks)"
	case remote && (alert == alertBadCertificate || alert == alertUnknownCA || alert == alertCertificateRequired):
		return "TLS: the server refused the client certificate (client_cert/client_key missing or not signed by the cluster CA)"
	case errors.As(err, &notTLS):
		return "TLS mismatch: the endpoint speaks plain HTTP; use http:// or enable TLS on it"
	case remote:
		return "TLS handshake failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: is etcd running and listening on this address?"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &netErr) && netErr.Timeout() && !errors.Is(err, context.DeadlineExceeded):
		return "the host cannot be reached"
	}
	if ee, ok := ServerError(err); ok {
		for _, h := range serverHints {
			if ee == rpctypes.Error(h.err) {
				return h.hint
			}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return "timed out: the endpoint did not answer in time (unreachable, overloaded, or no quorum)"
	}
	return ""
}

// remoteAlert returns the TLS alert the server sent, if err is one:
// crypto/tls returns it as a *net.OpError whose Op is "remote error" and
// whose Err is the alert's number.
func remoteAlert(err error) (uint8, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
		return uint8(v.Uint()), true
	}
	return 0, false
}
