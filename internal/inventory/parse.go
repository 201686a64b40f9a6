// Package inventory is the hosts_group_move Ansible module: it moves a host
// between groups of an Ansible INI inventory (a kubeasz hosts file), or
// removes it from a group, and leaves every other byte of the file as it
// was.
//
// The file is read as lines that keep their own terminators; each line is
// classified the way ansible-core's INI inventory plugin reads it (section
// headers [group], [group:vars], [group:children] with an optional trailing
// comment; '#' and ';' comment lines; host lines whose first shell-like
// token is the host pattern, then key=value variables and an optional
// comment). An edit removes or inserts whole lines and nothing else.
//
// gopkg.in/ini.v1 is not used: it cannot write an inventory back unchanged
// (it rewrites spacing, drops or moves comments, and reorders keys), and it
// does not read one the way Ansible does either — it takes
// "10.0.0.1 NODE_NAME=etcd1" for a key, cannot hold the same host in two
// sections' bodies in order, and knows nothing of host ranges, host:port or
// the :vars/:children suffixes — so its view would be a second, different
// parser to keep in step with Ansible's.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind is what a line of an inventory is.
type Kind int

// The kinds of line.
const (
	Blank   Kind = iota // empty or only spaces
	Comment             // starts with '#' or ';'
	Section             // [name], [name:vars], [name:children]
	Host                // a host pattern in a hosts section
	Entry               // a line of a :vars or :children section
)

// Line is one line of the file, with its terminator.
type Line struct {
	Text string // without the terminator
	EOL  string // "\n", "\r\n" or "" (last line without newline)
	Kind Kind
	// For Section: the group and the section type (hosts, vars, children).
	// For Host and Entry: the section the line is in.
	Group, Type string
	// For Host: the host pattern as written (host, host:port, range).
	Pattern string
}

// File is a parsed inventory.
type File struct {
	Lines []*Line
}

// sectionRE is ansible-core's section header: a group name without ':',
// ']' or spaces, an optional :type, then spaces and a comment only.
var sectionRE = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`)

// childRE is ansible-core's group name on a line of a :children section.
var childRE = regexp.MustCompile(`^[^:\]\s]+\s*(?:#.*)?$`)

// Parse reads an inventory, refusing what ansible-core's INI plugin would
// refuse, with the line number.
func Parse(data []byte) (*File, error) {
	f := &File{}
	group, typ := "ungrouped", "hosts"
	// Groups declared by a [g] or [g:children] header, and the first line
	// that needs each undeclared one (a [g:vars] header, or a child).
	declared := map[string]bool{"all": true, "ungrouped": true}
	pending := map[string]string{}
	var order []string
	need := func(g, why string) {
		if _, ok := pending[g]; !declared[g] && !ok {
			pending[g] = why
			order = append(order, g)
		}
	}
	for n, rest := 1, data; len(rest) > 0; n++ {
		l := &Line{}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.Text, rest = string(rest), nil
		} else {
			l.Text, l.EOL, rest = string(rest[:i]), "\n", rest[i+1:]
			if strings.HasSuffix(l.Text, "\r") {
				l.Text, l.EOL = l.Text[:len(l.Text)-1], "\r\n"
			}
		}
		f.Lines = append(f.Lines, l)
		t := strings.TrimSpace(l.Text)
		switch {
		case t == "":
			l.Kind = Blank
		case t[0] == '#' || t[0] == ';':
			l.Kind = Comment
		case t[0] == '[' && sectionRE.MatchString(t):
			m := sectionRE.FindStringSubmatch(t)
			group, typ = m[1], m[2]
			if typ == "" {
				typ = "hosts"
			}
			if typ != "hosts" && typ != "vars" && typ != "children" {
				return nil, fmt.Errorf("line %d: section [%s:%s] has unknown type %q (hosts, vars or children)", n, m[1], m[2], m[2])
			}
			if typ == "vars" {
				need(group, fmt.Sprintf("line %d: section [%s:vars] is for a group that no [%s] or [%s:children] section declares", n, group, group, group))
			} else {
				declared[group] = true
			}
			l.Kind, l.Group, l.Type = Section, group, typ
		case t[0] == '[' && strings.HasSuffix(t, "]"):
			return nil, fmt.Errorf("line %d: invalid section header %q (no spaces or ':' in a group name)", n, t)
		default:
			l.Group, l.Type = group, typ
			switch typ {
			case "vars":
				l.Kind = Entry
				if !strings.Contains(t, "=") {
					return nil, fmt.Errorf("line %d: expected key=value in [%s:vars], got %q", n, group, t)
				}
				if _, err := splitWords(t); err != nil {
					return nil, fmt.Errorf("line %d: %v", n, err)
				}
				continue
			case "children":
				l.Kind = Entry
				if !childRE.MatchString(t) {
					return nil, fmt.Errorf("line %d: expected a group name in [%s:children], got %q", n, group, t)
				}
				child := strings.Fields(strings.SplitN(t, "#", 2)[0])[0]
				need(child, fmt.Sprintf("line %d: [%s:children] names %s, a group that no [%s] or [%s:children] section declares", n, group, child, child, child))
				continue
			}
			words, err := splitWords(t)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			if len(words) == 0 {
				l.Kind = Comment
				continue
			}
			for _, w := range words[1:] {
				if !strings.Contains(w, "=") {
					return nil, fmt.Errorf("line %d: expected key=value host variables after the host, got %q", n, w)
				}
			}
			host, _, err := splitPort(words[0])
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			if err := checkRanges(host); err != nil {
				return nil, fmt.Errorf("line %d: host %q: %v", n, words[0], err)
			}
			l.Kind, l.Pattern = Host, words[0]
		}
	}
	for _, g := range order {
		if !declared[g] {
			return nil, errors.New(pending[g])
		}
	}
	return f, nil
}

// checkRanges refuses a host pattern with a '[' that ansible-core cannot
// expand as a range (expand_hostname_range): every '[' opens a range
// [begin:end] or [begin:end:step] that is closed, with an end, numbers or
// letters, and zero-padded bounds of equal length.
func checkRanges(p string) error {
	for strings.Contains(p, "[") {
		if strings.Contains(p, "|") {
			return fmt.Errorf("'|' in a host range")
		}
		i, j := strings.Index(p, "["), strings.Index(p, "]")
		if j < 0 {
			return fmt.Errorf("'[' without ']': a range is written like node[1:3]")
		}
		if j < i {
			i, j = j, i
		}
		head, r, tail := p[:i], p[i+1:j], p[j+1:]
		bounds := strings.Split(r, ":")
		if len(bounds) != 2 && len(bounds) != 3 {
			return fmt.Errorf("range [%s]: a range is begin:end or begin:end:step", r)
		}
		begin, end, step := bounds[0], bounds[1], "1"
		if len(bounds) == 3 {
			step = bounds[2]
		}
		if begin == "" {
			begin = "0"
		}
		if end == "" {
			return fmt.Errorf("range [%s] has no end", r)
		}
		if begin[0] == '0' && len(begin) > 1 && len(begin) != len(end) {
			return fmt.Errorf("range [%s]: zero-padded bounds must have the same length", r)
		}
		st, err := strconv.Atoi(step)
		if err != nil || st == 0 {
			return fmt.Errorf("range [%s]: bad step %q", r, step)
		}
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		ib, ie := strings.Index(letters, begin), strings.Index(letters, end)
		if ib >= 0 && ie >= 0 {
			if ib > ie {
				return fmt.Errorf("range [%s]: begin is after end", r)
			}
			p = head + letters[ib:ib+1] + tail
			continue
		}
		b, errB := strconv.Atoi(begin)
		_, errE := strconv.Atoi(end)
		if errB != nil || errE != nil {
			return fmt.Errorf("range [%s]: bounds are numbers or letters", r)
		}
		p = head + strconv.Itoa(b) + tail
	}
	return nil
}

// Bytes is the file's content.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.Lines {
		b.WriteString(l.Text)
		b.WriteString(l.EOL)
	}
	return b.Bytes()
}

// splitWords splits a line as Python's shlex in POSIX mode with comments:
// words separated by spaces, quotes and backslashes escaping, '#' at the
// start of a word beginning a comment.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\'' || c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("no closing quotation")
			}
			cur.WriteString(unescape(s[i+1:j], c))
			inWord, i = true, j
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			inWord, i = true, i+1
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func unescape(s string, quote byte) string {
	if quote == '\'' {
		return s
	}
	return strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(s)
}

// splitPort splits host:port as ansible's parse_address does for the
// forms an inventory uses: name, name:port, IPv4[:port], [IPv6]:port,
// bare IPv6, with ranges like node[1:3] or 10.0.0.[1:9] allowed.
func splitPort(p string) (host string, port int, err error) {
	switch {
	case strings.HasPrefix(p, "[") && strings.Contains(p, "]:"):
		i := strings.LastIndex(p, "]:")
		if _, err := strconv.Atoi(p[i+2:]); err == nil && strings.Contains(p[:i], ":") && !isRange(p[:i+1]) {
			port, _ = strconv.Atoi(p[i+2:])
			return p[1:i], port, nil
		}
	case strings.Count(stripRanges(p), ":") == 1:
		i := strings.LastIndex(p, ":")
		port, err := strconv.Atoi(p[i+1:])
		if err != nil || port < 0 || port > 65535 {
			return "", 0, fmt.Errorf("host %q: %q is not a port", p, p[i+1:])
		}
		return p[:i], port, nil
	}
	return p, 0, nil
}

var rangeRE = regexp.MustCompile(`\[([0-9a-zA-Z]*):([0-9a-zA-Z]*)(?::([0-9]+))?\]`)

func isRange(p string) bool { return rangeRE.MatchString(p) }

func stripRanges(p string) string { return rangeRE.ReplaceAllString(p, "") }

// expand lists the hosts a pattern with ranges stands for (at most limit).
func expand(p string, limit int) ([]string, error) {
	loc := rangeRE.FindStringSubmatchIndex(p)
	if loc == nil {
		return []string{p}, nil
	}
	m := rangeRE.FindStringSubmatch(p)
	prefix, suffix := p[:loc[0]], p[loc[1]:]
	start, end, step := m[1], m[2], 1
	if m[3] != "" {
		step, _ = strconv.Atoi(m[3])
		if step < 1 {
			return nil, fmt.Errorf("range %q: bad step", m[0])
		}
	}
	var items []string
	if a, errA := strconv.Atoi(start); errA == nil || start == "" {
		b, errB := strconv.Atoi(end)
		if errB != nil {
			return nil, fmt.Errorf("range %q: bad end", m[0])
		}
		width := 0
		if strings.HasPrefix(start, "0") && len(start) > 1 {
			width = len(start)
		}
		for i := a; i <= b && len(items) <= limit; i += step {
			items = append(items, fmt.Sprintf("%0*d", width, i))
		}
	} else if len(start) == 1 && len(end) == 1 {
		for c := start[0]; c <= end[0] && len(items) <= limit; c += byte(step) {
			items = append(items, string(c))
		}
	} else {
		return nil, fmt.Errorf("range %q: not a numeric or single-letter range", m[0])
	}
	var out []string
	for _, it := range items {
		rest, err := expand(prefix+it+suffix, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, rest...)
		if len(out) > limit {
			return out[:limit], nil
		}
	}
	return out, nil
}
