package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/etcdops/etcdops/internal/modrun"
)

func run(t *testing.T, args map[string]any) modrun.Result {
	t.Helper()
	return modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
}

const sample = "# kubeasz hosts\n[etcd]\n10.0.0.1 NODE_NAME=etcd1\n\n# 预留组，后续添加etcd节点使用\n[new-etcd]\n10.0.0.4 NODE_NAME=etcd4\n"

func TestModuleWritesSafely(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real-hosts")
	if err := os.WriteFile(real, []byte(sample), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(real, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hosts")
	if err := os.Symlink("real-hosts", link); err != nil {
		t.Fatal(err)
	}
	args := map[string]any{"path": link, "host": "10.0.0.4", "from_group": "new-etcd", "to_group": "etcd", "backup": true,
		"_ansible_check_mode": true, "_ansible_diff": true}

	// Check mode: the diff, nothing written, no backup.
	r := run(t, args)
	if r["failed"] == true || r["changed"] != true {
		t.Fatalf("check mode: %v", r)
	}
	diff, _ := r["diff"].(map[string]any)
	if diff["before"] != sample || !strings.Contains(diff["after"].(string), "10.0.0.1 NODE_NAME=etcd1\n10.0.0.4 NODE_NAME=etcd4\n") {
		t.Fatalf("diff %v", diff)
	}
	if got, _ := os.ReadFile(real); string(got) != sample {
		t.Fatal("check mode changed the file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("check mode left files: %v", entries)
	}

	args["_ansible_check_mode"] = false
	r = run(t, args)
	if r["failed"] == true || r["changed"] != true || fmt.Sprint(r["groups"]) != "[etcd]" {
		t.Fatalf("move: %v", r)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the symlink was replaced by a file")
	}
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("mode %v owner %d:%d, want 0640 65534:65534", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	backup, _ := r["backup_file"].(string)
	if got, err := os.ReadFile(backup); err != nil || string(got) != sample || filepath.Dir(backup) != dir {
		t.Fatalf("backup %s: %v", backup, err)
	}
	if _, ok := r["diff"]; ok {
		// diff is returned by the handler; the runtime keeps it only in diff mode
	} else {
		t.Error("no diff in diff mode")
	}

	// Second run: nothing to do, no new backup.
	r = run(t, args)
	if r["changed"] != false || r["backup_file"] != nil {
		t.Fatalf("second run: %v", r)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("files after two runs: %v", entries)
	}
}

func TestModuleRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("[etcd]\n10.0.0.1\n[new etcd]\n10.0.0.4\n"), 0o644)
	broken := filepath.Join(dir, "broken")
	brokenText := "[etcd]\n10.0.0.1\n[broken\n[new-etcd]\n10.0.0.4\n"
	os.WriteFile(broken, []byte(brokenText), 0o644)
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(sample), 0o644)
	for _, tt := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"path": bad, "host": "10.0.0.4", "from_group": "new-etcd", "to_group": "etcd"}, "is not a valid INI inventory: line 3"},
		{map[string]any{"path": broken, "host": "10.0.0.4", "from_group": "new-etcd", "to_group": "etcd"}, "is not a valid INI inventory: line 3: host \"[broken\""},
		{map[string]any{"path": good, "host": "10.0.0.4"}, "one of the following is required: from_group, to_group"},
		{map[string]any{"path": good, "host": "10.0.0.4 x", "from_group": "etcd"}, "give the host as the inventory writes it"},
		{map[string]any{"path": good, "host": "10.0.0.4", "from_group": "new etcd"}, "is not a group name"},
		{map[string]any{"path": good, "host": "10.0.0.4", "from_group": "etcd", "to_group": "etcd"}, "both"},
		{map[string]any{"path": filepath.Join(dir, "missing"), "host": "h", "from_group": "etcd"}, "no such file"},
		{map[string]any{"path": good, "host": "10.0.0.9", "from_group": "new-etcd", "to_group": "etcd"}, "in neither"},
	} {
		r := run(t, tt.args)
		if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), tt.want) {
			t.Errorf("%v: got %v, want failure with %q", tt.args, r["msg"], tt.want)
		}
	}
	if got, _ := os.ReadFile(good); string(got) != sample {
		t.Fatal("a refused edit changed the file")
	}
	if got, _ := os.ReadFile(broken); string(got) != brokenText {
		t.Fatal("a refused edit changed the broken file")
	}
}

// TestParseAgreesWithAnsible: what Parse refuses (naming the line),
// ansible-core's INI plugin refuses too, and the lookalikes both accept.
func TestParseAgreesWithAnsible(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ansible-inventory for each case")
	}
	ai, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatal("ansible-inventory not found: run `make deps`")
	}
	tests := []struct {
		in   string
		want string // "" accepted
	}{
		{"[etcd]\n10.0.0.1\n[broken\n", "line 3: host \"[broken\""},
		{"[etcd]\nnode[1:3\n", "line 2: host \"node[1:3\""},
		{"[etcd]\nnode[1]\n", "line 2: host \"node[1]\": range [1]"},
		{"[etcd]\nnode[1:]\n", "range [1:] has no end"},
		{"[etcd]\nnode[a:zz]\n", "bounds are numbers or letters"},
		{"[etcd]\nnode[01:100]\n", "zero-padded"},
		{"[etcd]\nnode[1:3:0]\n", "bad step"},
		{"[etcd]\n10.0.0.1\n[etcd:vars]\nNODE_NAME\n", "line 4: expected key=value"},
		{"[k8s:children]\netcd master\n[etcd]\n", "line 2: expected a group name"},
		{"[k8s:children]\netcd\nmaster\n[etcd]\n", "line 3: [k8s:children] names master"},
		{"[etcd]\n10.0.0.1\n[nodes:vars]\na=1\n", "line 3: section [nodes:vars] is for a group"},
		{"[etcd]\nnode[1:3]\nweb[a:c]-x\ndb[01:10:3]\n", ""},
		{"[k8s:children]\netcd # the members\n[etcd]\n10.0.0.1\n[etcd:vars]\na=1\n[all:vars]\nb=2\n", ""},
		{"[nodes:vars]\na=1\n[nodes]\n10.0.0.2\n", ""},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(strings.Fields(tt.in)[len(strings.Fields(tt.in))-1], func(t *testing.T) {
			_, perr := Parse([]byte(tt.in))
			switch {
			case tt.want == "" && perr != nil:
				t.Errorf("Parse(%q) = %v, want it accepted", tt.in, perr)
			case tt.want != "" && (perr == nil || !strings.Contains(perr.Error(), tt.want)):
				t.Errorf("Parse(%q) = %v, want %q", tt.in, perr, tt.want)
			}
			path := filepath.Join(dir, fmt.Sprintf("hosts-%d", i))
			os.WriteFile(path, []byte(tt.in), 0o644)
			cmd := exec.Command(ai, "-i", path, "--list")
			cmd.Env = append(os.Environ(), "ANSIBLE_INVENTORY_ENABLED=ini", "ANSIBLE_INVENTORY_UNPARSED_FAILED=true",
				"ANSIBLE_FORCE_VALID_GROUP_NAMES=ignore")
			cmd.Dir = dir
			out, aerr := cmd.CombinedOutput()
			if (aerr == nil) != (tt.want == "") {
				t.Errorf("ansible-inventory on %q: error %v, want refused=%v\n%s", tt.in, aerr, tt.want != "", out)
			}
		})
	}
}

// TestConcurrentProcesses runs the module binary in many processes at once,
// each moving another host of the same file: no edit may be lost.
func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hosts_group_move")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/etcdops").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	inv := filepath.Join(dir, "hosts")
	var b strings.Builder
	b.WriteString("[etcd]\n10.1.0.1\n\n[new-etcd]\n")
	const n = 16
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "10.2.0.%d NODE_NAME=etcd-%d\n", i, i)
	}
	os.WriteFile(inv, []byte(b.String()), 0o644)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args, _ := json.Marshal(map[string]any{"path": inv, "host": fmt.Sprintf("10.2.0.%d", i), "from_group": "new-etcd", "to_group": "etcd",
				"_ansible_module_name": "hosts_group_move", "_ansible_tmpdir": nil, "_ansible_future_option": 1})
			argsFile := filepath.Join(dir, fmt.Sprintf("args-%d", i))
			os.WriteFile(argsFile, args, 0o600)
			var stdout bytes.Buffer
			cmd := exec.Command(bin, argsFile)
			cmd.Stdout = &stdout
			if err := cmd.Run(); err != nil {
				errs <- fmt.Sprintf("%d: %v %s", i, err, stdout.String())
				return
			}
			var res map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res["changed"] != true {
				errs <- fmt.Sprintf("%d: %v %s", i, err, stdout.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	data, _ := os.ReadFile(inv)
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var etcd []string
	for _, l := range f.Lines {
		if l.Kind == Host {
			if l.Group != "etcd" {
				t.Errorf("%s still in [%s]", l.Pattern, l.Group)
			}
			etcd = append(etcd, l.Pattern)
		}
	}
	if len(etcd) != n+1 {
		t.Fatalf("[etcd] holds %d hosts, want %d:\n%s", len(etcd), n+1, data)
	}
	if entries, _ := os.ReadDir(dir); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.Contains(e.Name(), ".tmp-") }) {
		t.Error("temporary files left behind")
	}
}

// TestReferenceInventories edits every kubeasz hosts file of testdata: it
// removes the first [etcd] host from [etcd] and moves the last one to the
// nodes group. The text must differ only by those lines, and
// ansible-inventory must see exactly those membership changes.
func TestReferenceInventories(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ansible-inventory 46 times")
	}
	ai, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatal("ansible-inventory not found: run `make deps`")
	}
	files, _ := filepath.Glob("testdata/hosts*")
	if len(files) < 20 {
		t.Fatalf("only %d reference inventories", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			before, _ := os.ReadFile(path)
			f, err := Parse(before)
			if err != nil {
				t.Fatalf("a kubeasz hosts file does not parse: %v", err)
			}
			var etcd []string
			nodes := ""
			for _, l := range f.Lines {
				if l.Kind == Host && l.Group == "etcd" {
					etcd = append(etcd, l.Pattern)
				}
				if l.Kind == Section && (l.Group == "kube-node" || l.Group == "kube_node") {
					nodes = l.Group
				}
			}
			if len(etcd) < 1 || nodes == "" {
				t.Fatalf("no [etcd] hosts or nodes group")
			}
			first, last := etcd[0], etcd[len(etcd)-1]
			inserted := !slices.Contains(f.Groups(last), nodes)
			if _, err := f.Apply(Move{Host: first, From: "etcd"}); err != nil {
				t.Fatal(err)
			}
			moved := last != first
			if moved {
				if _, err := f.Apply(Move{Host: last, From: "etcd", To: nodes}); err != nil {
					t.Fatal(err)
				}
			}
			after := f.Bytes()
			checkOnlyLinesChanged(t, before, after, first, last, moved && inserted)

			dir := t.TempDir()
			out := filepath.Join(dir, "hosts")
			os.WriteFile(out, after, 0o644)
			a, b := inventoryJSON(t, ai, path), inventoryJSON(t, ai, out)
			for group, hosts := range a.groups {
				want := slices.Clone(hosts)
				switch group {
				case "etcd":
					want = slices.DeleteFunc(want, func(h string) bool { return h == first || (moved && h == last) })
				case nodes:
					if moved && !slices.Contains(want, last) {
						want = append(want, last)
					}
				}
				sort.Strings(want)
				if got := b.groups[group]; !slices.Equal(got, want) {
					t.Errorf("[%s]: %v, want %v", group, got, want)
				}
			}
			for host, vars := range a.hostvars {
				if host == first || host == last {
					continue
				}
				if fmt.Sprint(b.hostvars[host]) != fmt.Sprint(vars) {
					t.Errorf("vars of %s changed: %v -> %v", host, vars, b.hostvars[host])
				}
			}
		})
	}
}

// checkOnlyLinesChanged: after is before without the [etcd] lines of first
// and last, plus (when inserted) last's line somewhere.
func checkOnlyLinesChanged(t *testing.T, before, after []byte, first, last string, inserted bool) {
	t.Helper()
	bl := strings.SplitAfter(string(before), "\n")
	al := strings.SplitAfter(string(after), "\n")
	section := ""
	var kept []string
	var lastLine string
	for _, l := range bl {
		tr := strings.TrimSpace(l)
		if strings.HasPrefix(tr, "[") {
			section = strings.Fields(tr)[0]
		}
		if section == "[etcd]" && tr != "" && !strings.HasPrefix(tr, "#") {
			h := strings.Fields(tr)[0]
			if h == first {
				continue
			}
			if h == last {
				lastLine = l
				continue
			}
		}
		kept = append(kept, l)
	}
	var rest []string
	removed := false
	for _, l := range al {
		if inserted && !removed && strings.TrimSpace(l) == strings.TrimSpace(lastLine) {
			removed = true
			continue
		}
		rest = append(rest, l)
	}
	if strings.Join(rest, "") != strings.Join(kept, "") {
		t.Errorf("lines other than the moved host's changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

type inventoryView struct {
	groups   map[string][]string
	hostvars map[string]map[string]any
}

func inventoryJSON(t *testing.T, ai, path string) inventoryView {
	t.Helper()
	abs, _ := filepath.Abs(path)
	cmd := exec.Command(ai, "-i", abs, "--list")
	cmd.Env = append(os.Environ(), "ANSIBLE_INVENTORY_ENABLED=ini", "ANSIBLE_FORCE_VALID_GROUP_NAMES=ignore")
	cmd.Dir = os.TempDir() // no ansible.cfg
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory %s: %v", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	v := inventoryView{groups: map[string][]string{}}
	for name, msg := range raw {
		if name == "_meta" {
			var meta struct {
				Hostvars map[string]map[string]any `json:"hostvars"`
			}
			json.Unmarshal(msg, &meta)
			v.hostvars = meta.Hostvars
			continue
		}
		var g struct {
			Hosts []string `json:"hosts"`
		}
		json.Unmarshal(msg, &g)
		sort.Strings(g.Hosts)
		v.groups[name] = g.Hosts
	}
	return v
}
