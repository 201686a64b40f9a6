package discover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
)

// Unit is systemd's view of the service that runs etcd.
type Unit struct {
	Name             string    `json:"unit"`
	LoadState        string    `json:"load_state"`
	FragmentPath     string    `json:"fragment_path"`
	ActiveState      string    `json:"active_state"`
	SubState         string    `json:"sub_state"`
	MainPID          uint32    `json:"main_pid"`
	NRestarts        uint32    `json:"n_restarts"`
	User             string    `json:"user"`
	WorkingDirectory string    `json:"working_directory"`
	ExecStart        []string  `json:"exec_start"` // argv; [0] is the binary
	Environment      []string  `json:"environment"`
	EnvironmentFiles []EnvFile `json:"environment_files"`
	// Text is the unit file itself (FragmentPath), which a new member's
	// unit is made from.
	Text string `json:"text"`
	// Via says how the unit was read: "dbus", or "unit-file" where no bus
	// answered (then drop-ins and the run state are not known).
	Via string `json:"via"`
}

// EnvFile is one EnvironmentFile= of the unit; Optional is systemd's "-".
type EnvFile struct {
	Path     string `json:"path"`
	Optional bool   `json:"optional"`
}

// ErrNoUnit means that systemd knows no such unit on this host.
var ErrNoUnit = errors.New("no such systemd unit")

// ReadUnit asks systemd, over D-Bus (its private socket as root, else the
// system bus), how the unit runs. Where no bus answers, it reads the unit
// file itself.
func ReadUnit(ctx context.Context, name string) (Unit, error) {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		u, ferr := readUnitFile(name)
		if ferr != nil {
			return Unit{}, fmt.Errorf("systemd's D-Bus API did not answer (%v), and the unit file: %w", err, ferr)
		}
		return u, nil
	}
	defer conn.Close()
	props, err := conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return Unit{}, fmt.Errorf("ask systemd about %s: %w", name, err)
	}
	u := Unit{Name: name, Via: "dbus",
		LoadState: str(props["LoadState"]), FragmentPath: str(props["FragmentPath"]),
		ActiveState: str(props["ActiveState"]), SubState: str(props["SubState"])}
	if u.LoadState == "not-found" {
		return u, fmt.Errorf("%s: %w", name, ErrNoUnit)
	}
	if u.FragmentPath != "" {
		data, err := os.ReadFile(u.FragmentPath)
		if err != nil {
			return Unit{}, fmt.Errorf("read %s's unit file: %w", name, err)
		}
		u.Text = string(data)
	}
	sp, err := conn.GetUnitTypePropertiesContext(ctx, name, "Service")
	if err != nil {
		return Unit{}, fmt.Errorf("ask systemd about the service %s: %w", name, err)
	}
	u.MainPID, _ = sp["MainPID"].(uint32)
	u.NRestarts, _ = sp["NRestarts"].(uint32)
	u.User = str(sp["User"])
	u.WorkingDirectory = str(sp["WorkingDirectory"])
	u.Environment, _ = sp["Environment"].([]string)
	// ExecStart is a(sasbttttuii): path, argv, ignore-failure, timestamps…
	if cmds, ok := sp["ExecStart"].([][]any); ok && len(cmds) > 0 && len(cmds[0]) > 1 {
		u.ExecStart, _ = cmds[0][1].([]string)
		if p := str(cmds[0][0]); p != "" && len(u.ExecStart) > 0 {
			u.ExecStart[0] = p // argv[0] may be a bare name; the path is what runs
		}
	}
	// EnvironmentFiles is a(sb): path, and whether a missing file is fine.
	if files, ok := sp["EnvironmentFiles"].([][]any); ok {
		for _, f := range files {
			if len(f) == 2 {
				opt, _ := f[1].(bool)
				u.EnvironmentFiles = append(u.EnvironmentFiles, EnvFile{Path: str(f[0]), Optional: opt})
			}
		}
	}
	return u, nil
}

func str(v any) string { s, _ := v.(string); return s }

// unitDirs are where unit files are looked up without systemd's help.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

func readUnitFile(name string) (Unit, error) {
	for _, dir := range unitDirs {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Unit{}, err
		}
		u, err := ParseUnitFile(data)
		if err != nil {
			return Unit{}, fmt.Errorf("%s: %w", path, err)
		}
		u.Name, u.FragmentPath, u.Via, u.LoadState, u.Text = name, path, "unit-file", "loaded", string(data)
		return u, nil
	}
	return Unit{}, fmt.Errorf("%s: %w", name, ErrNoUnit)
}

// ParseUnitFile reads the [Service] settings etcd's run depends on from a
// unit file, as systemd would (the last ExecStart, every Environment and
// EnvironmentFile line in order, an empty assignment resetting the list).
func ParseUnitFile(data []byte) (Unit, error) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return Unit{}, err
	}
	var u Unit
	for _, o := range opts {
		if o.Section != "Service" {
			continue
		}
		switch o.Name {
		case "ExecStart":
			words, err := SplitCommand(o.Value)
			if err != nil {
				return Unit{}, fmt.Errorf("the unit's ExecStart= line: %w", err)
			}
			if len(words) > 0 {
				words[0] = strings.TrimLeft(words[0], "-@:+!")
			}
			u.ExecStart = words
		case "Environment":
			if o.Value == "" {
				u.Environment = nil
				continue
			}
			words, err := SplitCommand(o.Value)
			if err != nil {
				return Unit{}, fmt.Errorf("the unit's Environment= line: %w", err)
			}
			u.Environment = append(u.Environment, words...)
		case "EnvironmentFile":
			if o.Value == "" {
				u.EnvironmentFiles = nil
				continue
			}
			p, opt := strings.CutPrefix(o.Value, "-")
			u.EnvironmentFiles = append(u.EnvironmentFiles, EnvFile{Path: p, Optional: opt})
		case "User":
			u.User = o.Value
		case "WorkingDirectory":
			u.WorkingDirectory = strings.TrimPrefix(o.Value, "-")
		}
	}
	return u, nil
}

// SplitCommand splits a systemd command line or assignment list into
// words: white space separates them, single and double quotes group them,
// a backslash escapes the next character, and a backslash at the end of
// a line continues it.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\' && i+1 < len(rs) && rs[i+1] == '\n' && quote == 0:
			// A continued line: the break separates words.
			i++
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unbalanced quotes in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
