package modrun

import (
	"reflect"
	"strings"
	"testing"
)

var testSpec = Spec{
	Options: []Option{
		{Name: "name", Type: TypeStr, Required: true},
		{Name: "count", Type: TypeInt, Default: 3},
		{Name: "ratio", Type: TypeFloat},
		{Name: "enabled", Type: TypeBool, Default: false},
		{Name: "urls", Type: TypeList, Elements: TypeStr},
		{Name: "ports", Type: TypeList, Elements: TypeInt},
		{Name: "state", Type: TypeStr, Default: "present", Choices: []string{"present", "absent"}},
		{Name: "a", Type: TypeStr},
		{Name: "b", Type: TypeStr},
		{Name: "password", Type: TypeStr, NoLog: true},
	},
	MutuallyExclusive: [][]string{{"a", "b"}},
	RequiredIf:        []RequiredIf{{Key: "state", Value: "absent", Requires: []string{"a"}}},
}

func TestValidateConversions(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]any
		key  string
		want any
	}{
		{"int from string", map[string]any{"name": "x", "count": "7"}, "count", int64(7)},
		{"int from whole float", map[string]any{"name": "x", "count": 7.0}, "count", int64(7)},
		{"int default", map[string]any{"name": "x"}, "count", int64(3)},
		{"float from string", map[string]any{"name": "x", "ratio": "1.5"}, "ratio", 1.5},
		{"float from int", map[string]any{"name": "x", "ratio": int64(2)}, "ratio", 2.0},
		{"bool yes", map[string]any{"name": "x", "enabled": "yes"}, "enabled", true},
		{"bool True", map[string]any{"name": "x", "enabled": "True"}, "enabled", true},
		{"bool 1", map[string]any{"name": "x", "enabled": "1"}, "enabled", true},
		{"bool off", map[string]any{"name": "x", "enabled": "off"}, "enabled", false},
		{"bool number", map[string]any{"name": "x", "enabled": int64(1)}, "enabled", true},
		{"list from csv", map[string]any{"name": "x", "urls": "a, b,c"}, "urls", []any{"a", "b", "c"}},
		{"list of ints from csv", map[string]any{"name": "x", "ports": "1,2"}, "ports", []any{int64(1), int64(2)}},
		{"list from list", map[string]any{"name": "x", "urls": []any{"a"}}, "urls", []any{"a"}},
		{"str from int", map[string]any{"name": int64(3)}, "name", "3"},
		{"unset is nil", map[string]any{"name": "x"}, "ratio", nil},
		{"null takes default", map[string]any{"name": "x", "state": nil}, "state", "present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testSpec.Validate(tt.in)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !reflect.DeepEqual(got[tt.key], tt.want) {
				t.Fatalf("%s = %#v, want %#v", tt.key, got[tt.key], tt.want)
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]any
		want string
	}{
		{"unknown option", map[string]any{"name": "x", "bogus": 1}, "unsupported parameters: bogus. Supported parameters include: a, b, count, enabled, name, password, ports, ratio, state, urls"},
		{"missing required", map[string]any{}, "missing required arguments: name"},
		{"bad int", map[string]any{"name": "x", "count": "three"}, "argument 'count' is of type str and we were unable to convert to int"},
		{"fractional int", map[string]any{"name": "x", "count": 2.5}, "argument 'count'"},
		{"bad bool", map[string]any{"name": "x", "enabled": "maybe"}, "argument 'enabled'"},
		{"bad list element", map[string]any{"name": "x", "ports": "1,x"}, "argument 'ports'"},
		{"dict as str", map[string]any{"name": map[string]any{}}, "argument 'name' is of type dict"},
		{"bad choice", map[string]any{"name": "x", "state": "gone"}, "value of state must be one of: present, absent, got: gone"},
		{"mutually exclusive", map[string]any{"name": "x", "a": "1", "b": "2"}, "parameters are mutually exclusive: a|b"},
		{"required if", map[string]any{"name": "x", "state": "absent"}, "state is absent but all of the following are missing: a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testSpec.Validate(tt.in)
			if err == nil {
				t.Fatalf("Validate succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestRequiredOneOf(t *testing.T) {
	spec := Spec{
		Options:       []Option{{Name: "from", Type: TypeStr}, {Name: "to", Type: TypeStr}},
		RequiredOneOf: [][]string{{"from", "to"}},
	}
	for _, tt := range []struct {
		in map[string]any
		ok bool
	}{
		{map[string]any{"from": "a"}, true},
		{map[string]any{"to": "b"}, true},
		{map[string]any{"from": "a", "to": "b"}, true},
		{map[string]any{}, false},
		{map[string]any{"from": nil, "to": ""}, false},
	} {
		_, err := spec.Validate(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "one of the following is required: from, to") {
			t.Errorf("message %q", err)
		}
	}
}
