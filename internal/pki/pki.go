// Package pki issues the certificates an etcd cluster runs with: a
// certificate per member (server and peer use, the member's name and IPs in
// its SANs) and client certificates, signed either by a cluster CA this
// package creates or by a CA the cluster already has (kubeasz's cfssl CA:
// RSA, or ECDSA, or Ed25519). Issued keys are ECDSA P-256, which every etcd
// release since 3.0 accepts and which are cheap to generate.
//
// It is also the etcd_cert module (RunModule), run on the deploy node: it
// keeps the certificates in a directory (Store), issues (or reissues, when
// names, addresses or usage change, the CA changed, or expiry nears) one
// member or client certificate, and reports on one (state=info).
package pki

import (
	"bytes"
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
	"slices"
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

// extKeyUsages are the extended key usages a certificate of usage u has.
func (u Usage) extKeyUsages() ([]x509.ExtKeyUsage, error) {
	switch u {
	case UsageMember:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil
	case UsageClient:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	return nil, fmt.Errorf("unknown certificate usage %q", u)
}

// organization marks the certificates this package issues, so that it never
// replaces one it did not make (kubeasz's shared etcd.pem, say).
const organization = "etcdops"

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

// NewCA creates a self-signed ECDSA P-256 CA.
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
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organization}},
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
	a, err := ParseCA(ca)
	if err != nil {
		return Pair{}, err
	}
	p, _, err := a.Issue(req)
	return p, err
}

// Issue signs a leaf certificate for req, with a new ECDSA P-256 key. The
// certificate never outlives the CA, and it is verified against the CA for
// each of its usages before it is returned.
func (a Authority) Issue(req Request) (Pair, *x509.Certificate, error) {
	if req.CommonName == "" {
		return Pair{}, nil, errors.New("certificate request has no common name")
	}
	ekus, err := req.Usage.extKeyUsages()
	if err != nil {
		return Pair{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Pair{}, nil, err
	}
	now := time.Now()
	notBefore, notAfter := now.Add(-time.Hour), now.Add(req.Validity)
	if notBefore.Before(a.Cert.NotBefore) {
		notBefore = a.Cert.NotBefore
	}
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: []string{organization}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  ekus,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Signer)
	if err != nil {
		return Pair{}, nil, fmt.Errorf("sign certificate for %s: %w", req.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, nil, fmt.Errorf("parse the issued certificate: %w", err)
	}
	if err := a.Verify(cert, ekus...); err != nil {
		return Pair{}, nil, fmt.Errorf("the certificate issued for %s does not verify against its CA: %w", req.CommonName, err)
	}
	p, err := encode(der, key)
	return p, cert, err
}

// Verify checks that cert chains to the CA for every one of usages (any
// usage when none is given), as a TLS peer would check it now.
func (a Authority) Verify(cert *x509.Certificate, usages ...x509.ExtKeyUsage) error {
	return verify(cert, a.Cert, usages...)
}

func verify(cert, ca *x509.Certificate, usages ...x509.ExtKeyUsage) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	for _, u := range usages {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return err
		}
	}
	return nil
}

// Matches reports whether the certificate in p was issued by a for req (same
// common name, usage and SANs) and, unless the CA itself ends sooner, stays
// valid for at least minRemaining. It is how callers decide that nothing
// needs reissuing; the reason says why not.
func Matches(p Pair, a Authority, req Request, minRemaining time.Duration) (bool, string) {
	cert, err := parseCertificate(p.CertPEM)
	if err != nil {
		return false, fmt.Sprintf("certificate unreadable: %v", err)
	}
	key, err := parsePrivateKey(p.KeyPEM)
	if err != nil {
		return false, fmt.Sprintf("key unreadable: %v", err)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return false, "key does not match certificate"
	}
	if !bytes.Equal(cert.RawIssuer, a.Cert.RawSubject) || cert.CheckSignatureFrom(a.Cert) != nil {
		return false, "not issued by this CA"
	}
	// A certificate capped at the CA's end cannot be renewed into a longer
	// one: reissuing it on every run would change nothing.
	if time.Until(cert.NotAfter) < minRemaining && cert.NotAfter.Before(a.Cert.NotAfter) {
		return false, "expires soon"
	}
	if cert.Subject.CommonName != req.CommonName {
		return false, "common name differs"
	}
	if !sameStrings(cert.DNSNames, req.DNSNames) {
		return false, "DNS names differ"
	}
	if !sameStrings(ipStrings(cert.IPAddresses), ipStrings(req.IPs)) {
		return false, "IP addresses differ"
	}
	want, err := req.Usage.extKeyUsages()
	if err != nil {
		return false, err.Error()
	}
	if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(want)) {
		return false, "usage differs"
	}
	if err := a.Verify(cert, want...); err != nil {
		return false, fmt.Sprintf("does not verify against the CA: %v", err)
	}
	return true, ""
}

func sortedUsages(u []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	u = slices.Clone(u)
	slices.Sort(u)
	return slices.Compact(u)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
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
	return slices.Equal(a, b)
}
