package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CertInfo is what an operator wants to know of a certificate; it holds no
// key material.
type CertInfo struct {
	Subject    string
	CommonName string
	Issuer     string
	Serial     string // upper-case hex, as openssl prints it; empty when not yet assigned
	NotBefore  time.Time
	NotAfter   time.Time
	IPs        []string
	DNSNames   []string
	Usage      []string // extended key usages: "server auth", "client auth", …
	Key        string   // "ECDSA P-256", "RSA 2048", "Ed25519"
	IsCA       bool
}

// Describe summarises cert.
func Describe(cert *x509.Certificate) CertInfo {
	return CertInfo{
		Subject:    cert.Subject.String(),
		CommonName: cert.Subject.CommonName,
		Issuer:     cert.Issuer.String(),
		Serial:     fmt.Sprintf("%X", cert.SerialNumber),
		NotBefore:  cert.NotBefore.UTC(),
		NotAfter:   cert.NotAfter.UTC(),
		IPs:        ipStrings(cert.IPAddresses),
		DNSNames:   append([]string{}, cert.DNSNames...),
		Usage:      usageNames(cert.ExtKeyUsage),
		Key:        keyName(cert.PublicKey),
		IsCA:       cert.IsCA,
	}
}

// DaysLeft is the number of whole days until the certificate ends,
// negative once it has.
func (c CertInfo) DaysLeft(now time.Time) int {
	d := c.NotAfter.Sub(now)
	if d < 0 {
		return -int((-d).Hours()/24) - 1
	}
	return int(d.Hours() / 24)
}

// Text is the certificate as lines of "field: value", for --diff.
func (c CertInfo) Text() string {
	serial := c.Serial
	if serial == "" {
		serial = "(assigned when issued)"
	}
	var b strings.Builder
	for _, l := range [][2]string{
		{"subject", c.Subject},
		{"issuer", c.Issuer},
		{"serial", serial},
		{"not_before", c.NotBefore.Format(time.RFC3339)},
		{"not_after", c.NotAfter.Format(time.RFC3339)},
		{"ip_addresses", strings.Join(c.IPs, ", ")},
		{"dns_names", strings.Join(c.DNSNames, ", ")},
		{"usage", strings.Join(c.Usage, ", ")},
		{"key", c.Key},
	} {
		fmt.Fprintf(&b, "%s: %s\n", l[0], l[1])
	}
	return b.String()
}

func usageNames(us []x509.ExtKeyUsage) []string {
	out := []string{}
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "server auth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "client auth")
		case x509.ExtKeyUsageAny:
			out = append(out, "any")
		default:
			out = append(out, fmt.Sprintf("extended key usage %d", u))
		}
	}
	return out
}

func keyName(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// lackingUsages names the extended key usages of u that cert lacks. A
// certificate without extended key usages, or with "any", may be used for
// all, as crypto/x509 verifies it.
func lackingUsages(cert *x509.Certificate, u Usage) ([]string, error) {
	want, err := u.extKeyUsages()
	if err != nil {
		return nil, err
	}
	if len(cert.ExtKeyUsage) == 0 || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, nil
	}
	var lacking []string
	for _, w := range want {
		if !slices.Contains(cert.ExtKeyUsage, w) {
			lacking = append(lacking, usageNames([]x509.ExtKeyUsage{w})...)
		}
	}
	return lacking, nil
}
