package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Authority is a CA that can sign: its certificate with the private key
// that belongs to it, checked to be a CA that may sign certificates now.
type Authority struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Signer  crypto.Signer
}

// MissingFileError says that a file of the CA is not there.
type MissingFileError struct {
	What string // "certificate" or "key"
	Path string
}

func (e *MissingFileError) Error() string {
	return fmt.Sprintf("CA %s %s does not exist", e.What, e.Path)
}

// Unwrap makes errors.Is(err, fs.ErrNotExist) true.
func (e *MissingFileError) Unwrap() error { return fs.ErrNotExist }

// LoadCA reads an existing CA (a certificate and its key, as cfssl, openssl
// or this package write them) and checks that it can issue certificates. A
// file that is not there is a *MissingFileError; every error names the file.
func LoadCA(certPath, keyPath string) (Authority, error) {
	certPEM, err := readCAFile("certificate", certPath)
	if err != nil {
		return Authority{}, err
	}
	keyPEM, err := readCAFile("key", keyPath)
	if err != nil {
		return Authority{}, err
	}
	cert, err := parseCertificate(certPEM)
	if err != nil {
		return Authority{}, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	signer, err := parsePrivateKey(keyPEM)
	if err != nil {
		return Authority{}, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	a, err := newAuthority(cert, certPEM, signer, time.Now())
	if err != nil {
		return Authority{}, fmt.Errorf("CA %s: %w", certPath, err)
	}
	return a, nil
}

func readCAFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &MissingFileError{What: what, Path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", what, err)
	}
	return b, nil
}

// ParseCA is LoadCA for a CA already in memory.
func ParseCA(p Pair) (Authority, error) {
	cert, err := parseCertificate(p.CertPEM)
	if err != nil {
		return Authority{}, fmt.Errorf("CA certificate: %w", err)
	}
	signer, err := parsePrivateKey(p.KeyPEM)
	if err != nil {
		return Authority{}, fmt.Errorf("CA key: %w", err)
	}
	return newAuthority(cert, p.CertPEM, signer, time.Now())
}

func newAuthority(cert *x509.Certificate, certPEM []byte, signer crypto.Signer, now time.Time) (Authority, error) {
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return Authority{}, fmt.Errorf("%s is not a CA certificate (its basic constraints do not say CA:TRUE)", cert.Subject)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return Authority{}, fmt.Errorf("%s may not sign certificates (its key usage lacks certificate signing)", cert.Subject)
	case now.After(cert.NotAfter):
		return Authority{}, fmt.Errorf("%s expired on %s", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return Authority{}, fmt.Errorf("%s is not valid before %s", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !samePublicKey(signer.Public(), cert.PublicKey) {
		return Authority{}, fmt.Errorf("the key does not belong to the certificate %s", cert.Subject)
	}
	return Authority{Cert: cert, CertPEM: certPEM, Signer: signer}, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// parseCertificate returns the first certificate of a PEM file (text before
// it, as openssl x509 -text writes, is skipped).
func parseCertificate(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return cert, nil
	}
}

// parsePrivateKey reads the private key of a PEM file: PKCS#1 ("RSA
// PRIVATE KEY", as cfssl writes RSA keys), SEC1 ("EC PRIVATE KEY", possibly
// after an "EC PARAMETERS" block, as openssl ecparam writes it) or PKCS#8
// ("PRIVATE KEY": RSA, ECDSA or Ed25519). Encrypted keys are refused.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	var seen []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(seen) == 0 {
				return nil, errors.New("no PEM private key")
			}
			return nil, fmt.Errorf("no PEM private key (the file holds %s)", strings.Join(seen, ", "))
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
				return nil, errors.New("the key is encrypted; give an unencrypted copy")
			}
			if b.Type == "RSA PRIVATE KEY" {
				key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			} else {
				key, err = x509.ParseECPrivateKey(b.Bytes)
			}
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted (PKCS#8); give an unencrypted copy")
		default:
			seen = append(seen, b.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign certificates", key)
		}
		return signer, nil
	}
}
