package inventory

import (
	"fmt"
	"slices"
	"strings"
)

// Move is one edit: move Host from From to To; To empty removes it from
// From; From empty adds it to To (its line taken from where it already is,
// or a bare line), leaving its other groups alone.
type Move struct {
	Host, From, To string
	CreateGroup    bool
}

// Outcome is what an edit did (or would do).
type Outcome struct {
	Changed bool
	Msg     string
	Groups  []string // the host's groups after the edit, in file order
}

// matches reports whether a host line's pattern is the host: as written,
// or without its :port.
func matches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	h, _, err := splitPort(pattern)
	return err == nil && h == host
}

// inRange reports whether a range pattern stands for the host.
func inRange(pattern, host string) bool {
	if !isRange(pattern) {
		return false
	}
	h, _, err := splitPort(pattern)
	if err != nil {
		return false
	}
	hosts, err := expand(h, 100000)
	return err == nil && slices.Contains(hosts, host)
}

// hostLines returns the indexes of the lines that are host in group.
func (f *File) hostLines(group, host string) (idx []int, err error) {
	for i, l := range f.Lines {
		if l.Kind != Host || l.Group != group {
			continue
		}
		if matches(l.Pattern, host) {
			idx = append(idx, i)
		} else if inRange(l.Pattern, host) {
			return nil, fmt.Errorf("line %d: %s is part of the range %s in [%s]; an edit would have to split the range: write the hosts out one per line first",
				i+1, host, l.Pattern, group)
		}
	}
	return idx, nil
}

// Groups lists the groups whose hosts sections hold host, in file order.
func (f *File) Groups(host string) []string {
	var out []string
	for _, l := range f.Lines {
		if l.Kind == Host && (matches(l.Pattern, host) || inRange(l.Pattern, host)) && !slices.Contains(out, l.Group) {
			out = append(out, l.Group)
		}
	}
	return out
}

// sectionEnd returns where a new host line of group goes: after the last
// host line of the group's last hosts section, or after its header; -1
// when the file has no [group] section.
func (f *File) sectionEnd(group string) int {
	at := -1
	in := false
	for i, l := range f.Lines {
		switch {
		case l.Kind == Section:
			in = l.Group == group && l.Type == "hosts"
			if in {
				at = i + 1
			}
		case in && l.Kind == Host:
			at = i + 1
		}
	}
	return at
}

// eol is the file's usual line terminator.
func (f *File) eol() string {
	crlf, lf := 0, 0
	for _, l := range f.Lines {
		switch l.EOL {
		case "\r\n":
			crlf++
		case "\n":
			lf++
		}
	}
	if crlf > lf {
		return "\r\n"
	}
	return "\n"
}

// Apply makes the edit on f and reports what it did.
func (f *File) Apply(m Move) (Outcome, error) {
	var o Outcome
	endsWithEOL := len(f.Lines) > 0 && f.Lines[len(f.Lines)-1].EOL != ""
	var inFrom, inTo []int
	var err error
	if m.From != "" {
		if inFrom, err = f.hostLines(m.From, m.Host); err != nil {
			return o, err
		}
	}
	if m.To != "" {
		if inTo, err = f.hostLines(m.To, m.Host); err != nil {
			return o, err
		}
	}
	var remove []int
	var insert *Line
	switch {
	case m.To == "": // remove from From
		if len(inFrom) == 0 {
			o.Msg = fmt.Sprintf("%s is not in [%s]: nothing to remove", m.Host, m.From)
			break
		}
		remove = inFrom
		o.Msg = fmt.Sprintf("removed %s from [%s]", m.Host, m.From)
	case len(inTo) > 0 && len(inFrom) == 0:
		o.Msg = fmt.Sprintf("%s is already in [%s]", m.Host, m.To)
		if m.From != "" {
			o.Msg += fmt.Sprintf(" and not in [%s]", m.From)
		}
	case len(inTo) > 0:
		remove = inFrom
		o.Msg = fmt.Sprintf("%s was in both [%s] and [%s]: removed it from [%s]", m.Host, m.From, m.To, m.From)
	default: // not in To yet
		src := ""
		if len(inFrom) > 0 {
			src, remove = f.Lines[inFrom[0]].Text, inFrom
		} else if m.From == "" {
			for _, l := range f.Lines {
				if l.Kind == Host && matches(l.Pattern, m.Host) {
					src = l.Text
					break
				}
			}
			if src == "" {
				src = m.Host
			}
		} else {
			in := f.Groups(m.Host)
			where := "in no group"
			if len(in) > 0 {
				where = "only in [" + strings.Join(in, "], [") + "]"
			}
			return o, fmt.Errorf("%s is in neither [%s] nor [%s]: it is %s", m.Host, m.From, m.To, where)
		}
		insert = &Line{Text: strings.TrimLeft(src, " \t"), Kind: Host, Group: m.To, Type: "hosts"}
		if m.From != "" {
			o.Msg = fmt.Sprintf("moved %s from [%s] to [%s]", m.Host, m.From, m.To)
		} else {
			o.Msg = fmt.Sprintf("added %s to [%s]", m.Host, m.To)
		}
	}
	if len(remove) == 0 && insert == nil {
		o.Groups = f.Groups(m.Host)
		return o, nil
	}

	eol := f.eol()
	lines := f.Lines
	if insert != nil {
		at := f.sectionEnd(m.To)
		if at < 0 {
			if !m.CreateGroup {
				return o, fmt.Errorf("the inventory has no [%s] group (create_group=true adds it at the end)", m.To)
			}
			if n := len(lines); n > 0 && lines[n-1].EOL == "" {
				lines[n-1].EOL = eol
			}
			lines = append(lines, &Line{EOL: eol, Kind: Blank},
				&Line{Text: "[" + m.To + "]", EOL: eol, Kind: Section, Group: m.To, Type: "hosts"})
			at = len(lines)
			o.Msg += " (new group)"
		}
		insert.Pattern = m.Host
		insert.EOL = eol
		if at > 0 && lines[at-1].EOL == "" {
			lines[at-1].EOL = eol
		}
		lines = slices.Insert(slices.Clone(lines), at, insert)
		for i := range remove {
			if remove[i] >= at {
				remove[i]++
			}
		}
	}
	var out []*Line
	for i, l := range lines {
		if !slices.Contains(remove, i) {
			out = append(out, l)
		}
	}
	// Keep the file's ending: with or without a final newline.
	if n := len(out); n > 0 {
		if !endsWithEOL {
			out[n-1].EOL = ""
		} else if out[n-1].EOL == "" {
			out[n-1].EOL = eol
		}
	}
	f.Lines = out
	o.Changed = true
	o.Groups = f.Groups(m.Host)
	return o, nil
}
