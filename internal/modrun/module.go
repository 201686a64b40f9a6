package modrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
)

// Meta holds what Ansible says about the run itself, from the _ansible_*
// keys of the args file. Keys this runtime does not know are accepted and
// kept in Extra: every ansible-core release may add some.
type Meta struct {
	CheckMode  bool
	Diff       bool
	NoLog      bool
	Verbosity  int
	Debug      bool
	ModuleName string
	Extra      map[string]any
}

// Module is one invocation: the validated options and the run's metadata.
type Module struct {
	Spec     Spec
	Meta     Meta
	Params   map[string]any
	warnings []string
}

// Warn adds a warning that Ansible prints after the task.
func (m *Module) Warn(format string, args ...any) {
	m.warnings = append(m.warnings, fmt.Sprintf(format, args...))
}

// Decode fills v, a pointer to a struct whose json tags name the options,
// from the validated parameters.
func (m *Module) Decode(v any) error {
	b, err := json.Marshal(m.Params)
	if err != nil {
		return fmt.Errorf("encode parameters: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode parameters: %w", err)
	}
	return nil
}

// Version is this build's version, stamped at link time from the VERSION
// file (make build: -X github.com/etcdops/etcdops/internal/modrun.Version=...).
// Every result reports it as etcdops_version.
var Version = "devel"

// Result is the JSON object a module answers. Handlers fill module-specific
// return values; the runtime sets changed, failed, msg and warnings.
type Result map[string]any

// Handler runs a module. A nil error means success. A returned error fails
// the task with the error's text as msg; the fields of res (if any) are
// still returned, so a failure can report what it saw.
type Handler func(ctx context.Context, m *Module) (res Result, err error)

// Skip is returned by a handler that cannot run in the current mode (for
// example check mode); the task is reported as skipped with this message.
type Skip struct{ Msg string }

func (s *Skip) Error() string { return s.Msg }

// ParseArgs decodes the contents of an Ansible args file: one flat JSON
// object (binary modules), or the same wrapped as {"ANSIBLE_MODULE_ARGS": …}
// (new-style modules). It separates the _ansible_* keys from task options.
func ParseArgs(data []byte) (opts map[string]any, meta Meta, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, meta, fmt.Errorf("module arguments are not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, meta, errors.New("module arguments: trailing data after the JSON object")
	}
	if inner, ok := raw["ANSIBLE_MODULE_ARGS"].(map[string]any); ok && len(raw) == 1 {
		raw = inner
	}
	opts = make(map[string]any, len(raw))
	for k, v := range raw {
		if !strings.HasPrefix(k, "_ansible_") {
			opts[k] = v
			continue
		}
		var convErr error
		switch k {
		case "_ansible_check_mode":
			meta.CheckMode, convErr = metaBool(v)
		case "_ansible_diff":
			meta.Diff, convErr = metaBool(v)
		case "_ansible_no_log":
			meta.NoLog, convErr = metaBool(v)
		case "_ansible_debug":
			meta.Debug, convErr = metaBool(v)
		case "_ansible_verbosity":
			var i any
			i, convErr = convert(TypeInt, "", v)
			if convErr == nil {
				meta.Verbosity = int(i.(int64))
			}
		case "_ansible_module_name":
			meta.ModuleName, _ = v.(string)
		default:
			if meta.Extra == nil {
				meta.Extra = map[string]any{}
			}
			meta.Extra[k] = v
		}
		if convErr != nil {
			return nil, meta, fmt.Errorf("internal argument %s: %v", k, convErr)
		}
	}
	return opts, meta, nil
}

func metaBool(v any) (bool, error) {
	b, err := convert(TypeBool, "", v)
	if err != nil {
		return false, err
	}
	return b.(bool), nil
}

// ExecuteArgs is Execute with the args file given as a map, as tests and
// tools that drive a module in-process have it.
func ExecuteArgs(ctx context.Context, args map[string]any, spec Spec, h Handler) Result {
	data, err := json.Marshal(args)
	if err != nil {
		return Result{"failed": true, "changed": false, "msg": fmt.Sprintf("args cannot be encoded: %v", err)}
	}
	return Execute(ctx, data, spec, h)
}

// Execute runs handler h on the args file contents and returns the result
// object to print. It never panics: a panic in the handler becomes a failed
// result.
func Execute(ctx context.Context, data []byte, spec Spec, h Handler) (out Result) {
	var secrets []string
	var meta Meta
	defer func() {
		if r := recover(); r != nil {
			out = Result{"failed": true, "changed": false,
				"msg": fmt.Sprintf("module crashed: %v", r)}
			if meta.Debug || meta.Verbosity >= 4 {
				out["exception"] = string(debug.Stack())
			}
		}
		out = scrub(out, secrets)
	}()

	opts, meta, err := ParseArgs(data)
	if err != nil {
		return Result{"failed": true, "changed": false, "msg": err.Error()}
	}
	for _, o := range spec.Options {
		if s, ok := opts[o.Name].(string); o.NoLog && ok && s != "" {
			secrets = append(secrets, s)
		}
	}
	params, err := spec.Validate(opts)
	if err != nil {
		return Result{"failed": true, "changed": false, "msg": err.Error()}
	}
	m := &Module{Spec: spec, Meta: meta, Params: params}
	res, herr := h(ctx, m)
	if res == nil {
		res = Result{}
	}
	if _, ok := res["changed"]; !ok {
		res["changed"] = false
	}
	var skip *Skip
	switch {
	case errors.As(herr, &skip):
		res["skipped"] = true
		res["changed"] = false
		res["msg"] = skip.Msg
	case herr != nil:
		res["failed"] = true
		res["msg"] = herr.Error()
	default:
		if _, ok := res["msg"]; !ok {
			res["msg"] = ""
		}
	}
	if len(m.warnings) > 0 {
		res["warnings"] = m.warnings
	}
	if !meta.Diff {
		delete(res, "diff")
	}
	res["invocation"] = map[string]any{"module_args": invocation(spec, params, meta.NoLog)}
	return res
}

// invocation echoes the parameters as AnsibleModule does, with no_log
// options masked.
func invocation(spec Spec, params map[string]any, noLog bool) any {
	if noLog {
		return "HIDDEN due to no_log"
	}
	out := make(map[string]any, len(params))
	for k, v := range params {
		if o := spec.option(k); o != nil && o.NoLog && v != nil {
			v = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
		}
		out[k] = v
	}
	return out
}

const masked = "********"

// scrub replaces every occurrence of a secret in the result's strings, so a
// no_log value can never leak through an error message.
func scrub(r Result, secrets []string) Result {
	if len(secrets) == 0 {
		return r
	}
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			for _, s := range secrets {
				x = strings.ReplaceAll(x, s, masked)
			}
			return x
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
			return x
		case []string:
			for i := range x {
				x[i] = walk(x[i]).(string)
			}
			return x
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
			return x
		case Result:
			for k, e := range x {
				x[k] = walk(e)
			}
			return x
		}
		return v
	}
	return walk(r).(Result)
}

// Entry is one module the binary serves: its name, options and handler.
type Entry struct {
	Name    string
	Spec    Spec
	Handler Handler
}

// Main is the whole main function of the binary, which serves every module
// in entries. It picks the module by the _ansible_module_name key of the
// args (which Ansible sends, and the action plugin relies on), or else by
// the name the binary was called as (a copy at library/<module>). It reads
// the args file named by argv[1] (or standard input when there is none),
// runs the module, prints the result as one JSON object on the real stdout
// and exits. Anything else that writes to stdout during the run (a
// library's logger, a stray print) is sent to stderr instead, so Ansible
// always reads valid JSON.
func Main(entries ...Entry) {
	out, restore, err := captureStdout()
	if err != nil {
		out = os.Stdout
		restore = func() {}
	}
	code := run(os.Args, os.Stdin, out, entries)
	restore()
	os.Exit(code)
}

func run(args []string, stdin io.Reader, out io.Writer, entries []Entry) int {
	data, err := readArgs(args, stdin)
	if err != nil {
		return finish(out, Result{"failed": true, "changed": false, "msg": err.Error()})
	}
	_, meta, err := ParseArgs(data)
	if err != nil {
		return finish(out, Result{"failed": true, "changed": false, "msg": err.Error()})
	}
	e, err := pick(entries, meta.ModuleName, args)
	if err != nil {
		return finish(out, Result{"failed": true, "changed": false, "msg": err.Error()})
	}
	return finish(out, Execute(context.Background(), data, e.Spec, e.Handler))
}

// pick finds the module by the name Ansible gave it (the last part of a
// collection's FQCN), or else by the binary's own name.
func pick(entries []Entry, moduleName string, args []string) (Entry, error) {
	if i := strings.LastIndex(moduleName, "."); i >= 0 {
		moduleName = moduleName[i+1:]
	}
	var called string
	if len(args) > 0 {
		called = filepath.Base(args[0])
	}
	for _, name := range []string{moduleName, called} {
		for _, e := range entries {
			if name != "" && e.Name == name {
				return e, nil
			}
		}
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	name := moduleName
	if name == "" {
		name = called
	}
	return Entry{}, fmt.Errorf("this binary serves the modules %s, not %q", strings.Join(names, ", "), name)
}

func readArgs(args []string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	if len(args) > 1 {
		data, err = os.ReadFile(args[1])
	} else {
		data, err = io.ReadAll(stdin)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read module arguments: %v", err)
	}
	return data, nil
}

// finish prints res, with the build's version added (each result the
// binary prints has etcdops_version), and gives the exit status.
func finish(out io.Writer, res Result) int {
	res["etcdops_version"] = Version
	if err := writeResult(out, res); err != nil {
		fmt.Fprintf(os.Stderr, "cannot write module result: %v\n", err)
		return 1
	}
	if f, _ := res["failed"].(bool); f {
		return 1
	}
	return 0
}

func writeResult(w io.Writer, res Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		// A handler returned something JSON cannot express: say so instead.
		b, _ = json.Marshal(Result{"failed": true, "changed": false,
			"msg": fmt.Sprintf("module result cannot be encoded: %v", err)})
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}
