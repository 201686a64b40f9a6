package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcdops/etcdops/internal/modrun"
)

// docOption is one option as the sidecar documents it.
type docOption struct {
	Type     string   `json:"type"`
	Elements string   `json:"elements"`
	Required bool     `json:"required"`
	Default  any      `json:"default"`
	Choices  []any    `json:"choices"`
	NoLog    bool     `json:"no_log"`
	Desc     any      `json:"description"`
	Aliases  []string `json:"aliases"`
}

type sidecar struct {
	Documentation struct {
		Module      string               `json:"module"`
		Short       string               `json:"short_description"`
		Description any                  `json:"description"`
		Options     map[string]docOption `json:"options"`
	} `json:"DOCUMENTATION"`
	Examples string         `json:"EXAMPLES"`
	Return   map[string]any `json:"RETURN"`
}

// TestSidecarsMatchSpecs is the only guard of the modules' documentation:
// ansible-lint cannot check a binary module's arguments, so every option the
// Go code accepts must be documented in library/NAME.yml with the same type,
// elements, default, choices and required flag, and the sidecar may document
// nothing the code does not accept.
func TestSidecarsMatchSpecs(t *testing.T) {
	for _, entry := range modules {
		name := entry.Name
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("..", "..", "library", name+".yml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no documentation sidecar: %v", err)
			}
			var doc sidecar
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if doc.Documentation.Module != name {
				t.Errorf("DOCUMENTATION.module = %q, want %q", doc.Documentation.Module, name)
			}
			if doc.Documentation.Short == "" || doc.Documentation.Description == nil {
				t.Error("short_description or description missing")
			}
			var examples []map[string]any
			if err := yaml.Unmarshal([]byte(doc.Examples), &examples); err != nil || len(examples) == 0 {
				t.Errorf("EXAMPLES is not a YAML list of tasks: %v", err)
			}
			for _, ex := range examples {
				if _, ok := ex[name]; !ok {
					t.Errorf("an example task does not use %s: %v", name, ex["name"])
				}
			}
			if len(doc.Return) == 0 {
				t.Error("RETURN documents nothing")
			}
			// modrun adds etcdops_version to every result of every module.
			if v, ok := doc.Return["etcdops_version"].(map[string]any); !ok || v["returned"] != "always" || v["type"] != "str" {
				t.Errorf("RETURN does not document etcdops_version (returned: always, type: str): %v", doc.Return["etcdops_version"])
			}
			compareOptions(t, entry.Spec, doc.Documentation.Options)
		})
	}
}

// TestEveryModuleIsServed: each package under modules/ is in the list the
// binary serves, and the list holds nothing else (make build links
// library/<name> for each directory there).
func TestEveryModuleIsServed(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join("..", "..", "modules"))
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, d := range dirs {
		if d.IsDir() {
			want = append(want, d.Name())
		}
	}
	for _, e := range modules {
		got = append(got, e.Name)
		if e.Handler == nil {
			t.Errorf("%s has no handler", e.Name)
		}
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the binary serves %v; modules/ holds %v", got, want)
	}
}

func compareOptions(t *testing.T, spec modrun.Spec, docs map[string]docOption) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range spec.Options {
		seen[o.Name] = true
		d, ok := docs[o.Name]
		if !ok {
			t.Errorf("option %s is accepted but not documented", o.Name)
			continue
		}
		if d.Type != string(o.Type) {
			t.Errorf("option %s: documented type %q, code %q", o.Name, d.Type, o.Type)
		}
		if o.Type == modrun.TypeList {
			want := string(o.Elements)
			if want == "" {
				want = "str"
			}
			if d.Elements != want {
				t.Errorf("option %s: documented elements %q, code %q", o.Name, d.Elements, want)
			}
		}
		if d.Required != o.Required {
			t.Errorf("option %s: documented required=%v, code %v", o.Name, d.Required, o.Required)
		}
		if d.NoLog != o.NoLog {
			t.Errorf("option %s: documented no_log=%v, code %v", o.Name, d.NoLog, o.NoLog)
		}
		if d.Desc == nil {
			t.Errorf("option %s has no description", o.Name)
		}
		if got, want := canonical(d.Default), canonical(o.Default); !reflect.DeepEqual(got, want) {
			t.Errorf("option %s: documented default %v, code %v", o.Name, got, want)
		}
		var dc, oc []string
		for _, c := range d.Choices {
			dc = append(dc, fmt.Sprint(c))
		}
		oc = append(oc, o.Choices...)
		sort.Strings(dc)
		sort.Strings(oc)
		if !reflect.DeepEqual(dc, oc) {
			t.Errorf("option %s: documented choices %v, code %v", o.Name, dc, oc)
		}
	}
	for n := range docs {
		if !seen[n] {
			t.Errorf("option %s is documented but the code does not accept it", n)
		}
	}
}

// canonical makes a default comparable: numbers as float64, lists as []any
// of canonical values, nil and empty lists kept apart.
func canonical(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = canonical(x[i])
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i := range x {
			out[i] = x[i]
		}
		return out
	}
	return v
}
