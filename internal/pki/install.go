package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/etcdops/etcdops/internal/fsutil"
	"github.com/etcdops/etcdops/internal/modrun"
)

// runInstall puts a certificate and key staged on a member (src_cert,
// src_key, where ansible's copy put them) in place of the ones the member
// runs with (cert, key). Each file is replaced atomically, keeping the
// owner and mode of the file it replaces, the certificate first and the key
// right after: etcd reads the certificate and then the key at each new TLS
// connection, so only a handshake that reads both within the microseconds
// between the two renames could see a mismatched pair. It refuses a key
// that does not belong to the certificate, and a certificate the member's
// trusted CA (ca_cert) does not accept, which its peers would refuse too.
// The staged files are removed.
func runInstall(m *modrun.Module, o options) (modrun.Result, error) {
	switch {
	case o.Cert == "" || o.Key == "" || o.SrcCert == "" || o.SrcKey == "":
		return nil, errors.New("state=install needs cert and key (the member's files) and src_cert and src_key (the new ones, staged beside them)")
	case o.Cert == o.Key || o.SrcCert == o.SrcKey || o.Cert == o.SrcCert || o.Key == o.SrcKey:
		return nil, errors.New("state=install: cert, key, src_cert and src_key must be four different files")
	case o.CAPEM != "":
		return nil, errors.New("state=install checks the new certificate against the member's trusted CA file: give ca_cert, not ca_pem")
	}
	res := modrun.Result{"cert": o.Cert, "key": o.Key, "changed": false}
	oldCert, err := os.ReadFile(o.Cert)
	if err != nil {
		return nil, fmt.Errorf("the member's certificate: %w", err)
	}
	oldKey, err := os.ReadFile(o.Key)
	if err != nil {
		return nil, fmt.Errorf("the member's key: %w", err)
	}
	newCert, certErr := os.ReadFile(o.SrcCert)
	newKey, keyErr := os.ReadFile(o.SrcKey)
	if errors.Is(certErr, fs.ErrNotExist) || errors.Is(keyErr, fs.ErrNotExist) {
		if m.Meta.CheckMode {
			// The task that stages them did not write them in check mode.
			res["changed"] = true
			res["msg"] = "would install the new certificate and key in " + o.Cert + " and " + o.Key
			return res, nil
		}
		return nil, fmt.Errorf("nothing staged to install: %s and %s must both exist", o.SrcCert, o.SrcKey)
	}
	if certErr != nil {
		return nil, certErr
	}
	if keyErr != nil {
		return nil, keyErr
	}
	cert, err := parseCertificate(newCert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.SrcCert, err)
	}
	key, err := parsePrivateKey(newKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.SrcKey, err)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s; nothing was installed", o.SrcKey, o.SrcCert)
	}
	if o.CACert != "" {
		caData, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("read the member's trusted CA: %w", err)
		}
		pool, err := certPool(caData)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.CACert, err)
		}
		if err := verifyPool(cert, pool); err != nil {
			return nil, fmt.Errorf("the new certificate (issuer %s) is not trusted by the member's CA file %s (%w): "+
				"its peers would refuse it; distribute the CA first; nothing was installed", cert.Issuer, o.CACert, err)
		}
	}
	after := Describe(cert)
	res["serial"] = after.Serial
	res["not_after"] = after.NotAfter.Format("2006-01-02T15:04:05Z07:00")
	before := ""
	if c, err := parseCertificate(oldCert); err == nil {
		before = Describe(c).Text()
	}
	res["diff"] = map[string]any{"before_header": o.Cert, "after_header": o.Cert, "before": before, "after": after.Text()}
	if bytes.Equal(oldCert, newCert) && bytes.Equal(oldKey, newKey) {
		res["msg"] = o.Cert + " is already the new certificate"
		if !m.Meta.CheckMode {
			return res, removeStaged(o)
		}
		return res, nil
	}
	res["changed"] = true
	if m.Meta.CheckMode {
		res["msg"] = fmt.Sprintf("would install the certificate %s in %s", after.Serial, o.Cert)
		return res, nil
	}
	certInfo, err := os.Stat(o.Cert)
	if err != nil {
		return nil, err
	}
	keyInfo, err := os.Stat(o.Key)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileLike(o.Cert, newCert, certInfo); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileLike(o.Key, newKey, keyInfo); err != nil {
		return nil, fmt.Errorf("%w (the new certificate is in %s already: run again to finish)", err, o.Cert)
	}
	res["msg"] = fmt.Sprintf("installed the certificate %s in %s", after.Serial, o.Cert)
	return res, removeStaged(o)
}

func removeStaged(o options) error {
	for _, p := range []string{o.SrcKey, o.SrcCert} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the staged %s: %w", p, err)
		}
	}
	return nil
}
