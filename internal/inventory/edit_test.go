package inventory

import (
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		move    Move
		want    string // expected file; "" with wantErr
		changed bool
		groups  string
		wantErr string
		msg     string
	}{
		{
			name:    "move keeps vars and comment, goes after the last host of the target",
			in:      "# etcd 集群\n[etcd]\n10.0.0.1 NODE_NAME=etcd1\n10.0.0.2 NODE_NAME=etcd2\n\n# 预留组\n[new-etcd]\n10.0.0.6 NODE_NAME=etcd4  # new\n\n[kube_master]\n10.0.0.1\n",
			move:    Move{Host: "10.0.0.6", From: "new-etcd", To: "etcd"},
			want:    "# etcd 集群\n[etcd]\n10.0.0.1 NODE_NAME=etcd1\n10.0.0.2 NODE_NAME=etcd2\n10.0.0.6 NODE_NAME=etcd4  # new\n\n# 预留组\n[new-etcd]\n\n[kube_master]\n10.0.0.1\n",
			changed: true, groups: "etcd", msg: "moved 10.0.0.6 from [new-etcd] to [etcd]",
		},
		{
			name: "remove one host; whole-token match leaves 10.0.0.10 and etcd10 alone",
			in:   "[etcd]\n10.0.0.10 NODE_NAME=etcd10\n10.0.0.1 NODE_NAME=etcd1\n10.0.0.100\n",
			move: Move{Host: "10.0.0.1", From: "etcd"},
			want: "[etcd]\n10.0.0.10 NODE_NAME=etcd10\n10.0.0.100\n", changed: true, groups: "",
		},
		{
			name: "remove by name, not a prefix",
			in:   "[etcd]\netcd10 x=1\netcd1 x=2\n",
			move: Move{Host: "etcd1", From: "etcd"},
			want: "[etcd]\netcd10 x=1\n", changed: true,
		},
		{
			name: "commented-out host is not a host",
			in:   "[etcd]\n#10.0.0.8 NODE_NAME=etcd8\n10.0.0.1\n",
			move: Move{Host: "10.0.0.8", From: "etcd"},
			want: "[etcd]\n#10.0.0.8 NODE_NAME=etcd8\n10.0.0.1\n", changed: false, msg: "10.0.0.8 is not in [etcd]: nothing to remove",
		},
		{
			name: "vars and children sections are not hosts",
			in:   "[etcd]\n10.0.0.1\n[etcd:vars]\n10.0.0.2=x\n[all:children]\netcd\n[new-etcd]\n10.0.0.2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.1\n10.0.0.2\n[etcd:vars]\n10.0.0.2=x\n[all:children]\netcd\n[new-etcd]\n", changed: true,
		},
		{
			name: "section header with a comment, and a second [etcd] section",
			in:   "[etcd]   # members\n10.0.0.1\n[x]\n1.1.1.1\n[etcd]\n10.0.0.2\n# end\n\n[new-etcd]\n10.0.0.3\n",
			move: Move{Host: "10.0.0.3", From: "new-etcd", To: "etcd"},
			want: "[etcd]   # members\n10.0.0.1\n[x]\n1.1.1.1\n[etcd]\n10.0.0.2\n10.0.0.3\n# end\n\n[new-etcd]\n", changed: true,
		},
		{
			name: "CRLF file stays CRLF",
			in:   "[etcd]\r\n10.0.0.1\r\n\r\n[new-etcd]\r\n10.0.0.2 NODE_NAME=etcd2\r\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\r\n10.0.0.1\r\n10.0.0.2 NODE_NAME=etcd2\r\n\r\n[new-etcd]\r\n", changed: true,
		},
		{
			name: "no final newline, moved line was last",
			in:   "[etcd]\n10.0.0.1\n[new-etcd]\n10.0.0.2",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.1\n10.0.0.2\n[new-etcd]", changed: true,
		},
		{
			name: "no final newline, insert at the end",
			in:   "[new-etcd]\n10.0.0.2\n[etcd]\n10.0.0.1",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[new-etcd]\n[etcd]\n10.0.0.1\n10.0.0.2", changed: true,
		},
		{
			name: "into an empty group: right after its header",
			in:   "[etcd]\n\n# spare\n[new-etcd]\n10.0.0.2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.2\n\n# spare\n[new-etcd]\n", changed: true,
		},
		{
			name: "indented host line loses only its indentation when moved",
			in:   "[etcd]\n  10.0.0.1\n[new-etcd]\n  10.0.0.2 a=1\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n  10.0.0.1\n10.0.0.2 a=1\n[new-etcd]\n", changed: true,
		},
		{
			name: "already moved",
			in:   "[etcd]\n10.0.0.1\n10.0.0.2\n[new-etcd]\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.1\n10.0.0.2\n[new-etcd]\n", changed: false, groups: "etcd",
			msg: "10.0.0.2 is already in [etcd] and not in [new-etcd]",
		},
		{
			name: "in both: the duplicate in from_group goes",
			in:   "[etcd]\n10.0.0.2 NODE_NAME=etcd2\n[new-etcd]\n10.0.0.2 NODE_NAME=etcd2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.2 NODE_NAME=etcd2\n[new-etcd]\n", changed: true, groups: "etcd",
		},
		{
			name: "twice in from_group: both go, one arrives",
			in:   "[etcd]\n[new-etcd]\n10.0.0.2 a=1\n10.0.0.2 b=2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.2 a=1\n[new-etcd]\n", changed: true,
		},
		{
			name:    "in neither group: failure names where it is",
			in:      "[etcd]\n10.0.0.1\n[kube_node]\n10.0.0.9\n[new-etcd]\n",
			move:    Move{Host: "10.0.0.9", From: "new-etcd", To: "etcd"},
			wantErr: "10.0.0.9 is in neither [new-etcd] nor [etcd]: it is only in [kube_node]",
		},
		{
			name:    "in no group at all",
			in:      "[etcd]\n10.0.0.1\n",
			move:    Move{Host: "10.0.0.9", From: "new-etcd", To: "etcd"},
			wantErr: "it is in no group",
		},
		{
			name:    "target group missing",
			in:      "[new-etcd]\n10.0.0.2\n",
			move:    Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			wantErr: "the inventory has no [etcd] group",
		},
		{
			name: "target group created",
			in:   "[new-etcd]\n10.0.0.2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd", CreateGroup: true},
			want: "[new-etcd]\n\n[etcd]\n10.0.0.2\n", changed: true, groups: "etcd",
		},
		{
			name: "host:port matched by host and moved with its port",
			in:   "[etcd]\n[new-etcd]\n10.0.0.2:2222 NODE_NAME=etcd2\n",
			move: Move{Host: "10.0.0.2", From: "new-etcd", To: "etcd"},
			want: "[etcd]\n10.0.0.2:2222 NODE_NAME=etcd2\n[new-etcd]\n", changed: true,
		},
		{
			name:    "range holding the host is refused",
			in:      "[etcd]\nnode[1:3]\n",
			move:    Move{Host: "node2", From: "etcd"},
			wantErr: "node2 is part of the range node[1:3] in [etcd]",
		},
		{
			name: "range not holding the host is left alone",
			in:   "[etcd]\nnode[1:3]\nnode9\n",
			move: Move{Host: "node9", From: "etcd"},
			want: "[etcd]\nnode[1:3]\n", changed: true,
		},
		{
			name: "add without from_group copies the host's line",
			in:   "[kube_node]\n10.0.0.5 NODE_NAME=n5\n[etcd]\n10.0.0.1\n",
			move: Move{Host: "10.0.0.5", To: "etcd"},
			want: "[kube_node]\n10.0.0.5 NODE_NAME=n5\n[etcd]\n10.0.0.1\n10.0.0.5 NODE_NAME=n5\n", changed: true, groups: "kube_node,etcd",
		},
		{
			name: "ungrouped host before any section",
			in:   "10.0.0.7\n[etcd]\n10.0.0.1\n",
			move: Move{Host: "10.0.0.7", From: "ungrouped", To: "etcd"},
			want: "[etcd]\n10.0.0.1\n10.0.0.7\n", changed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := string(f.Bytes()); got != tt.in {
				t.Fatalf("Parse then Bytes changed the file:\n%q\n%q", tt.in, got)
			}
			out, err := f.Apply(tt.move)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(f.Bytes()); got != tt.want {
				t.Errorf("file:\n%q\nwant:\n%q", got, tt.want)
			}
			if out.Changed != tt.changed {
				t.Errorf("changed %v, want %v", out.Changed, tt.changed)
			}
			if tt.groups != "" || tt.name == "remove one host; whole-token match leaves 10.0.0.10 and etcd10 alone" {
				if got := strings.Join(out.Groups, ","); got != tt.groups {
					t.Errorf("groups %q, want %q", got, tt.groups)
				}
			}
			if tt.msg != "" && out.Msg != tt.msg {
				t.Errorf("msg %q, want %q", out.Msg, tt.msg)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"[etcd]\n10.0.0.1\n[bad group]\n", "line 3: invalid section header"},
		{"[etcd:hosts2]\n", "line 1: section [etcd:hosts2] has unknown type"},
		{"[etcd]\n10.0.0.1 NODE_NAME\n", "line 2: expected key=value host variables"},
		{"[etcd]\n10.0.0.1 a='x\n", "line 2: no closing quotation"},
		{"[etcd]\nhost:port\n", "line 2: host \"host:port\": \"port\" is not a port"},
	} {
		if _, err := Parse([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string]string{
		`10.0.0.1 NODE_NAME=etcd1 # c`:        "10.0.0.1|NODE_NAME=etcd1",
		`h a="x y" b='z w'`:                   "h|a=x y|b=z w",
		`h LB_EP1="1.1.1.1:6443"	# api`:       "h|LB_EP1=1.1.1.1:6443",
		`h a=b#notcomment`:                    "h|a=b#notcomment",
		`h a="q\"uote"`:                       `h|a=q"uote`,
		"192.168.1.1 NODE_IP=\"192.168.1.1\"": "192.168.1.1|NODE_IP=192.168.1.1",
	} {
		got, err := splitWords(in)
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("splitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestExpand(t *testing.T) {
	for in, want := range map[string]string{
		"node[1:3]":         "node1,node2,node3",
		"node[01:03]":       "node01,node02,node03",
		"10.0.0.[1:9:4]":    "10.0.0.1,10.0.0.5,10.0.0.9",
		"db-[a:c]":          "db-a,db-b,db-c",
		"r[1:2]-[a:b]":      "r1-a,r1-b,r2-a,r2-b",
		"plain.example.com": "plain.example.com",
	} {
		got, err := expand(in, 1000)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("expand(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}
