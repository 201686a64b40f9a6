package member

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcdops/etcdops/internal/modrun"
)

// TestSidecarMatchesSpec checks library/etcd_member.yml against ModuleSpec:
// every option with the same type, elements, default, choices and required
// flag, and nothing documented that the code does not accept. (The
// registry's test does the same for every registered module.)
func TestSidecarMatchesSpec(t *testing.T) {
	data, err := os.ReadFile("../../library/etcd_member.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Documentation struct {
			Module  string `json:"module"`
			Options map[string]struct {
				Type     string `json:"type"`
				Elements string `json:"elements"`
				Required bool   `json:"required"`
				Default  any    `json:"default"`
				Choices  []any  `json:"choices"`
				Desc     any    `json:"description"`
			} `json:"options"`
		} `json:"DOCUMENTATION"`
		Examples string         `json:"EXAMPLES"`
		Return   map[string]any `json:"RETURN"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Documentation.Module != "etcd_member" {
		t.Errorf("module %q", doc.Documentation.Module)
	}
	var examples []map[string]any
	if err := yaml.Unmarshal([]byte(doc.Examples), &examples); err != nil || len(examples) == 0 {
		t.Errorf("EXAMPLES: %v", err)
	}
	for _, ex := range examples {
		if _, ok := ex["etcd_member"]; !ok {
			t.Errorf("example %v does not use etcd_member", ex["name"])
		}
	}
	for _, k := range []string{"members", "cluster_id", "leader_id", "member", "initial_cluster"} {
		if _, ok := doc.Return[k]; !ok {
			t.Errorf("RETURN lacks %s", k)
		}
	}
	canon := func(v any) string { return fmt.Sprintf("%v", v) } // 5 and 5.0, [a] and [a] alike
	seen := map[string]bool{}
	for _, o := range ModuleSpec.Options {
		seen[o.Name] = true
		d, ok := doc.Documentation.Options[o.Name]
		if !ok {
			t.Errorf("option %s is not documented", o.Name)
			continue
		}
		elements := ""
		if o.Type == modrun.TypeList {
			elements = string(o.Elements)
		}
		var choices []string
		for _, c := range d.Choices {
			choices = append(choices, fmt.Sprint(c))
		}
		if d.Type != string(o.Type) || d.Elements != elements || d.Required != o.Required || d.Desc == nil ||
			canon(d.Default) != canon(o.Default) || !slices.Equal(choices, o.Choices) {
			t.Errorf("option %s: documented %+v, code %+v", o.Name, d, o)
		}
	}
	for n := range doc.Documentation.Options {
		if !seen[n] {
			t.Errorf("option %s is documented but not accepted", n)
		}
	}
	if reflect.DeepEqual(ModuleSpec.Options, nil) {
		t.Fatal("no options")
	}
}
