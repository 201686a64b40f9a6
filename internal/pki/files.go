package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// Store is a directory of certificates (NAME.pem, NAME-key.pem) and, when
// this package keeps the cluster's CA itself, of that CA (ca.pem,
// ca-key.pem). Keys are 0600; a directory Store creates is 0700.
type Store struct{ Dir string }

// CAPaths are the files of the CA that Store keeps itself.
func (s Store) CAPaths() (cert, key string) {
	return filepath.Join(s.Dir, "ca.pem"), filepath.Join(s.Dir, "ca-key.pem")
}

// Paths are the certificate and key files of name.
func (s Store) Paths(name string) (cert, key string) {
	return filepath.Join(s.Dir, name+".pem"), filepath.Join(s.Dir, name+"-key.pem")
}

// Outcome says what Ensure* did (or, in check mode, would do).
type Outcome struct {
	Changed bool
	Reason  string // why it (re)issued, empty when unchanged
	Cert    string
	Key     string
	// Before is the certificate that was there, nil when there was none
	// (or it could not be read).
	Before *CertInfo
	// After is the certificate there now; in check mode, the one that would
	// be (with no serial when it would be new).
	After CertInfo
}

// ForeignError refuses to replace a certificate this package did not issue.
type ForeignError struct{ Path, Subject string }

func (e *ForeignError) Error() string {
	return fmt.Sprintf("%s exists and was not issued by etcd_cert (subject %s); it is not replaced", e.Path, e.Subject)
}

// EnsureCA makes the store's own CA unless a valid one is there, and
// returns it. An existing CA is never replaced: every certificate of the
// cluster hangs on it. In check mode a CA that would be created is made in
// memory only, so that what it would sign can be predicted.
func (s Store) EnsureCA(commonName string, validity time.Duration, check bool) (Outcome, Authority, error) {
	certPath, keyPath := s.CAPaths()
	out := Outcome{Cert: certPath, Key: keyPath}
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		a, err := ParseCA(Pair{CertPEM: certPEM, KeyPEM: keyPEM})
		if err != nil {
			return out, Authority{}, fmt.Errorf("the CA in %s is unusable (%w); move it aside to create a new one", s.Dir, err)
		}
		out.After = Describe(a.Cert)
		out.Before = &out.After
		return out, a, nil
	case certErr == nil && errors.Is(keyErr, fs.ErrNotExist):
		return out, Authority{}, fmt.Errorf("the CA in %s is incomplete: %s is missing; restore it, or move %s aside to create a new CA", s.Dir, keyPath, certPath)
	case keyErr == nil && errors.Is(certErr, fs.ErrNotExist):
		return out, Authority{}, fmt.Errorf("the CA in %s is incomplete: %s is missing; restore it, or move %s aside to create a new CA", s.Dir, certPath, keyPath)
	case !errors.Is(certErr, fs.ErrNotExist):
		return out, Authority{}, fmt.Errorf("read %s: %w", certPath, certErr)
	case !errors.Is(keyErr, fs.ErrNotExist):
		return out, Authority{}, fmt.Errorf("read %s: %w", keyPath, keyErr)
	}
	out.Changed, out.Reason = true, "no CA yet"
	p, err := NewCA(commonName, validity)
	if err != nil {
		return out, Authority{}, err
	}
	a, err := ParseCA(p)
	if err != nil {
		return out, Authority{}, err
	}
	out.After = Describe(a.Cert)
	if check {
		out.After.Serial = ""
		return out, a, nil
	}
	return out, a, s.write(certPath, keyPath, p)
}

// Ensure issues the certificate name for req, signed by a, unless the one in
// the store already matches it (same CA, names, addresses, usage, and at
// least renewBefore of validity left) and is not the certificate of serial
// reissue (one a member uses that is to be replaced whatever it says; empty
// for none). A certificate there that this package did not issue is never
// replaced (*ForeignError).
func (s Store) Ensure(name string, a Authority, req Request, renewBefore time.Duration, reissue string, check bool) (Outcome, error) {
	certPath, keyPath := s.Paths(name)
	out := Outcome{Cert: certPath, Key: keyPath}
	certPEM, certErr := os.ReadFile(certPath)
	if certErr != nil && !errors.Is(certErr, fs.ErrNotExist) {
		return out, fmt.Errorf("read %s: %w", certPath, certErr)
	}
	if certErr == nil {
		if cur, err := parseCertificate(certPEM); err == nil {
			if err := owned(certPath, cur); err != nil {
				return out, err
			}
			info := Describe(cur)
			out.Before = &info
		}
	}
	keyPEM, keyErr := os.ReadFile(keyPath)
	if keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist) {
		return out, fmt.Errorf("read %s: %w", keyPath, keyErr)
	}
	switch {
	case certErr != nil:
		out.Reason = "no certificate yet"
	case keyErr != nil:
		out.Reason = "its key is missing"
	case reissue != "" && out.Before != nil && strings.EqualFold(out.Before.Serial, reissue):
		out.Reason = "serial " + out.Before.Serial + " is to be replaced"
	default:
		ok, why := Matches(Pair{CertPEM: certPEM, KeyPEM: keyPEM}, a, req, renewBefore)
		if ok {
			out.After = *out.Before
			return out, nil
		}
		out.Reason = why
	}
	p, cert, err := a.Issue(req)
	if err != nil {
		return out, err
	}
	out.Changed, out.After = true, Describe(cert)
	if check {
		out.After.Serial = ""
		return out, nil
	}
	return out, s.write(certPath, keyPath, p)
}

func owned(path string, cert *x509.Certificate) error {
	if !slices.Contains(cert.Subject.Organization, organization) {
		return &ForeignError{Path: path, Subject: cert.Subject.String()}
	}
	return nil
}

func (s Store) write(certPath, keyPath string, p Pair) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.Dir, err)
	}
	// The key first: a certificate is never there without its key.
	if err := fsutil.WriteFile(keyPath, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFile(certPath, p.CertPEM, 0o644)
}

// Lock takes an exclusive lock on the store, so that parallel runs (one per
// host, as Ansible's forks do) neither create two CAs nor interleave
// writes. The returned function releases it.
func (s Store) Lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.Dir, err)
	}
	return fsutil.LockDir(s.Dir)
}
