package discover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// DefaultUnit is the unit kubeasz and this project run etcd as.
const DefaultUnit = "etcd.service"

// Member is how etcd runs on this host.
type Member struct {
	Unit     Unit     `json:"systemd"`
	Binary   string   `json:"binary"`
	Version  string   `json:"version"`
	Layout   string   `json:"layout"`
	Settings Settings `json:"settings"`
	Config
}

// Local finds out how the unit runs etcd on this host. An error wrapping
// ErrNoUnit means there is no such unit here.
func Local(ctx context.Context, unitName string) (Member, error) {
	if unitName == "" {
		unitName = DefaultUnit
	}
	u, err := ReadUnit(ctx, unitName)
	if err != nil {
		return Member{}, err
	}
	return FromUnit(u)
}

// FromUnit resolves the settings of the etcd a unit runs: its Environment=,
// its EnvironmentFiles (read with ini.v1, in systemd's order), its command
// line and its --config-file. Version is left for BinaryVersion.
func FromUnit(u Unit) (Member, error) {
	if len(u.ExecStart) == 0 {
		return Member{}, fmt.Errorf("%s has no ExecStart", u.Name)
	}
	var env []EnvVar
	for _, kv := range u.Environment {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env = append(env, EnvVar{Name: k, Value: v})
		}
	}
	for _, f := range u.EnvironmentFiles {
		vars, err := ReadEnvFile(f.Path)
		if errors.Is(err, os.ErrNotExist) && f.Optional {
			continue
		}
		if err != nil {
			return Member{}, fmt.Errorf("%s's EnvironmentFile: %w", u.Name, err)
		}
		env = append(env, vars...)
	}
	s, err := Resolve(u.ExecStart[1:], env, os.ReadFile)
	if err != nil {
		return Member{}, fmt.Errorf("%s: %w", u.Name, err)
	}
	m := Member{Unit: u, Binary: u.ExecStart[0], Settings: s, Config: ConfigOf(s)}
	// A relative data dir is relative to the unit's working directory.
	if !filepath.IsAbs(m.DataDir) && u.WorkingDirectory != "" {
		m.DataDir = filepath.Join(u.WorkingDirectory, m.DataDir)
	}
	m.Layout = LayoutOf(u, m)
	return m, nil
}

// ReadEnvFile reads a systemd EnvironmentFile (KEY=value lines, '#' and
// ';' comments, quoted values) with ini.v1's unsectioned keys.
func ReadEnvFile(path string) ([]EnvVar, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ini.LoadSources(ini.LoadOptions{IgnoreInlineComment: true, AllowShadows: false}, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []EnvVar
	for _, k := range f.Section(ini.DefaultSection).Keys() {
		out = append(out, EnvVar{Name: strings.TrimPrefix(k.Name(), "export "), Value: k.Value(), From: path})
	}
	return out, nil
}

var versionRE = regexp.MustCompile(`(?m)^etcd Version: v?(\S+)`)

// BinaryVersion runs "etcd --version" and returns the version it names.
func BinaryVersion(ctx context.Context, binary string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", binary, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version printed no \"etcd Version:\" line: is it etcd?", binary)
	}
	return string(m[1]), nil
}

// LayoutOf names the way a member was deployed, for the operator and for
// choosing how a new member is installed:
//   - etcdops: this project's own role (an env file beside an optional
//     bootstrap.env, settings in ETCD_* variables);
//   - kubeasz-3 and kubeasz-2: every setting a flag, the binary in
//     /opt/kube/bin, certificates in /etc/kubernetes/ssl (3.x) or
//     /etc/etcd/ssl (2.x);
//   - config-file, env-file, flags: other layouts, by where the settings are.
func LayoutOf(u Unit, m Member) string {
	for _, f := range u.EnvironmentFiles {
		if filepath.Base(f.Path) == "bootstrap.env" && f.Optional {
			return "etcdops"
		}
	}
	if m.Settings.Get("config-file") != "" {
		return "config-file"
	}
	flags, env := 0, 0
	for _, s := range m.Settings {
		if s.Source == "flag" {
			flags++
		} else {
			env++
		}
	}
	if env > flags {
		return "env-file"
	}
	if filepath.Dir(m.Binary) == "/opt/kube/bin" {
		switch filepath.Dir(m.ClientTLS.CertFile) {
		case "/etc/kubernetes/ssl":
			return "kubeasz-3"
		case "/etc/etcd/ssl":
			return "kubeasz-2"
		}
	}
	return "flags"
}
