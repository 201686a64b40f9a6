// Package modrun is the runtime shared by every binary Ansible module of this
// project: it reads the args file Ansible passes as argv[1], validates and
// converts the options the way Ansible's own AnsibleModule does, and writes
// exactly one JSON result object to stdout.
package modrun

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Type names an option type, with the same names and conversions as
// Ansible's argument_spec.
type Type string

// The option types a module may declare.
const (
	TypeStr   Type = "str"
	TypeInt   Type = "int"
	TypeFloat Type = "float"
	TypeBool  Type = "bool"
	TypeList  Type = "list"
	TypePath  Type = "path"
	TypeRaw   Type = "raw"
	TypeDict  Type = "dict"
)

// Option declares one task option.
type Option struct {
	Name     string
	Type     Type
	Elements Type // for TypeList: the type of each element (default str)
	Required bool
	Default  any // applied when the option is absent or null
	Choices  []string
	NoLog    bool // never echoed back (invocation is masked)
}

// Spec is a module's whole argument specification.
type Spec struct {
	Options []Option
	// MutuallyExclusive lists groups of options of which at most one may be set.
	MutuallyExclusive [][]string
	// RequiredTogether lists groups of options that must be set together.
	RequiredTogether [][]string
	// RequiredOneOf lists groups of options of which at least one must be set.
	RequiredOneOf [][]string
	// RequiredIf lists conditions: when option Key equals Value, each of
	// Requires must be set.
	RequiredIf []RequiredIf
}

// RequiredIf is a conditional requirement, as Ansible's required_if.
type RequiredIf struct {
	Key      string
	Value    string
	Requires []string
}

// option returns the declaration of name, or nil.
func (s Spec) option(name string) *Option {
	for i := range s.Options {
		if s.Options[i].Name == name {
			return &s.Options[i]
		}
	}
	return nil
}

// names returns the sorted option names.
func (s Spec) names() []string {
	out := make([]string, 0, len(s.Options))
	for _, o := range s.Options {
		out = append(out, o.Name)
	}
	sort.Strings(out)
	return out
}

// Validate converts raw task options (already stripped of _ansible_* keys)
// into canonical values: every declared option is present in the result,
// with its default when unset, and of its declared Go type (string, int64,
// float64, bool, []any, or any for raw).
func (s Spec) Validate(raw map[string]any) (map[string]any, error) {
	var unknown []string
	for k := range raw {
		if s.option(k) == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unsupported parameters: %s. Supported parameters include: %s",
			strings.Join(unknown, ", "), strings.Join(s.names(), ", "))
	}

	out := make(map[string]any, len(s.Options))
	set := make(map[string]bool, len(s.Options))
	var missing []string
	for _, o := range s.Options {
		v, ok := raw[o.Name]
		if ok && v != nil {
			cv, err := convert(o.Type, o.Elements, v)
			if err != nil {
				return nil, fmt.Errorf("argument '%s' is of type %s and we were unable to convert to %s: %v",
					o.Name, describe(v), o.Type, err)
			}
			if len(o.Choices) > 0 {
				if err := checkChoices(o, cv); err != nil {
					return nil, err
				}
			}
			out[o.Name] = cv
			set[o.Name] = true
			continue
		}
		if o.Required {
			missing = append(missing, o.Name)
			continue
		}
		if o.Default != nil {
			cv, err := convert(o.Type, o.Elements, o.Default)
			if err != nil {
				// A bad default is a programming error, not a user one.
				panic(fmt.Sprintf("option %s: bad default %v: %v", o.Name, o.Default, err))
			}
			out[o.Name] = cv
		} else {
			out[o.Name] = nil
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("missing required arguments: %s", strings.Join(missing, ", "))
	}
	for _, group := range s.MutuallyExclusive {
		var present []string
		for _, n := range group {
			if set[n] {
				present = append(present, n)
			}
		}
		if len(present) > 1 {
			return nil, fmt.Errorf("parameters are mutually exclusive: %s", strings.Join(group, "|"))
		}
	}
	for _, group := range s.RequiredTogether {
		var present, absent []string
		for _, n := range group {
			if set[n] {
				present = append(present, n)
			} else {
				absent = append(absent, n)
			}
		}
		if len(present) > 0 && len(absent) > 0 {
			return nil, fmt.Errorf("parameters are required together: %s", strings.Join(group, ", "))
		}
	}
	for _, group := range s.RequiredOneOf {
		found := false
		for _, n := range group {
			found = found || (set[n] && out[n] != nil && out[n] != "")
		}
		if !found {
			return nil, fmt.Errorf("one of the following is required: %s", strings.Join(group, ", "))
		}
	}
	for _, r := range s.RequiredIf {
		if fmt.Sprint(out[r.Key]) != r.Value {
			continue
		}
		var absent []string
		for _, n := range r.Requires {
			if !set[n] && out[n] == nil {
				absent = append(absent, n)
			}
		}
		if len(absent) > 0 {
			return nil, fmt.Errorf("%s is %s but all of the following are missing: %s",
				r.Key, r.Value, strings.Join(absent, ", "))
		}
	}
	return out, nil
}

func checkChoices(o Option, v any) error {
	vals := []any{v}
	if l, ok := v.([]any); ok {
		vals = l
	}
	for _, x := range vals {
		s := fmt.Sprint(x)
		found := false
		for _, c := range o.Choices {
			if c == s {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("value of %s must be one of: %s, got: %s", o.Name, strings.Join(o.Choices, ", "), s)
		}
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "str"
	case bool:
		return "bool"
	case float64, json.Number, int, int64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

// convert turns a loosely typed JSON value into the canonical Go value of t,
// following Ansible's check_type_* functions: "3" is an int, "yes" is true,
// "a,b" is a list.
func convert(t, elements Type, v any) (any, error) {
	if n, ok := v.(json.Number); ok {
		// Keep the number's spelling; the conversions below parse it.
		v = numberValue(n)
	}
	switch n := v.(type) {
	case int:
		v = int64(n)
	case int32:
		v = int64(n)
	case uint32:
		v = int64(n)
	case float32:
		v = float64(n)
	case []string:
		l := make([]any, len(n))
		for i := range n {
			l[i] = n[i]
		}
		v = l
	}
	switch t {
	case TypeStr, TypePath:
		switch x := v.(type) {
		case string:
			return x, nil
		case bool:
			// Ansible converts with a warning; booleans become True/False.
			if x {
				return "True", nil
			}
			return "False", nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		}
		return nil, fmt.Errorf("%s cannot be converted to a string", describe(v))
	case TypeInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if x == math.Trunc(x) && !math.IsInf(x, 0) {
				return int64(x), nil
			}
			return nil, fmt.Errorf("%v is not a whole number", x)
		case string:
			s := strings.TrimSpace(x)
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
			return nil, fmt.Errorf("%q is not a valid integer", x)
		}
		return nil, fmt.Errorf("%s cannot be converted to an int", describe(v))
	case TypeFloat:
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a valid float", x)
			}
			return f, nil
		}
		return nil, fmt.Errorf("%s cannot be converted to a float", describe(v))
	case TypeBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			if x == 0 || x == 1 {
				return x == 1, nil
			}
		case float64:
			if x == 0 || x == 1 {
				return x == 1, nil
			}
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "y", "yes", "on", "1", "true", "t":
				return true, nil
			case "n", "no", "off", "0", "false", "f", "":
				return false, nil
			}
		}
		return nil, fmt.Errorf("%v is not a valid boolean; valid booleans include: yes, no, true, false, 1, 0", v)
	case TypeList:
		var items []any
		switch x := v.(type) {
		case []any:
			items = x
		case string:
			if x == "" {
				items = []any{}
			} else {
				for _, p := range strings.Split(x, ",") {
					items = append(items, strings.TrimSpace(p))
				}
			}
		case int64, float64, bool:
			items = []any{x}
		default:
			return nil, fmt.Errorf("%s cannot be converted to a list", describe(v))
		}
		if elements == "" {
			elements = TypeStr
		}
		out := make([]any, 0, len(items))
		for i, it := range items {
			cv, err := convert(elements, "", it)
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
			out = append(out, cv)
		}
		return out, nil
	case TypeRaw:
		return v, nil
	case TypeDict:
		// As Ansible's check_type_dict: a mapping, or a JSON object in a string.
		switch x := v.(type) {
		case map[string]any:
			return x, nil
		case string:
			var m map[string]any
			if err := json.Unmarshal([]byte(x), &m); err != nil || m == nil {
				return nil, fmt.Errorf("%q is not a dictionary (a mapping or a JSON object)", x)
			}
			return m, nil
		}
		return nil, fmt.Errorf("%s cannot be converted to a dictionary", describe(v))
	}
	return nil, fmt.Errorf("unknown option type %q", t)
}

func numberValue(n json.Number) any {
	if i, err := n.Int64(); err == nil {
		return i
	}
	if f, err := n.Float64(); err == nil {
		return f
	}
	return n.String()
}
