package modrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testOpts struct {
	Name     string   `json:"name"`
	Count    int      `json:"count"`
	Enabled  bool     `json:"enabled"`
	URLs     []string `json:"urls"`
	Password string   `json:"password"`
}

func TestParseArgsAcceptsEveryAnsibleKey(t *testing.T) {
	data := []byte(`{"name":"x","_ansible_check_mode":true,"_ansible_diff":"yes","_ansible_no_log":false,
		"_ansible_verbosity":3,"_ansible_module_name":"etcd_member","_ansible_ignore_unknown_opts":false,
		"_ansible_target_log_info":null,"_ansible_tracebacks_for":[],"_ansible_inject_invocation":true,
		"_ansible_some_future_key":{"a":1}}`)
	opts, meta, err := ParseArgs(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 1 || opts["name"] != "x" {
		t.Fatalf("options = %v, want only name", opts)
	}
	if !meta.CheckMode || !meta.Diff || meta.NoLog || meta.Verbosity != 3 || meta.ModuleName != "etcd_member" {
		t.Fatalf("meta = %+v", meta)
	}
	for _, k := range []string{"_ansible_ignore_unknown_opts", "_ansible_tracebacks_for", "_ansible_some_future_key"} {
		if _, ok := meta.Extra[k]; !ok {
			t.Errorf("meta.Extra lacks %s", k)
		}
	}
}

func TestParseArgsWrapped(t *testing.T) {
	opts, _, err := ParseArgs([]byte(`{"ANSIBLE_MODULE_ARGS":{"name":"y"}}`))
	if err != nil || opts["name"] != "y" {
		t.Fatalf("opts=%v err=%v", opts, err)
	}
}

func TestParseArgsRejectsGarbage(t *testing.T) {
	for _, in := range []string{``, `name=x`, `[1]`, `{"a":1} {"b":2}`} {
		if _, _, err := ParseArgs([]byte(in)); err == nil {
			t.Errorf("ParseArgs(%q) succeeded", in)
		}
	}
}

func TestExecute(t *testing.T) {
	ok := func(ctx context.Context, m *Module) (Result, error) {
		var o testOpts
		if err := m.Decode(&o); err != nil {
			return nil, err
		}
		if o.Count == 99 {
			panic("boom")
		}
		if o.Count == 98 {
			return Result{"seen": o.Name}, errors.New("failed with secret " + o.Password)
		}
		if o.Count == 97 {
			return nil, &Skip{Msg: "not in check mode"}
		}
		m.Warn("careful %d", o.Count)
		return Result{"changed": !m.Meta.CheckMode, "name": o.Name, "count": o.Count,
			"urls": o.URLs, "enabled": o.Enabled, "diff": map[string]any{"before": "a", "after": "b"}}, nil
	}
	tests := []struct {
		name  string
		args  string
		check func(t *testing.T, r Result)
	}{
		{"success with conversions", `{"name":"n","count":"5","urls":"a,b","enabled":"yes","_ansible_diff":true}`, func(t *testing.T, r Result) {
			if r["failed"] != nil || r["changed"] != true || r["count"] != 5 || r["enabled"] != true {
				t.Fatalf("result %v", r)
			}
			if r["diff"] == nil {
				t.Fatal("diff missing in diff mode")
			}
			if w, _ := r["warnings"].([]string); len(w) != 1 || w[0] != "careful 5" {
				t.Fatalf("warnings %v", r["warnings"])
			}
		}},
		{"check mode reaches handler, diff dropped without diff mode", `{"name":"n","_ansible_check_mode":true}`, func(t *testing.T, r Result) {
			if r["changed"] != false {
				t.Fatalf("changed in check mode: %v", r)
			}
			if _, ok := r["diff"]; ok {
				t.Fatal("diff returned without diff mode")
			}
		}},
		{"panic becomes failure", `{"name":"n","count":99}`, func(t *testing.T, r Result) {
			if r["failed"] != true || !strings.Contains(r["msg"].(string), "boom") {
				t.Fatalf("result %v", r)
			}
		}},
		{"error keeps fields and hides secrets", `{"name":"n","count":98,"password":"hunter2"}`, func(t *testing.T, r Result) {
			if r["failed"] != true || r["seen"] != "n" {
				t.Fatalf("result %v", r)
			}
			b, _ := json.Marshal(r)
			if bytes.Contains(b, []byte("hunter2")) {
				t.Fatalf("secret leaked: %s", b)
			}
		}},
		{"skip", `{"name":"n","count":97}`, func(t *testing.T, r Result) {
			if r["skipped"] != true || r["failed"] != nil {
				t.Fatalf("result %v", r)
			}
		}},
		{"unknown option fails", `{"name":"n","nope":1}`, func(t *testing.T, r Result) {
			if r["failed"] != true || !strings.Contains(r["msg"].(string), "nope") {
				t.Fatalf("result %v", r)
			}
		}},
		{"no_log hides invocation", `{"name":"n","password":"pw","_ansible_no_log":true}`, func(t *testing.T, r Result) {
			inv := r["invocation"].(map[string]any)
			if inv["module_args"] != "HIDDEN due to no_log" {
				t.Fatalf("invocation %v", inv)
			}
		}},
		{"no_log option masked in invocation", `{"name":"n","password":"pw"}`, func(t *testing.T, r Result) {
			args := r["invocation"].(map[string]any)["module_args"].(map[string]any)
			if args["password"] != "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" {
				t.Fatalf("password echoed: %v", args)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Execute(context.Background(), []byte(tt.args), testSpec, ok)
			// Round-trip through JSON as Ansible would read it.
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back Result
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			for k, v := range back {
				if f, ok := v.(float64); ok {
					back[k] = int(f)
				}
			}
			if w, ok := r["warnings"].([]string); ok {
				back["warnings"] = w
			}
			tt.check(t, back)
		})
	}
}

func TestRunWritesOneJSONObject(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	if err := os.WriteFile(args, []byte(`{"name":"n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run([]string{"mod", args}, strings.NewReader(""), &out, []Entry{{Name: "mod", Spec: testSpec, Handler: func(ctx context.Context, m *Module) (Result, error) {
		return Result{"changed": true}, nil
	}}})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	dec := json.NewDecoder(&out)
	var r Result
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value on stdout")
	}
	out.Reset()
	code = run([]string{"mod", filepath.Join(dir, "missing")}, strings.NewReader(""), &out, []Entry{{Name: "mod", Spec: testSpec}})
	if code != 1 || !strings.Contains(out.String(), "cannot read module arguments") {
		t.Fatalf("code %d out %s", code, out.String())
	}
	out.Reset()
	code = run([]string{"mod"}, strings.NewReader(`{"name":"stdin"}`), &out, []Entry{{Name: "mod", Spec: testSpec, Handler: func(ctx context.Context, m *Module) (Result, error) {
		return Result{"name": m.Params["name"]}, nil
	}}})
	if code != 0 || !strings.Contains(out.String(), `"name":"stdin"`) {
		t.Fatalf("stdin args: code %d out %s", code, out.String())
	}
}

func TestRunDispatchesByModuleName(t *testing.T) {
	entries := []Entry{
		{Name: "one", Spec: Spec{Options: []Option{{Name: "x", Type: TypeInt}}}, Handler: func(ctx context.Context, m *Module) (Result, error) {
			return Result{"who": "one", "x": m.Params["x"]}, nil
		}},
		{Name: "two", Spec: Spec{}, Handler: func(ctx context.Context, m *Module) (Result, error) {
			return Result{"who": "two"}, nil
		}},
	}
	tests := []struct {
		name, argv0, args, want string
		code                    int
	}{
		{"by module name", "etcdops", `{"_ansible_module_name":"one","x":"2"}`, `"who":"one"`, 0},
		{"by FQCN", "etcdops", `{"_ansible_module_name":"etcdops.etcd.two"}`, `"who":"two"`, 0},
		{"by argv0", "/tmp/two", `{}`, `"who":"two"`, 0},
		{"by argv0 when the module name is not served", "/x/library/two", `{"_ansible_module_name":"my_two"}`, `"who":"two"`, 0},
		{"module name before argv0", "/x/library/two", `{"_ansible_module_name":"one"}`, `"who":"one"`, 0},
		{"bad args named", "/x/library/two", `{"a":`, `module arguments are not a JSON object`, 1},
		{"options checked per module", "etcdops", `{"_ansible_module_name":"two","x":1}`, `unsupported parameters: x`, 1},
		{"unknown module", "etcdops", `{"_ansible_module_name":"three"}`, `serves the modules one, two, not \"three\"`, 1},
		{"no module name, binary not named after one", "/x/etcdops", `{}`, `serves the modules one, two, not \"etcdops\"`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run([]string{tt.argv0}, strings.NewReader(tt.args), &out, entries)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("code %d out %s; want %d and %s", code, out.String(), tt.code, tt.want)
			}
			// Every answer, a failure too, says which build gave it.
			var r Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil || r["etcdops_version"] != Version {
				t.Fatalf("etcdops_version = %v, want %q (%v)", r["etcdops_version"], Version, err)
			}
		})
	}
}

func TestExecuteArgs(t *testing.T) {
	spec := Spec{Options: []Option{{Name: "n", Type: TypeInt}}}
	double := func(ctx context.Context, m *Module) (Result, error) {
		var o struct {
			N int `json:"n"`
		}
		if err := m.Decode(&o); err != nil {
			return nil, err
		}
		return Result{"n": 2 * o.N}, nil
	}
	if got := ExecuteArgs(context.Background(), map[string]any{"n": "21"}, spec, double); got["n"] != 42 || got["failed"] == true {
		t.Errorf("ExecuteArgs = %v, want n 42", got)
	}
	got := ExecuteArgs(context.Background(), map[string]any{"n": make(chan int)}, spec, double)
	if got["failed"] != true || !strings.Contains(fmt.Sprint(got["msg"]), "cannot be encoded") {
		t.Errorf("ExecuteArgs with unencodable args = %v, want a failure", got)
	}
}
