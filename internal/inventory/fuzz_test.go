package inventory

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzMove checks, on any text that parses, that moving its first grouped
// host to another group (created if needed) never panics, keeps every other
// line in order, and leaves a file that parses with the host in the target
// group and not in the source.
func FuzzMove(f *testing.F) {
	files, _ := filepath.Glob("testdata/hosts*")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data, "kube_node")
		}
	}
	f.Add([]byte("[etcd]\r\n10.0.0.1 a=1 # c\r\n[new-etcd]\r\n10.0.0.2"), "etcd")
	f.Add([]byte("h1\n[g]\nh2:22\n[g:vars]\nx=1\n"), "other")
	f.Fuzz(func(t *testing.T, data []byte, to string) {
		if !groupNameRE.MatchString(to) {
			return
		}
		file, err := Parse(data)
		if err != nil {
			return
		}
		if string(file.Bytes()) != string(data) {
			t.Fatalf("Parse then Bytes is not the identity")
		}
		var src *Line
		for _, l := range file.Lines {
			if l.Kind == Host && l.Group != to && !isRange(l.Pattern) {
				src = l
				break
			}
		}
		if src == nil {
			return
		}
		host, _, _ := splitPort(src.Pattern)
		if host == "" || strings.ContainsAny(host, " \t#=") {
			return
		}
		from := src.Group
		before := slices.Clone(file.Lines)
		if _, err := file.Apply(Move{Host: host, From: from, To: to, CreateGroup: true}); err != nil {
			return // e.g. a range elsewhere holds the host
		}
		after, err := Parse(file.Bytes())
		if err != nil {
			t.Fatalf("the edited file does not parse: %v\n%q", err, file.Bytes())
		}
		if slices.Contains(after.Groups(host), from) || !slices.Contains(after.Groups(host), to) {
			t.Fatalf("%s: groups after move %v (from %s to %s)", host, after.Groups(host), from, to)
		}
		// Every line that was not the host's line in from survives, in order.
		j := 0
		for _, l := range before {
			if l.Kind == Host && l.Group == from && matches(l.Pattern, host) {
				continue
			}
			// (a last line ending in \r, without terminator, becomes CRLF-terminated once a line follows)
			for j < len(after.Lines) && strings.TrimRight(after.Lines[j].Text, "\r") != strings.TrimRight(l.Text, "\r") {
				j++
			}
			if j == len(after.Lines) {
				t.Fatalf("line %q lost", l.Text)
			}
			j++
		}
	})
}
