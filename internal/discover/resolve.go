// Package discover finds out how etcd runs on this host: from systemd's
// view of the unit (D-Bus), its command line, its environment files and its
// --config-file, resolved the way etcd itself resolves them. It is what
// lets a module run on a member of a cluster it did not deploy.
package discover

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Setting is one resolved etcd setting and where it came from.
type Setting struct {
	Value  string `json:"value"`
	Source string `json:"source"` // "flag", "env" (with the file, if any, in From), "config-file"
	From   string `json:"from,omitempty"`
}

// Settings maps an etcd flag name (without dashes: "data-dir") to its value.
type Settings map[string]Setting

// Get returns a setting's value, or "".
func (s Settings) Get(name string) string { return s[name].Value }

// List splits a comma-separated setting (URLs).
func (s Settings) List(name string) []string {
	var out []string
	for _, v := range strings.Split(s.Get(name), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Bool reads a boolean setting as etcd's flag package does.
func (s Settings) Bool(name string) bool {
	b, _ := strconv.ParseBool(s.Get(name))
	return b
}

// EnvVar is one variable of the unit's environment, in systemd's order.
type EnvVar struct {
	Name, Value string
	From        string // the EnvironmentFile, or "" for Environment=
}

// boolFlags are etcd's boolean flags: on a command line they take no
// separate value ("--client-cert-auth", never "--client-cert-auth true").
var boolFlags = map[string]bool{
	"client-cert-auth": true, "peer-client-cert-auth": true, "auto-tls": true, "peer-auto-tls": true,
	"force-new-cluster": true, "strict-reconfig-check": true, "enable-pprof": true, "debug": true,
	"enable-v2": true, "enable-grpc-gateway": true, "pre-vote": true, "version": true, "help": true,
	"socket-reuse-port": true, "socket-reuse-address": true,
	"experimental-initial-corrupt-check": true, "experimental-enable-lease-checkpoint": true,
	"experimental-enable-distributed-tracing": true, "experimental-memory-mlock": true,
	"unsafe-no-fsync": true, "enable-log-rotation": true,
	"experimental-enable-lease-checkpoint-persist": true, "experimental-stop-grpc-service-on-defrag": true,
}

// ParseArgs reads etcd's command line (argv without the binary) as Go's
// flag package does: -f or --f, with "=value" or the next argument as the
// value (boolean flags take no separate value); parsing stops at "--" or at
// the first argument that is not a flag, which etcd refuses.
func ParseArgs(argv []string) (map[string]string, error) {
	flags := map[string]string{}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return nil, fmt.Errorf("etcd's command line has %q where a flag is expected: etcd refuses arguments that are not flags", a)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		if name == "" {
			return nil, fmt.Errorf("etcd's command line has a malformed flag %q", a)
		}
		if !hasValue {
			if boolFlags[name] || i+1 >= len(argv) || strings.HasPrefix(argv[i+1], "-") {
				value = "true"
			} else {
				i++
				value = argv[i]
			}
		}
		flags[name] = value
	}
	return flags, nil
}

// EnvName is the ETCD_* variable etcd reads for a flag.
func EnvName(flag string) string {
	return "ETCD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagName is the flag an ETCD_* variable stands for, or "".
func flagName(env string) string {
	rest, ok := strings.CutPrefix(env, "ETCD_")
	if !ok || rest == "" {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
}

// Resolve combines the command line and the environment as etcd does: a
// flag wins over its ETCD_* variable (etcd warns that the variable is
// shadowed); with --config-file (or ETCD_CONFIG_FILE) etcd reads only that
// file, whose contents readConfig returns. Variables that are not etcd's
// (ETCDCTL_*, ETCD_UNSUPPORTED_ARCH) are ignored.
func Resolve(argv []string, env []EnvVar, readConfig func(path string) ([]byte, error)) (Settings, error) {
	flags, err := ParseArgs(argv)
	if err != nil {
		return nil, err
	}
	s := Settings{}
	for _, e := range env { // later definitions win, as in systemd
		name := flagName(e.Name)
		if name == "" || name == "unsupported-arch" {
			continue
		}
		s[name] = Setting{Value: e.Value, Source: "env", From: e.From}
	}
	for name, v := range flags {
		s[name] = Setting{Value: v, Source: "flag"}
	}
	cfg := s.Get("config-file")
	if cfg == "" {
		return s, nil
	}
	data, err := readConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("read etcd's --config-file: %w", err)
	}
	fromFile, err := ParseConfigFile(data)
	if err != nil {
		return nil, fmt.Errorf("etcd's --config-file %s: %w", cfg, err)
	}
	out := Settings{"config-file": s["config-file"]}
	for k, v := range fromFile {
		out[k] = Setting{Value: v, Source: "config-file", From: cfg}
	}
	return out, nil
}

// ParseConfigFile reads etcd's YAML configuration file into flag names and
// values: its keys are the flag names; the TLS settings sit under
// client-transport-security and peer-transport-security; lists are joined
// with commas as on the command line.
func ParseConfigFile(data []byte) (map[string]string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	out := map[string]string{}
	for k, v := range raw {
		switch k {
		case "client-transport-security", "peer-transport-security":
			sub, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s must be a mapping", k)
			}
			prefix := ""
			if k == "peer-transport-security" {
				prefix = "peer-"
			}
			for sk, sv := range sub {
				name := sk
				if sk == "auto-tls" || sk == "client-cert-auth" || sk == "cert-file" || sk == "key-file" ||
					sk == "trusted-ca-file" || sk == "allowed-cn" || sk == "allowed-hostname" || sk == "crl-file" {
					name = prefix + sk
				}
				out[name] = scalar(sv)
			}
		default:
			out[k] = scalar(v)
		}
	}
	return out, nil
}

func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = scalar(e)
		}
		return strings.Join(parts, ",")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// Config is what the modules need to know of a member, read from its
// resolved settings with etcd's defaults filled in.
type Config struct {
	Name                     string   `json:"name"`
	DataDir                  string   `json:"data_dir"`
	WALDir                   string   `json:"wal_dir"`
	ListenClientURLs         []string `json:"listen_client_urls"`
	AdvertiseClientURLs      []string `json:"advertise_client_urls"`
	ListenPeerURLs           []string `json:"listen_peer_urls"`
	InitialAdvertisePeerURLs []string `json:"initial_advertise_peer_urls"`
	// PlainClientURLs are the client listeners without TLS (kubeasz 3.x's
	// http://127.0.0.1:2379).
	PlainClientURLs []string `json:"plain_client_urls"`
	ClientTLS       TLS      `json:"client_tls"`
	PeerTLS         TLS      `json:"peer_tls"`
	InitialCluster  string   `json:"initial_cluster"`
	ClusterToken    string   `json:"initial_cluster_token"`
}

// TLS is one side's (client or peer) certificate files.
type TLS struct {
	CertFile       string `json:"cert_file"`
	KeyFile        string `json:"key_file"`
	TrustedCAFile  string `json:"trusted_ca_file"`
	ClientCertAuth bool   `json:"client_cert_auth"`
}

// ConfigOf reads a member's Config from its settings, with etcd's defaults
// for what is not set (name "default", data dir "<name>.etcd", localhost
// URLs).
func ConfigOf(s Settings) Config {
	c := Config{
		Name:                     s.Get("name"),
		DataDir:                  s.Get("data-dir"),
		WALDir:                   s.Get("wal-dir"),
		ListenClientURLs:         s.List("listen-client-urls"),
		AdvertiseClientURLs:      s.List("advertise-client-urls"),
		ListenPeerURLs:           s.List("listen-peer-urls"),
		InitialAdvertisePeerURLs: s.List("initial-advertise-peer-urls"),
		InitialCluster:           s.Get("initial-cluster"),
		ClusterToken:             s.Get("initial-cluster-token"),
		ClientTLS: TLS{CertFile: s.Get("cert-file"), KeyFile: s.Get("key-file"),
			TrustedCAFile: s.Get("trusted-ca-file"), ClientCertAuth: s.Bool("client-cert-auth")},
		PeerTLS: TLS{CertFile: s.Get("peer-cert-file"), KeyFile: s.Get("peer-key-file"),
			TrustedCAFile: s.Get("peer-trusted-ca-file"), ClientCertAuth: s.Bool("peer-client-cert-auth")},
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".etcd"
	}
	if len(c.ListenClientURLs) == 0 {
		c.ListenClientURLs = []string{"http://localhost:2379"}
	}
	if len(c.AdvertiseClientURLs) == 0 {
		c.AdvertiseClientURLs = []string{"http://localhost:2379"}
	}
	if len(c.ListenPeerURLs) == 0 {
		c.ListenPeerURLs = []string{"http://localhost:2380"}
	}
	if len(c.InitialAdvertisePeerURLs) == 0 {
		c.InitialAdvertisePeerURLs = []string{"http://localhost:2380"}
	}
	for _, u := range c.ListenClientURLs {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "unix://") {
			c.PlainClientURLs = append(c.PlainClientURLs, u)
		}
	}
	return c
}

// ClientEndpoints are the URLs a client on this host should use, TLS ones
// first: the advertised client URLs, then the listeners that are not
// wildcards. Plain listeners come last, and only if there is no TLS one.
func (c Config) ClientEndpoints() []string {
	var tls, plain []string
	add := func(u string) {
		p, err := url.Parse(u)
		if err != nil || p.Hostname() == "0.0.0.0" || p.Hostname() == "::" || p.Hostname() == "" {
			return
		}
		switch p.Scheme {
		case "https":
			if !slices.Contains(tls, u) {
				tls = append(tls, u)
			}
		case "http":
			if !slices.Contains(plain, u) {
				plain = append(plain, u)
			}
		}
	}
	for _, u := range c.AdvertiseClientURLs {
		add(u)
	}
	for _, u := range c.ListenClientURLs {
		add(u)
	}
	if len(tls) > 0 {
		return tls
	}
	return plain
}
