package pki

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// hostPort is the address of an etcd URL (https://10.0.0.1:2379), or of a
// host:port as it is.
func hostPort(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err == nil && u.Host != "" {
		if u.Port() == "" {
			return "", fmt.Errorf("%s has no port", endpoint)
		}
		return u.Host, nil
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return "", fmt.Errorf("%q is neither an https URL nor host:port", endpoint)
	}
	return endpoint, nil
}

// Served opens a new TLS connection to endpoint and returns the
// certificate the server presents there now. It only reads: it sends no
// client certificate and trusts nothing (the certificate is judged by the
// caller), so a server that requires client certificates still shows its
// own before it refuses the connection.
func Served(ctx context.Context, endpoint string, timeout time.Duration) (*x509.Certificate, error) {
	addr, err := hostPort(endpoint)
	if err != nil {
		return nil, err
	}
	var served *x509.Certificate
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Nothing is sent over this connection: the certificate is only
		// read, and judged afterwards against the CA the caller names.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				served = c
			}
			return nil
		},
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if served != nil {
		return served, nil
	}
	if err == nil {
		err = errors.New("the server presented no certificate")
	}
	return nil, fmt.Errorf("read the certificate %s serves: %w", endpoint, err)
}

// Accepts reports whether the etcd listener at endpoint (client or peer)
// accepts a new connection authenticated with client and answers GET
// /version over it: nil when it does. It tells whether a member trusts the
// CA that issued client (etcd reads its trusted CA file when it starts).
// The server's own certificate is not verified here.
func Accepts(ctx context.Context, endpoint string, client tls.Certificate, timeout time.Duration) error {
	addr, err := hostPort(endpoint)
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{client},
		// Only the server's verdict on the client certificate is wanted.
		InsecureSkipVerify: true, //nolint:gosec
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// With TLS 1.3 the server judges the client certificate after the
	// handshake: its refusal arrives as an alert on the first read.
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/version", nil)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /version: %s", resp.Status)
	}
	return nil
}
