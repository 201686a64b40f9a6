package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdops/etcdops/internal/fsutil"
)

// Store is a directory holding a CA (ca.pem, ca-key.pem) and the
// certificates it issued (NAME.pem, NAME-key.pem). Keys are 0600, the
// directory 0700.
type Store struct{ Dir string }

// CAPaths are the CA's certificate and key files.
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
}

// EnsureCA makes the CA unless a valid one is there. An existing CA is never
// replaced: every certificate of the cluster hangs on it.
func (s Store) EnsureCA(commonName string, validity time.Duration, check bool) (Outcome, error) {
	certPath, keyPath := s.CAPaths()
	out := Outcome{Cert: certPath, Key: keyPath}
	ca, err := readPair(certPath, keyPath)
	switch {
	case err == nil:
		if _, err := ca.CA(); err != nil {
			return out, fmt.Errorf("existing CA in %s is unusable (%v); move it aside to create a new one", s.Dir, err)
		}
		return out, nil
	case !errors.Is(err, fs.ErrNotExist):
		return out, err
	}
	out.Changed, out.Reason = true, "no CA yet"
	if check {
		return out, nil
	}
	ca, err = NewCA(commonName, validity)
	if err != nil {
		return out, err
	}
	if err := s.write(certPath, keyPath, ca); err != nil {
		return out, err
	}
	return out, nil
}

// Ensure issues the certificate name for req unless the one in the store
// already matches it (same CA, names, addresses, usage, and at least
// renewBefore of validity left).
func (s Store) Ensure(name string, req Request, renewBefore time.Duration, check bool) (Outcome, error) {
	certPath, keyPath := s.Paths(name)
	out := Outcome{Cert: certPath, Key: keyPath}
	ca, err := readPair(s.CAPaths())
	if err != nil {
		return out, fmt.Errorf("CA: %w", err)
	}
	cur, err := readPair(certPath, keyPath)
	switch {
	case err == nil:
		ok, why := Matches(cur, ca, req, renewBefore)
		if ok {
			return out, nil
		}
		out.Reason = why
	case errors.Is(err, fs.ErrNotExist):
		out.Reason = "no certificate yet"
	default:
		out.Reason = err.Error()
	}
	out.Changed = true
	if check {
		return out, nil
	}
	p, err := Issue(ca, req)
	if err != nil {
		return out, err
	}
	return out, s.write(certPath, keyPath, p)
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

func readPair(certPath, keyPath string) (Pair, error) {
	c, err := os.ReadFile(certPath)
	if err != nil {
		return Pair{}, err
	}
	k, err := os.ReadFile(keyPath)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: c, KeyPEM: k}, nil
}

// Lock takes an exclusive lock on the store's directory, so that parallel
// runs (one per host, as Ansible's forks do) neither create two CAs nor
// interleave writes. The returned function releases it.
func (s Store) Lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.Dir, err)
	}
	return fsutil.LockDir(s.Dir)
}
