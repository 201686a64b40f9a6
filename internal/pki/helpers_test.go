package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/modrun"
)

// caKinds are the CAs users bring: cfssl's RSA 2048 PKCS#1 (kubeasz),
// ECDSA as SEC1 (openssl ecparam, with its EC PARAMETERS block), and PKCS#8
// of each key type.
var caKinds = []string{"rsa-pkcs1", "ecdsa-sec1", "rsa-pkcs8", "ecdsa-p384-pkcs8", "ed25519-pkcs8"}

// makeCA makes a CA the way cfssl gencert -initca does (subject as
// kubeasz's, CA:TRUE, cert sign and CRL sign, a subject key id, valid from
// 5 minutes ago), with key kind, after edit changes the template.
func makeCA(t testing.TB, kind string, edit func(*x509.Certificate)) Pair {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch kind {
	case "rsa-pkcs1", "rsa-pkcs8":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa-sec1":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384-pkcs8":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519-pkcs8":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown CA kind %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski := sha1.Sum(spki)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{CommonName: "kubernetes-ca", Country: []string{"CN"}, Province: []string{"HangZhou"},
			Locality: []string{"XS"}, Organization: []string{"k8s"}, OrganizationalUnit: []string{"System"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(876000 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski[:],
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM(t, kind, signer)}
}

func keyPEM(t testing.TB, kind string, signer crypto.Signer) []byte {
	t.Helper()
	switch kind {
	case "rsa-pkcs1":
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(signer.(*rsa.PrivateKey))})
	case "ecdsa-sec1":
		b, err := x509.MarshalECPrivateKey(signer.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		// openssl ecparam -genkey writes the curve's OID first.
		params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
		return append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})...)
	}
	b, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

// writeCA writes p as dir/ca.pem and dir/ca-key.pem (0600, as cfssljson
// writes keys) and returns their paths.
func writeCA(t testing.TB, dir string, p Pair) (cert, key string) {
	t.Helper()
	cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, p.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, p.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// runModule runs etcd_cert as Ansible would, through modrun, and checks
// that no key material is ever in the result.
func runModule(t testing.TB, args map[string]any) modrun.Result {
	t.Helper()
	res := modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	// ca_pem, a CA certificate, is echoed in the invocation; nothing else
	// PEM is ever in a result.
	shown := map[string]any{}
	for k, v := range res {
		if k != "invocation" {
			shown[k] = v
		}
	}
	rest, err := json.Marshal(shown)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		text string
		in   []byte
	}{{"PRIVATE KEY", b}, {"BEGIN", rest}} {
		if strings.Contains(string(bad.in), bad.text) {
			t.Fatalf("result holds key material (%q): %s", bad.text, b)
		}
	}
	return res
}

// tree is every file under dir with its mode and contents, to prove that a
// refused run wrote nothing.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[p] = v
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// leaf parses a certificate file.
func leaf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
