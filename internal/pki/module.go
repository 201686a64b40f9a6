package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/modrun"
)

// ModuleSpec declares the options of the etcd_cert module.
var ModuleSpec = modrun.Spec{Options: []modrun.Option{
	{Name: "state", Type: modrun.TypeStr, Default: "present", Choices: []string{"present", "info", "install"}},
	{Name: "path", Type: modrun.TypePath},
	{Name: "ca_cert", Type: modrun.TypePath},
	{Name: "ca_key", Type: modrun.TypePath},
	{Name: "cert", Type: modrun.TypePath},
	{Name: "ca_common_name", Type: modrun.TypeStr, Default: "etcd-ca"},
	{Name: "name", Type: modrun.TypeStr},
	{Name: "common_name", Type: modrun.TypeStr},
	{Name: "usage", Type: modrun.TypeStr, Default: "member", Choices: []string{"member", "client"}},
	{Name: "ip_addresses", Type: modrun.TypeList, Elements: modrun.TypeStr, Default: []any{}},
	{Name: "dns_names", Type: modrun.TypeList, Elements: modrun.TypeStr, Default: []any{}},
	{Name: "validity_days", Type: modrun.TypeInt, Default: 3650},
	{Name: "renew_before_days", Type: modrun.TypeInt, Default: 30},
	{Name: "reissue_serial", Type: modrun.TypeStr},
	{Name: "ca_pem", Type: modrun.TypeStr},
	{Name: "endpoints", Type: modrun.TypeList, Elements: modrun.TypeStr, Default: []any{}},
	{Name: "renew_all", Type: modrun.TypeBool, Default: false},
	{Name: "probe_cert", Type: modrun.TypePath},
	{Name: "probe_key", Type: modrun.TypePath},
	{Name: "timeout", Type: modrun.TypeFloat, Default: 5.0},
	{Name: "pid", Type: modrun.TypeInt, Default: 0},
	{Name: "key", Type: modrun.TypePath},
	{Name: "src_cert", Type: modrun.TypePath},
	{Name: "src_key", Type: modrun.TypePath},
}}

type options struct {
	State           string   `json:"state"`
	Path            string   `json:"path"`
	CACert          string   `json:"ca_cert"`
	CAKey           string   `json:"ca_key"`
	Cert            string   `json:"cert"`
	CACommonName    string   `json:"ca_common_name"`
	Name            string   `json:"name"`
	CommonName      string   `json:"common_name"`
	Usage           string   `json:"usage"`
	IPAddresses     []string `json:"ip_addresses"`
	DNSNames        []string `json:"dns_names"`
	ValidityDays    int      `json:"validity_days"`
	RenewBeforeDays int      `json:"renew_before_days"`
	ReissueSerial   string   `json:"reissue_serial"`
	CAPEM           string   `json:"ca_pem"`
	Endpoints       []string `json:"endpoints"`
	RenewAll        bool     `json:"renew_all"`
	ProbeCert       string   `json:"probe_cert"`
	ProbeKey        string   `json:"probe_key"`
	Timeout         float64  `json:"timeout"`
	PID             int      `json:"pid"`
	Key             string   `json:"key"`
	SrcCert         string   `json:"src_cert"`
	SrcKey          string   `json:"src_key"`
}

// nameRE is what a certificate name may be: a file name such as etcd1,
// etcd-192.168.1.6 or etcd-client.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

const day = 24 * time.Hour

// RunModule runs the etcd_cert module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	switch o.State {
	case "info":
		return runInfo(ctx, o)
	case "install":
		return runInstall(m, o)
	}
	return runPresent(m, o)
}

// request validates the options of state=present.
func (o options) request() (Request, error) {
	req := Request{CommonName: o.CommonName, DNSNames: o.DNSNames, Usage: Usage(o.Usage),
		Validity: time.Duration(o.ValidityDays) * day}
	switch {
	case o.Path == "":
		return req, errors.New("path is required: the directory the certificate goes to")
	case o.Cert != "":
		return req, errors.New("cert is only read by state=info; state=present writes path/NAME.pem")
	case o.ReissueSerial != "" && o.Name == "":
		return req, errors.New("reissue_serial needs name: the certificate to reissue")
	case (o.CACert == "") != (o.CAKey == ""):
		return req, errors.New("ca_cert and ca_key go together: the existing CA's certificate and its private key")
	case o.ValidityDays < 1 || o.RenewBeforeDays < 0 || o.RenewBeforeDays >= o.ValidityDays:
		return req, fmt.Errorf("validity_days must be positive and renew_before_days smaller (got %d and %d)", o.ValidityDays, o.RenewBeforeDays)
	}
	if err := checkName(o.Name); err != nil {
		return req, err
	}
	if req.CommonName == "" {
		req.CommonName = o.Name
	}
	for _, s := range o.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return req, fmt.Errorf("ip_addresses: %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	return req, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return nil
	case name == "ca":
		return errors.New("name ca is refused: ca.pem and ca-key.pem are the CA's own files")
	case !nameRE.MatchString(name):
		return fmt.Errorf("name %q: a certificate name is a file name of letters, digits, '-', '_' or '.', starting with a letter or digit (like etcd1 or etcd-192.168.1.6)", name)
	}
	return nil
}

// runPresent first plans the whole run without writing anything (which is
// all check mode does), so that a refusal or an up-to-date certificate
// leaves the directory untouched, not even a lock file in it; only when
// something is to be written does it take the lock and run again, reading
// everything afresh under it.
func runPresent(m *modrun.Module, o options) (modrun.Result, error) {
	req, err := o.request()
	if err != nil {
		return nil, err
	}
	res, warnings, err := present(o, req, true)
	if err == nil && res["changed"] == true && !m.Meta.CheckMode {
		var unlock func()
		if unlock, err = (Store{Dir: o.Path}).Lock(); err != nil {
			return nil, err
		}
		defer unlock()
		res, warnings, err = present(o, req, false)
	}
	for _, w := range warnings {
		m.Warn("%s", w)
	}
	if err == nil && m.Meta.CheckMode && res["changed"] == true {
		res["msg"] = "would have " + res["msg"].(string)
	}
	return res, err
}

// present makes sure of the CA and of the certificate o.Name, writing
// nothing when dryRun.
func present(o options, req Request, dryRun bool) (modrun.Result, []string, error) {
	renewBefore := time.Duration(o.RenewBeforeDays) * day
	store := Store{Dir: o.Path}
	external := o.CACert != ""
	var auth Authority
	var warnings []string
	res := modrun.Result{}
	var changes []string
	var diffs []any
	if external {
		a, err := LoadCA(o.CACert, o.CAKey)
		if err != nil {
			return nil, nil, caError(err, o)
		}
		auth = a
		if o.Name != "" {
			cert, key := store.Paths(o.Name)
			for _, target := range []string{cert, key} {
				for _, caFile := range []string{o.CACert, o.CAKey} {
					if sameFile(target, caFile) {
						return nil, nil, fmt.Errorf("name %s would write %s, which is the CA's file %s; choose another name", o.Name, target, caFile)
					}
				}
			}
		}
		res["ca_cert"] = o.CACert
	} else {
		// The CA lives 10 years more than any leaf it signs would need.
		out, a, err := store.EnsureCA(o.CACommonName, req.Validity+3650*day, dryRun)
		if err != nil {
			return nil, nil, err
		}
		auth = a
		res["ca_cert"] = out.Cert
		if out.Changed {
			changes = append(changes, fmt.Sprintf("created the CA %s", out.Cert))
			diffs = append(diffs, diff(out))
		}
	}
	if time.Until(auth.Cert.NotAfter) < renewBefore {
		warnings = append(warnings, fmt.Sprintf("the CA %s ends on %s, in less than renew_before_days: the certificates it issues end with it",
			auth.Cert.Subject, auth.Cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if o.Name != "" {
		out, err := store.Ensure(o.Name, auth, req, renewBefore, o.ReissueSerial, dryRun)
		var foreign *ForeignError
		if errors.As(err, &foreign) {
			return nil, nil, fmt.Errorf("%w: choose another name (a certificate the cluster already uses, such as kubeasz's shared etcd.pem, must stay as it is)", err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %s: %w", o.Name, err)
		}
		after := out.After
		res["cert"], res["key"] = out.Cert, out.Key
		res["not_after"] = after.NotAfter.Format(time.RFC3339)
		res["ip_addresses"] = after.IPs
		res["dns_names"] = after.DNSNames
		res["issuer"] = after.Issuer
		if after.Serial != "" {
			res["serial"] = after.Serial
		}
		if out.Changed {
			changes = append(changes, fmt.Sprintf("issued %s (%s)", o.Name, out.Reason))
		}
		diffs = append(diffs, diff(out))
	}
	res["changed"] = len(changes) > 0
	switch {
	case len(changes) == 0 && o.Name == "":
		res["msg"] = "the CA can issue certificates"
	case len(changes) == 0:
		res["msg"] = "the certificate is up to date"
	default:
		res["msg"] = strings.Join(changes, "; ")
	}
	switch len(diffs) {
	case 0:
	case 1:
		res["diff"] = diffs[0]
	default:
		res["diff"] = diffs
	}
	return res, warnings, nil
}

// caError describes, for the operator, why the cluster's CA cannot be used.
func caError(err error, o options) error {
	purpose := "to issue certificates from it"
	switch {
	case o.Name != "" && o.Usage == string(UsageMember):
		purpose = fmt.Sprintf("to issue a certificate for a new member (%s)", o.Name)
	case o.Name != "":
		purpose = fmt.Sprintf("to issue the client certificate %s", o.Name)
	}
	var missing *MissingFileError
	if errors.As(err, &missing) {
		return fmt.Errorf("the cluster's CA %s %s is missing: it is needed %s from the cluster's existing CA, "+
			"and etcd_cert never creates a CA when ca_cert and ca_key are given; nothing was changed", missing.What, missing.Path, purpose)
	}
	return fmt.Errorf("the cluster's CA cannot be used %s: %w; nothing was changed", purpose, err)
}

// sameFile reports whether a and b are one file: the same path, or, when
// both exist, the same inode (a link).
func sameFile(a, b string) bool {
	if pa, err := filepath.Abs(a); err == nil {
		if pb, err := filepath.Abs(b); err == nil && pa == pb {
			return true
		}
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

func diff(out Outcome) map[string]any {
	before := ""
	if out.Before != nil {
		before = out.Before.Text()
	}
	return map[string]any{"before_header": out.Cert, "after_header": out.Cert,
		"before": before, "after": out.After.Text()}
}

// runInfo reports on one certificate and changes nothing: what it says,
// whether it is due for renewal (renew, and why), and, with endpoints,
// what the member serves there now.
func runInfo(ctx context.Context, o options) (modrun.Result, error) {
	certPath := o.Cert
	switch {
	case certPath != "" && o.Name != "":
		return nil, errors.New("state=info reads cert, or path/NAME.pem: give cert or name, not both")
	case certPath == "" && (o.Path == "" || o.Name == ""):
		return nil, errors.New("state=info needs cert, or path and name")
	case o.CACert != "" && o.CAPEM != "":
		return nil, errors.New("give the CA as ca_cert (a file) or ca_pem (its text), not both")
	case (o.ProbeCert == "") != (o.ProbeKey == ""):
		return nil, errors.New("probe_cert and probe_key go together: a client certificate to offer the endpoints")
	case o.ProbeCert != "" && len(o.Endpoints) == 0:
		return nil, errors.New("probe_cert is offered to endpoints: give endpoints")
	case o.Timeout <= 0:
		return nil, fmt.Errorf("timeout must be positive (got %v)", o.Timeout)
	case certPath == "":
		if err := checkName(o.Name); err != nil {
			return nil, err
		}
		certPath, _ = Store{Dir: o.Path}.Paths(o.Name)
	}
	caPath := o.CACert
	if caPath == "" && o.CAPEM == "" && o.Path != "" {
		// The CA the module keeps in path, when there is one.
		if p, _ := (Store{Dir: o.Path}).CAPaths(); fileExists(p) {
			caPath = p
		}
	}
	res := modrun.Result{"cert": certPath, "changed": false}
	data, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		res["exists"] = false
		res["renew"] = true
		res["renew_reasons"] = []string{"there is no certificate"}
		res["msg"] = certPath + " does not exist"
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read %s: %w", certPath, err)
	}
	cert, err := parseCertificate(data)
	if err != nil {
		return res, fmt.Errorf("%s: %w", certPath, err)
	}
	now := time.Now()
	info := Describe(cert)
	res["certificates"] = countCertificates(data)
	if o.PID > 0 {
		// etcd reads its trusted CA file when it starts, never again: a
		// file changed since is not what the process trusts.
		st, err := os.Stat(certPath)
		if err != nil {
			return res, err
		}
		started, err := processStart(o.PID)
		if err != nil {
			return res, fmt.Errorf("pid: %w", err)
		}
		res["process_started"] = started.UTC().Format(time.RFC3339)
		res["changed_since_process_start"] = st.ModTime().After(started)
	}
	res["exists"] = true
	res["subject"] = info.Subject
	res["common_name"] = info.CommonName
	res["issuer"] = info.Issuer
	res["serial"] = info.Serial
	res["not_before"] = info.NotBefore.Format(time.RFC3339)
	res["not_after"] = info.NotAfter.Format(time.RFC3339)
	res["days_left"] = info.DaysLeft(now)
	res["ip_addresses"] = info.IPs
	res["dns_names"] = info.DNSNames
	res["usage"] = info.Usage
	res["key_algorithm"] = info.Key
	res["is_ca"] = info.IsCA
	res["issued_by_etcd_cert"] = slices.Contains(cert.Subject.Organization, organization)
	msg := fmt.Sprintf("%s: %s, issued by %s, valid until %s (%d days left)", certPath, info.Subject, info.Issuer,
		res["not_after"], res["days_left"])
	var reasons []string
	if o.RenewAll {
		reasons = append(reasons, "renew_all is set")
	}
	// Whether it is due for renewal, and whether it names what it must.
	res["expires_soon"] = info.DaysLeft(now) < o.RenewBeforeDays
	if res["expires_soon"] == true {
		msg += fmt.Sprintf("; expires within %d days", o.RenewBeforeDays)
		reasons = append(reasons, fmt.Sprintf("it expires within %d days", o.RenewBeforeDays))
	}
	if names := append(slices.Clone(o.IPAddresses), o.DNSNames...); len(names) > 0 {
		missing := []string{}
		for _, n := range names {
			if cert.VerifyHostname(n) != nil {
				missing = append(missing, n)
			}
		}
		res["covers"], res["missing_names"] = len(missing) == 0, missing
		if len(missing) > 0 {
			msg += "; does not name " + strings.Join(missing, ", ")
			reasons = append(reasons, "it does not name "+strings.Join(missing, ", "))
		}
	}
	if len(o.IPAddresses) > 0 {
		// A member certificate naming other addresses is shared (kubeasz's
		// etcd.pem): its key would let one member pose as another.
		extra := []string{}
		for _, ip := range info.IPs {
			if !slices.ContainsFunc(o.IPAddresses, func(s string) bool { return net.ParseIP(s).Equal(net.ParseIP(ip)) }) {
				extra = append(extra, ip)
			}
		}
		res["extra_ip_addresses"] = extra
		if len(extra) > 0 {
			reasons = append(reasons, "it also names "+strings.Join(extra, ", ")+" (a certificate shared with other members)")
		}
	}
	if o.Key != "" {
		ok, err := keyBelongs(o.Key, cert)
		if err != nil {
			return res, err
		}
		res["key_matches"] = ok
		if !ok {
			msg += "; its key " + o.Key + " does NOT belong to it"
			reasons = append(reasons, "the key "+o.Key+" does not belong to it")
		}
	}
	// A member certificate serves and authenticates to peers, a client
	// certificate authenticates: one lacking that usage is refused by the
	// other side's TLS however valid it is otherwise. (A CA's own extended
	// key usages only narrow what it may sign.)
	if !cert.IsCA {
		lacking, err := lackingUsages(cert, Usage(o.Usage))
		if err != nil {
			return res, err
		}
		res["usage_ok"] = len(lacking) == 0
		if len(lacking) > 0 {
			why := fmt.Sprintf("the %s usage of a %s certificate", strings.Join(lacking, " and "), o.Usage)
			msg += "; lacks " + why
			reasons = append(reasons, "it lacks "+why)
		}
	}
	var pool *x509.CertPool
	switch {
	case o.CAPEM != "":
		if pool, err = certPool([]byte(o.CAPEM)); err != nil {
			return res, fmt.Errorf("ca_pem: %w", err)
		}
		res["ca_cert"] = "(ca_pem)"
	case caPath != "":
		caData, err := os.ReadFile(caPath)
		if err != nil {
			return res, fmt.Errorf("read the CA certificate: %w", err)
		}
		if pool, err = certPool(caData); err != nil {
			return res, fmt.Errorf("CA certificate %s: %w", caPath, err)
		}
		res["ca_cert"] = caPath
	}
	if pool != nil {
		verr := verifyPool(cert, pool)
		res["verifies"] = verr == nil
		if verr != nil {
			res["verify_error"] = verr.Error()
			msg += "; does NOT verify against " + res["ca_cert"].(string) + ": " + verr.Error()
			reasons = append(reasons, "it is not from the CA "+res["ca_cert"].(string))
		} else {
			msg += "; verifies against " + res["ca_cert"].(string)
		}
	}
	if len(o.Endpoints) > 0 {
		served, smsg, err := checkServed(ctx, o, info.Serial)
		if err != nil {
			return res, err
		}
		for k, v := range served {
			res[k] = v
		}
		msg += "; " + smsg
	}
	res["renew"] = len(reasons) > 0
	res["renew_reasons"] = append([]string{}, reasons...)
	res["msg"] = msg
	return res, nil
}

// checkServed dials every endpoint (a new TLS connection each) and says
// whether each serves the certificate of serial, and, with probe_cert,
// whether each accepts that client certificate.
func checkServed(ctx context.Context, o options, serial string) (modrun.Result, string, error) {
	timeout := time.Duration(o.Timeout * float64(time.Second))
	var probe *tls.Certificate
	if o.ProbeCert != "" {
		c, err := tls.LoadX509KeyPair(o.ProbeCert, o.ProbeKey)
		if err != nil {
			return nil, "", fmt.Errorf("probe_cert/probe_key: %w", err)
		}
		probe = &c
	}
	served := []map[string]any{}
	current, accepts := true, true
	var stale, refused []string
	for _, ep := range o.Endpoints {
		entry := map[string]any{"endpoint": ep}
		c, err := Served(ctx, ep, timeout)
		if err != nil {
			entry["error"] = err.Error()
			current = false
			stale = append(stale, ep+" ("+err.Error()+")")
		} else {
			si := Describe(c)
			entry["serial"], entry["not_after"] = si.Serial, si.NotAfter.Format(time.RFC3339)
			entry["current"] = si.Serial == serial
			if si.Serial != serial {
				current = false
				stale = append(stale, ep+" (serial "+si.Serial+")")
			}
		}
		if probe != nil {
			aerr := Accepts(ctx, ep, *probe, timeout)
			entry["accepts_probe"] = aerr == nil
			if aerr != nil {
				accepts = false
				refused = append(refused, ep)
			}
		}
		served = append(served, entry)
	}
	res := modrun.Result{"served": served, "served_current": current}
	msg := "every endpoint serves it"
	if !current {
		msg = "not served by " + strings.Join(stale, ", ")
	}
	if probe != nil {
		res["accepts_probe"] = accepts
		if accepts {
			msg += "; every endpoint accepts " + o.ProbeCert
		} else {
			msg += "; " + o.ProbeCert + " is refused by " + strings.Join(refused, ", ")
		}
	}
	return res, msg, nil
}

// countCertificates is the number of certificates in a PEM file (more
// than one in a CA bundle); blocks that do not parse are not counted.
func countCertificates(data []byte) int {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
		if _, err := x509.ParseCertificate(b.Bytes); b.Type == "CERTIFICATE" && err == nil {
			n++
		}
	}
}

// keyBelongs reports whether the private key in keyPath is cert's.
func keyBelongs(keyPath string, cert *x509.Certificate) (bool, error) {
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return false, fmt.Errorf("read the key: %w", err)
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return false, nil
	}
	return samePublicKey(key.Public(), cert.PublicKey), nil
}

// certPool holds every certificate of a PEM file (a CA bundle).
func certPool(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

func verifyPool(cert *x509.Certificate, pool *x509.CertPool) error {
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
