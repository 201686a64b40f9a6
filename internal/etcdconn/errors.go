package etcdconn

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Describe turns an error from the etcd client into a sentence an operator
// can act on. It keeps the underlying text (the TLS error, say) and adds
// what it most likely means.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	text := rpctypes.ErrorDesc(err)
	var hint string
	switch {
	case strings.Contains(text, "certificate signed by unknown authority"):
		hint = "TLS: the server's certificate is not signed by ca_cert (wrong CA?)"
	case strings.Contains(text, "certificate is valid for"), strings.Contains(text, "doesn't contain any IP SANs"):
		hint = "TLS: the server's certificate does not name this endpoint's address"
	case strings.Contains(text, "certificate has expired"), strings.Contains(text, "not yet valid"):
		hint = "TLS: a certificate has expired or is not yet valid (check the clocks)"
	case strings.Contains(text, "bad certificate"), strings.Contains(text, "certificate required"),
		strings.Contains(text, "unknown certificate authority"),
		// TLS 1.3: the server checks the client certificate after the
		// client has finished its handshake, then drops the connection.
		strings.Contains(text, "broken pipe"), strings.Contains(text, "connection reset by peer"):
		hint = "TLS: the server refused the client certificate (client_cert/client_key missing or not signed by the cluster CA)"
	case strings.Contains(text, "first record does not look like a TLS handshake"),
		strings.Contains(text, "server gave HTTP response"):
		hint = "TLS mismatch: the endpoint speaks plain HTTP; use http:// or enable TLS on it"
	case strings.Contains(text, "authentication handshake failed"):
		hint = "TLS handshake failed"
	case strings.Contains(text, "connection refused"):
		hint = "connection refused: is etcd running and listening on this address?"
	case strings.Contains(text, "no route to host"), strings.Contains(text, "network is unreachable"),
		strings.Contains(text, "i/o timeout"):
		hint = "the host cannot be reached"
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrGRPCPermissionDenied),
		strings.Contains(text, rpctypes.ErrorDesc(rpctypes.ErrGRPCPermissionDenied)):
		hint = "permission denied: the client certificate's user lacks the role this needs (root for membership changes)"
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		hint = "timed out: the endpoint did not answer in time (unreachable, overloaded, or no quorum)"
	case errors.Is(err, rpctypes.ErrNoLeader), strings.Contains(text, "no leader"):
		hint = "the cluster has no leader: it has lost quorum or is electing one"
	case strings.Contains(text, "unhealthy cluster"):
		hint = "etcd refused the change as unsafe for the cluster's health right now"
	}
	if hint == "" {
		return text
	}
	if text == "" || strings.Contains(hint, text) {
		return hint
	}
	return hint + " (" + text + ")"
}
