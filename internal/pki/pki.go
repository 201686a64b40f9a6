// Package pki issues the certificates an etcd cluster runs with: one cluster
// CA, a certificate per member (server and peer use, the member's name and
// IPs in its SANs) and client certificates. Keys are ECDSA P-256, which
// every etcd release since 3.0 accepts and which are cheap to generate.
//
// It is also the etcd_cert module (RunModule), run on the deploy node: it
// keeps the certificates in a directory (Store), creates the cluster CA
// once and issues (or reissues, when names, addresses or usage change, or
// expiry nears) one member or client certificate.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"time"
)

// Usage says what a certificate is for.
type Usage string

// Certificate usages.
const (
	// UsageMember is an etcd member's certificate: it serves clients and
	// peers and authenticates to peers, so it has both server and client
	// extended key usages.
	UsageMember Usage = "member"
	// UsageClient authenticates a client (etcdctl, the modules, kube-apiserver).
	UsageClient Usage = "client"
)

// Request describes a leaf certificate.
type Request struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Usage      Usage
	Validity   time.Duration
}

// Pair is a certificate and its private key, both PEM encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA.
func NewCA(commonName string, validity time.Duration) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"etcdops"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, fmt.Errorf("self-sign CA: %w", err)
	}
	return encode(der, key)
}

// Issue signs a leaf certificate for req with the CA.
func Issue(ca Pair, req Request) (Pair, error) {
	caCert, caKey, err := ca.parse()
	if err != nil {
		return Pair{}, fmt.Errorf("CA: %w", err)
	}
	if req.CommonName == "" {
		return Pair{}, errors.New("certificate request has no common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	notAfter := now.Add(req.Validity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: []string{"etcdops"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	switch req.Usage {
	case UsageMember:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case UsageClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return Pair{}, fmt.Errorf("unknown certificate usage %q", req.Usage)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("sign certificate for %s: %w", req.CommonName, err)
	}
	return encode(der, key)
}

// Matches reports whether the certificate in p was issued by ca for req
// (same common name, usage and SANs) and stays valid for at least
// minRemaining. It is how callers decide that nothing needs reissuing.
func Matches(p, ca Pair, req Request, minRemaining time.Duration) (bool, string) {
	cert, key, err := p.parse()
	if err != nil {
		return false, fmt.Sprintf("unreadable: %v", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return false, "key does not match certificate"
	}
	caCert, _, err := ca.parse()
	if err != nil {
		return false, fmt.Sprintf("CA unreadable: %v", err)
	}
	if err := cert.CheckSignatureFrom(caCert); err != nil {
		return false, "not signed by this CA"
	}
	if time.Until(cert.NotAfter) < minRemaining {
		return false, "expires soon"
	}
	if cert.Subject.CommonName != req.CommonName {
		return false, "common name differs"
	}
	if !sameStrings(cert.DNSNames, req.DNSNames) {
		return false, "DNS names differ"
	}
	var have, want []string
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	for _, ip := range req.IPs {
		want = append(want, ip.String())
	}
	if !sameStrings(have, want) {
		return false, "IP addresses differ"
	}
	isServer := false
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			isServer = true
		}
	}
	if isServer != (req.Usage == UsageMember) {
		return false, "usage differs"
	}
	return true, ""
}

// CA parses p as a CA: it must be a CA certificate with its matching key.
func (p Pair) CA() (*x509.Certificate, error) {
	cert, key, err := p.parse()
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("CA key does not match CA certificate")
	}
	return cert, nil
}

func (p Pair) parse() (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(p.CertPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	kb, _ := pem.Decode(p.KeyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM private key")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, nil, fmt.Errorf("unsupported private key type %q", kb.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("private key cannot sign")
	}
	return cert, signer, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("encode key: %w", err)
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s, nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a = append([]string(nil), a...)
	b = append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
