// Package mirror plans a new member's service after an existing member's:
// the same unit, binary, flags, environment files, directories and
// certificate paths, with the member's own name and address, so a member
// added to a cluster that kubeasz (or anyone) deployed is run exactly like
// the members already there. Planning is pure; module.go writes the plan.
package mirror

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/etcdops/etcdops/internal/discover"
)

// Request names the new member.
type Request struct {
	Name           string
	Address        string // the new member's IP address (or host name) in its URLs
	InitialCluster string // name=peerURL,… as etcd_member's add returned it
	ClusterState   string // "existing" to join, "new" to start a cluster
}

// File is one file of the plan.
type File struct {
	Path    string
	Content string
	Mode    os.FileMode
}

// Dir is a directory the member needs, owned by the user etcd runs as.
type Dir struct {
	Path  string
	Owner string // "" is root
}

// Plan is what a new member needs, besides its binary and TLS files.
type Plan struct {
	Files  []File
	Dirs   []Dir
	Binary string
	TLS    TLSPaths
}

// TLSPaths are where the member's certificate files must be.
type TLSPaths struct {
	CertFile          string `json:"cert_file"`
	KeyFile           string `json:"key_file"`
	TrustedCAFile     string `json:"trusted_ca_file"`
	PeerCertFile      string `json:"peer_cert_file"`
	PeerKeyFile       string `json:"peer_key_file"`
	PeerTrustedCAFile string `json:"peer_trusted_ca_file"`
}

// perMember are the settings a new member does not copy.
var perMember = []string{"name", "initial-cluster", "initial-cluster-state"}

// DonorAddress is the address a member uses in its own URLs: the host of
// its first advertised peer URL.
func DonorAddress(d discover.Member) (string, error) {
	if len(d.InitialAdvertisePeerURLs) == 0 {
		return "", fmt.Errorf("member %q advertises no peer URL", d.Name)
	}
	u, err := url.Parse(d.InitialAdvertisePeerURLs[0])
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("member %q advertises the peer URL %q, which has no host", d.Name, d.InitialAdvertisePeerURLs[0])
	}
	return u.Hostname(), nil
}

// Make plans the new member after donor.
func Make(donor discover.Member, r Request) (Plan, error) {
	if r.Name == "" || r.Address == "" || r.InitialCluster == "" {
		return Plan{}, fmt.Errorf("the new member needs a name, an address and the initial cluster")
	}
	if donor.Layout == "config-file" {
		return Plan{}, fmt.Errorf("member %q is run from the --config-file %s: making a new member from it is not supported; "+
			"write the new member's configuration file yourself", donor.Name, donor.Settings.Get("config-file"))
	}
	if donor.Unit.Text == "" || len(donor.Unit.ExecStart) == 0 {
		return Plan{}, fmt.Errorf("member %q: its unit file is not known", donor.Name)
	}
	old, err := DonorAddress(donor)
	if err != nil {
		return Plan{}, err
	}
	state := r.ClusterState
	if state == "" {
		state = "existing"
	}
	own := map[string]string{"name": r.Name, "initial-cluster": r.InitialCluster, "initial-cluster-state": state}
	value := func(name, v string) string {
		if nv, ok := own[name]; ok {
			return nv
		}
		return ReplaceAddress(v, old, r.Address)
	}

	// The command line: the donor's flags in their order and form.
	argv := []string{donor.Unit.ExecStart[0]}
	seen := map[string]bool{}
	for _, f := range splitFlags(donor.Unit.ExecStart[1:]) {
		seen[f.name] = true
		if f.sep == "" { // a boolean given alone
			argv = append(argv, f.raw)
			continue
		}
		v := value(f.name, f.value)
		if f.sep == " " {
			argv = append(argv, f.raw, v)
		} else {
			argv = append(argv, f.raw+"="+v)
		}
	}

	// Variables, from Environment= and from each environment file.
	envFiles := map[string][]string{}
	var unitEnv []string
	for name, s := range donor.Settings {
		if s.Source != "env" || seen[name] {
			continue
		}
		seen[name] = true
		kv := discover.EnvName(name) + "=" + value(name, s.Value)
		if s.From == "" {
			unitEnv = append(unitEnv, kv)
		} else {
			envFiles[s.From] = append(envFiles[s.From], kv)
		}
	}
	// What the donor does not set at all goes where most settings are.
	for _, name := range perMember {
		if seen[name] {
			continue
		}
		if donor.Layout == "env-file" && len(donor.Unit.EnvironmentFiles) > 0 {
			f := donor.Unit.EnvironmentFiles[0].Path
			envFiles[f] = append(envFiles[f], discover.EnvName(name)+"="+own[name])
		} else {
			argv = append(argv, "--"+name+"="+own[name])
		}
	}

	text, err := rewriteUnit(donor.Unit.Text, argv, unitEnv)
	if err != nil {
		return Plan{}, fmt.Errorf("member %q's unit file %s: %w", donor.Name, donor.Unit.FragmentPath, err)
	}
	unitPath := donor.Unit.FragmentPath
	if unitPath == "" {
		unitPath = filepath.Join("/etc/systemd/system", donor.Unit.Name)
	}
	p := Plan{Binary: donor.Unit.ExecStart[0], Files: []File{{Path: unitPath, Content: text, Mode: 0o644}}}
	paths := make([]string, 0, len(envFiles))
	for f := range envFiles {
		paths = append(paths, f)
	}
	sort.Strings(paths)
	for _, f := range paths {
		vars := envFiles[f]
		sort.Strings(vars)
		content := fmt.Sprintf("# etcd member %s, made by etcd_service like member %s's %s.\n%s\n",
			r.Name, donor.Name, filepath.Base(f), strings.Join(vars, "\n"))
		p.Files = append(p.Files, File{Path: f, Content: content, Mode: 0o640})
	}
	owner := donor.Unit.User
	if owner == "root" {
		owner = ""
	}
	for _, d := range []string{donor.DataDir, donor.WALDir, donor.Unit.WorkingDirectory} {
		if d != "" && !slices.ContainsFunc(p.Dirs, func(x Dir) bool { return x.Path == d }) {
			p.Dirs = append(p.Dirs, Dir{Path: d, Owner: owner})
		}
	}
	p.TLS = TLSPaths{
		CertFile: donor.ClientTLS.CertFile, KeyFile: donor.ClientTLS.KeyFile, TrustedCAFile: donor.ClientTLS.TrustedCAFile,
		PeerCertFile: donor.PeerTLS.CertFile, PeerKeyFile: donor.PeerTLS.KeyFile, PeerTrustedCAFile: donor.PeerTLS.TrustedCAFile,
	}
	return p, nil
}

// flagArg is one flag of a command line as written: raw is "--name" (or
// "-name"), sep is "=", " " (value in the next argument) or "" (alone).
type flagArg struct{ raw, name, value, sep string }

func splitFlags(argv []string) []flagArg {
	parsed, _ := discover.ParseArgs(argv) // the donor runs: its line parses
	var out []flagArg
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			break
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			out = append(out, flagArg{raw: k, name: strings.TrimLeft(k, "-"), value: v, sep: "="})
			continue
		}
		name := strings.TrimLeft(a, "-")
		if i+1 < len(argv) && parsed[name] == argv[i+1] && !strings.HasPrefix(argv[i+1], "-") {
			out = append(out, flagArg{raw: a, name: name, value: argv[i+1], sep: " "})
			i++
			continue
		}
		out = append(out, flagArg{raw: a, name: name, sep: ""})
	}
	return out
}

// ReplaceAddress replaces the address old where it stands as a whole in v
// (in a URL, a list, a file name), never inside a longer address:
// 10.0.0.1 is not replaced in 10.0.0.12 or 110.0.0.1.
func ReplaceAddress(v, old, new string) string {
	if old == "" || old == new {
		return v
	}
	var b strings.Builder
	for {
		i := strings.Index(v, old)
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		before, after := i > 0 && addrChar(v[i-1]), i+len(old) < len(v) && addrTail(v[i+len(old):])
		b.WriteString(v[:i])
		if before || after {
			b.WriteString(old)
		} else {
			b.WriteString(new)
		}
		v = v[i+len(old):]
	}
}

func addrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.'
}

// addrTail reports whether rest continues the address: a digit, a letter,
// or a dot followed by a digit (10.0.0.1 in 10.0.0.1.5); ".pem" ends it.
func addrTail(rest string) bool {
	c := rest[0]
	if c == '.' {
		return len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9'
	}
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// rewriteUnit replaces the unit's ExecStart and Environment with the new
// member's (systemd's own unit syntax, through go-systemd's unit package).
func rewriteUnit(text string, argv, env []string) (string, error) {
	opts, err := unit.DeserializeOptions(strings.NewReader(text))
	if err != nil {
		return "", err
	}
	var out []*unit.UnitOption
	execDone, envDone := false, false
	for _, o := range opts {
		if o.Section == "Service" {
			switch o.Name {
			case "ExecStart":
				if o.Value == "" || execDone {
					continue
				}
				execDone = true
				o = unit.NewUnitOption("Service", "ExecStart", joinCommand(argv))
			case "Environment":
				if envDone {
					continue
				}
				envDone = true
				if len(env) == 0 {
					continue
				}
				sort.Strings(env)
				o = unit.NewUnitOption("Service", "Environment", joinCommand(env))
			}
		}
		out = append(out, o)
	}
	if !execDone {
		return "", fmt.Errorf("no ExecStart in [Service]")
	}
	if !envDone && len(env) > 0 {
		sort.Strings(env)
		out = append(out, unit.NewUnitOption("Service", "Environment", joinCommand(env)))
	}
	data, err := io.ReadAll(unit.Serialize(out))
	return string(data), err
}

func joinCommand(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\"'\\") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}
