package pki

import (
	"context"
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
	{Name: "state", Type: modrun.TypeStr, Default: "present", Choices: []string{"present", "info"}},
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
}

// nameRE is what a certificate name may be: a file name such as etcd1,
// etcd-192.168.1.6 or etcd-client.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

const day = 24 * time.Hour

// RunModule runs the etcd_cert module.
func RunModule(_ context.Context, m *modrun.Module) (modrun.Result, error) {
	var o options
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	if o.State == "info" {
		return runInfo(o)
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
		out, err := store.Ensure(o.Name, auth, req, renewBefore, dryRun)
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

// runInfo reports on one certificate and changes nothing.
func runInfo(o options) (modrun.Result, error) {
	certPath := o.Cert
	switch {
	case certPath != "" && o.Name != "":
		return nil, errors.New("state=info reads cert, or path/NAME.pem: give cert or name, not both")
	case certPath == "" && (o.Path == "" || o.Name == ""):
		return nil, errors.New("state=info needs cert, or path and name")
	case certPath == "":
		if err := checkName(o.Name); err != nil {
			return nil, err
		}
		certPath, _ = Store{Dir: o.Path}.Paths(o.Name)
	}
	caPath := o.CACert
	if caPath == "" && o.Path != "" {
		// The CA the module keeps in path, when there is one.
		if p, _ := (Store{Dir: o.Path}).CAPaths(); fileExists(p) {
			caPath = p
		}
	}
	res := modrun.Result{"cert": certPath, "changed": false}
	data, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		res["exists"] = false
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
	msg := fmt.Sprintf("%s: %s, issued by %s, valid until %s (%d days left)", certPath, info.Subject, info.Issuer,
		res["not_after"], res["days_left"])
	// Whether it is due for renewal, and whether it names what it must.
	res["expires_soon"] = info.DaysLeft(now) < o.RenewBeforeDays
	if res["expires_soon"] == true {
		msg += fmt.Sprintf("; expires within %d days", o.RenewBeforeDays)
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
		}
	}
	if caPath != "" {
		caData, err := os.ReadFile(caPath)
		if err != nil {
			return res, fmt.Errorf("read the CA certificate: %w", err)
		}
		ca, err := parseCertificate(caData)
		if err != nil {
			return res, fmt.Errorf("CA certificate %s: %w", caPath, err)
		}
		res["ca_cert"] = caPath
		verr := verify(cert, ca)
		res["verifies"] = verr == nil
		if verr != nil {
			res["verify_error"] = verr.Error()
			msg += "; does NOT verify against " + caPath + ": " + verr.Error()
		} else {
			msg += "; verifies against " + caPath
		}
	}
	res["msg"] = msg
	return res, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
