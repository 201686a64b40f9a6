// Package plugin tests the etcdops action plugin (plugins/etcdops_action.py)
// through ansible-playbook on the local connection: results equal to the
// plain binary modules', one upload per build, cache entries that are
// replaced instead of run when they were tampered with, architecture
// selection, check mode, no_log and async. It needs `make build` (the
// Makefile's test-go target builds first) and runs each case with each
// ansible-core tested: Debian's 2.14 (/usr/bin), 2.19 (.venv-2.19) and the
// newest (.venv).
package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

var root = func() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// ansibles returns the ansible-playbook executables every case runs with:
// the tested range of ansible-core. Each must be there; a missing one fails
// the test rather than narrowing it.
func ansibles(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	for name, path := range map[string]string{
		"2.14":   "/usr/bin/ansible-playbook", // Debian bookworm's, `make deps`
		"2.19":   filepath.Join(root, ".venv-2.19", "bin", "ansible-playbook"),
		"newest": filepath.Join(root, ".venv", "bin", "ansible-playbook"),
	} {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("ansible-core %s: %v; run `make deps venv`", name, err)
		}
		found[name] = path
	}
	return found
}

func requireBuild(t *testing.T) {
	t.Helper()
	for _, arch := range []string{"amd64", "arm64"} {
		if _, err := os.Stat(filepath.Join(root, "build", "linux_"+arch, "etcdops")); err != nil {
			t.Fatalf("no build for linux/%s: run `make build` first (%v)", arch, err)
		}
	}
}

// run is one ansible-playbook run of tasks on localhost.
type run struct {
	playbook string
	plain    bool     // without the action plugins
	json     bool     // return the results as JSON (else the -vvv output)
	check    bool     // --check --diff
	env      []string // extra environment
	cacheDir string
}

// play runs the tasks and returns stdout (JSON or text).
func play(t *testing.T, r run, tasks []map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	resultFile := filepath.Join(dir, "results.json")
	if r.json {
		// Every result, written by a task that runs also in check mode
		// (the json callback is not part of ansible-core).
		var regs []map[string]any
		for i, task := range tasks {
			task = maps.Clone(task)
			task["register"] = fmt.Sprintf("result%d", i)
			regs = append(regs, task)
		}
		list := make([]string, len(tasks))
		for i := range tasks {
			list[i] = fmt.Sprintf("result%d", i)
		}
		regs = append(regs, map[string]any{
			"name":       "Write the results",
			"check_mode": false,
			"copy":       map[string]any{"content": "{{ [" + strings.Join(list, ", ") + "] | to_json }}", "dest": resultFile, "mode": "0600"},
		})
		tasks = regs
	}
	inv := filepath.Join(dir, "inventory")
	if err := os.WriteFile(inv, []byte("localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pb, err := yaml.Marshal([]map[string]any{{
		"name": "plugin test", "hosts": "localhost", "gather_facts": false,
		"vars":  map[string]any{"etcdops_cache_dir": r.cacheDir},
		"tasks": tasks,
	}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "play.yml")
	if err := os.WriteFile(path, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-i", inv, path}
	if r.check {
		args = append(args, "--check", "--diff")
	}
	actions := filepath.Join(root, "plugins", "action")
	if r.plain {
		actions = filepath.Join(dir, "no-action-plugins")
	}
	env := append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(dir, "none.cfg"),
		"ANSIBLE_LIBRARY="+filepath.Join(root, "library"),
		"ANSIBLE_ACTION_PLUGINS="+actions,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "local-tmp"),
		"ANSIBLE_NOCOLOR=1",
	)
	if !r.json {
		args = append(args, "-vvv")
	}
	cmd := exec.Command(r.playbook, args...)
	cmd.Env = append(env, r.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // a failed task exits non-zero; callers inspect the results
	if r.json {
		data, err := os.ReadFile(resultFile)
		if err != nil {
			t.Fatalf("no results (%v); output:\n%s\n%s", err, stdout.String(), stderr.String())
		}
		return string(data)
	}
	if stdout.Len() == 0 {
		t.Fatalf("ansible-playbook printed nothing; stderr:\n%s", stderr.String())
	}
	return stdout.String()
}

// results parses the task results play wrote.
func results(t *testing.T, out string) []map[string]any {
	t.Helper()
	var res []map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("results: %v\n%s", err, out)
	}
	return res
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// moduleCase gives a task for one module and what the task must not change.
type moduleCase struct {
	args  func(t *testing.T, dir string) map[string]any
	check bool
}

func TestPluginAndPlainResultsAreIdentical(t *testing.T) {
	requireBuild(t)
	cluster := etcdtest.NewCluster(t, 1)
	cases := map[string]moduleCase{
		"etcd_cert": {check: true, args: func(t *testing.T, dir string) map[string]any {
			return map[string]any{"path": filepath.Join(dir, "pki"), "name": "etcd1", "usage": "member", "ip_addresses": []string{"10.0.0.1"}}
		}},
		"etcd_member": {args: func(t *testing.T, dir string) map[string]any {
			o := cluster.Options()
			return map[string]any{"state": "info", "endpoints": o.Endpoints, "ca_cert": o.CACert, "client_cert": o.ClientCert, "client_key": o.ClientKey}
		}},
		"hosts_group_move": {check: true, args: func(t *testing.T, dir string) map[string]any {
			inv := filepath.Join(dir, "hosts")
			if err := os.WriteFile(inv, []byte("[etcd]\n10.0.0.1 NODE_NAME=etcd1\n\n[new-etcd]\n10.0.0.4 NODE_NAME=etcd4\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return map[string]any{"path": inv, "host": "10.0.0.4", "from_group": "new-etcd", "to_group": "etcd"}
		}},
		// This machine runs no etcd unit: both ways must say so alike.
		"etcd_facts": {check: true, args: func(t *testing.T, dir string) map[string]any {
			return map[string]any{"connect": false}
		}},
		// A plan from two survivors without a quorum: pure, no etcd needed.
		"etcd_recovery": {check: true, args: func(t *testing.T, dir string) map[string]any {
			s := func(host string, applied int) map[string]any {
				return map[string]any{"host": host, "name": "etcd-" + host, "running": true, "source": "status", "member_id": host,
					"cluster_id": "c1", "applied_index": applied, "raft_index": applied, "revision": applied,
					"members": []map[string]any{{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}, {"id": "e"}}}
			}
			return map[string]any{"state": "planned", "survivors": []map[string]any{s("a", 10), s("b", 12)}, "unreachable": []string{"c", "d", "e"}}
		}},
		"etcd_maintenance": {args: func(t *testing.T, dir string) map[string]any {
			o := cluster.Options()
			return map[string]any{"state": "status", "endpoints": o.Endpoints, "ca_cert": o.CACert, "client_cert": o.ClientCert, "client_key": o.ClientKey}
		}},
		"etcd_service": {check: true, args: func(t *testing.T, dir string) map[string]any {
			exec := []string{"/opt/kube/bin/etcd", "--name=etcd1", "--initial-advertise-peer-urls=https://10.0.0.1:2380",
				"--listen-client-urls=https://10.0.0.1:2379,http://127.0.0.1:2379", "--data-dir=" + filepath.Join(dir, "data")}
			like := map[string]any{"found": true, "layout": "flags", "name": "etcd1", "binary": exec[0],
				"data_dir": filepath.Join(dir, "data"), "initial_advertise_peer_urls": []string{"https://10.0.0.1:2380"},
				"systemd": map[string]any{"unit": "etcd.service", "fragment_path": filepath.Join(dir, "etcd.service"),
					"exec_start": exec, "text": "[Service]\nType=notify\nExecStart=" + strings.Join(exec, " ") + "\n"}}
			return map[string]any{"like": like, "name": "etcd2", "address": "10.0.0.2",
				"initial_cluster": "etcd1=https://10.0.0.1:2380,etcd2=https://10.0.0.2:2380"}
		}},
		// The default configuration is absent here: both ways say so alike.
		"etcd_backup": {check: true, args: func(t *testing.T, dir string) map[string]any {
			return map[string]any{"state": "status", "max_age": "12h"}
		}},
		"etcd_snapshot": {args: func(t *testing.T, dir string) map[string]any {
			o := cluster.Options()
			return map[string]any{"path": filepath.Join(dir, "etcd.db"), "endpoints": o.Endpoints, "ca_cert": o.CACert, "client_cert": o.ClientCert, "client_key": o.ClientKey, "_check": true}
		}},
	}
	modules, err := os.ReadDir(filepath.Join(root, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range modules {
		module := d.Name()
		c, ok := cases[module]
		if !ok {
			t.Errorf("%s: no case in this test; every module must be checked through the plugin", module)
			continue
		}
		for version, playbook := range ansibles(t) {
			t.Run(module+"/"+version, func(t *testing.T) {
				dir := t.TempDir()
				args := c.args(t, dir)
				check := c.check
				if args["_check"] == true {
					delete(args, "_check")
					check = true
				}
				task := []map[string]any{{"name": "Run " + module, module: args}}
				before := snapshotTree(t, dir)
				viaPlugin := results(t, play(t, run{playbook: playbook, json: true, check: check, cacheDir: filepath.Join(dir, "cache")}, task))
				plain := results(t, play(t, run{playbook: playbook, json: true, check: check, plain: true, cacheDir: filepath.Join(dir, "cache")}, task))
				if len(viaPlugin) != 1 || len(plain) != 1 {
					t.Fatalf("want one result each, got %d and %d", len(viaPlugin), len(plain))
				}
				a, b := normalise(viaPlugin[0]), normalise(plain[0])
				if a["failed"] == true {
					t.Fatalf("task failed through the plugin: %v", a["msg"])
				}
				if !reflect.DeepEqual(a, b) {
					t.Errorf("results differ\nplugin: %v\nplain:  %v", a, b)
				}
				if _, err := os.Stat(filepath.Join(dir, "cache")); err != nil {
					t.Errorf("the plugin did not use its cache: %v", err)
				}
				if check {
					delete(before, "cache")
					after := snapshotTree(t, dir)
					delete(after, "cache")
					if !reflect.DeepEqual(before, after) {
						t.Errorf("check mode changed files:\nbefore %v\nafter  %v", before, after)
					}
				}
			})
		}
	}
}

// timestamp is a time that an issued certificate takes from the clock.
var timestamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// normalise drops what legitimately differs between two runs.
func normalise(r map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range r {
		switch k {
		case "duration_seconds", "path", "not_before", "not_after", "serial":
			continue
		}
		out[k] = v
	}
	if m, ok := out["members"].([]any); ok {
		// health and raft progress are measured again on each run;
		// membership is what must match
		for _, x := range m {
			if mm, ok := x.(map[string]any); ok {
				for _, k := range []string{"healthy", "raft_index", "raft_applied_index", "problem"} {
					delete(mm, k)
				}
			}
		}
	}
	var times func(v any) any
	times = func(v any) any {
		switch x := v.(type) {
		case string:
			return timestamp.ReplaceAllString(x, "<time>")
		case []any:
			for i := range x {
				x[i] = times(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = times(x[k])
			}
		}
		return v
	}
	return times(out).(map[string]any)
}

// snapshotTree maps each file under dir (first level names) to its content
// hash, to see whether a run changed anything.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		top := strings.SplitN(rel, string(filepath.Separator), 2)[0]
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		out[top] += rel + ":" + hex.EncodeToString(sum[:4]) + " "
		return nil
	})
	return out
}

var (
	uploadRE = regexp.MustCompile(`etcdops: uploading (linux_\w+) build`)
	cachedRE = regexp.MustCompile(`etcdops: cached build used`)
)

func certTask(dir, name string) map[string]any {
	return map[string]any{"name": "Issue " + name, "etcd_cert": map[string]any{
		"path": filepath.Join(dir, "pki"), "name": name, "usage": "client"}}
}

func TestCacheEntryIsUploadedOnceAndReplacedWhenTampered(t *testing.T) {
	requireBuild(t)
	amd64 := fileHash(t, filepath.Join(root, "build", "linux_amd64", "etcdops"))
	for version, playbook := range ansibles(t) {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			cache := filepath.Join(dir, "cache")
			entry := filepath.Join(cache, amd64, "etcdops")
			r := run{playbook: playbook, cacheDir: cache}

			out := play(t, r, []map[string]any{certTask(dir, "a"), certTask(dir, "b"), certTask(dir, "c")})
			if n, m := len(uploadRE.FindAllString(out, -1)), len(cachedRE.FindAllString(out, -1)); n != 1 || m != 2 {
				t.Fatalf("three tasks: %d uploads and %d cache hits, want 1 and 2\n%s", n, m, out)
			}
			for _, name := range []string{"a", "b", "c"} {
				if _, err := os.Stat(filepath.Join(dir, "pki", name+".pem")); err != nil {
					t.Errorf("task for %s did not run: %v", name, err)
				}
			}
			st, err := os.Stat(entry)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o700 {
				t.Errorf("cached binary mode %v, want 0700", st.Mode().Perm())
			}

			// A flipped byte: the stamp no longer matches, so the entry is
			// replaced by a fresh upload, never executed.
			f, err := os.OpenFile(entry, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0xff}, 4096); err != nil {
				t.Fatal(err)
			}
			f.Close()
			out = play(t, r, []map[string]any{certTask(dir, "d")})
			if n := len(uploadRE.FindAllString(out, -1)); n != 1 {
				t.Fatalf("after corruption: %d uploads, want 1\n%s", n, out)
			}
			if got := fileHash(t, entry); got != amd64 {
				t.Errorf("corrupted entry not replaced: sha256 %s", got)
			}

			// An entry owned by another user is replaced too.
			if err := os.Chown(entry, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			out = play(t, r, []map[string]any{certTask(dir, "e")})
			if n := len(uploadRE.FindAllString(out, -1)); n != 1 {
				t.Fatalf("after chown: %d uploads, want 1\n%s", n, out)
			}
			if st, err := os.Stat(entry); err != nil || st.Sys() == nil {
				t.Fatal(err)
			}

			// A cache directory another user owns is refused, not used.
			if err := os.Chown(cache, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			out = play(t, r, []map[string]any{certTask(dir, "f")})
			if !strings.Contains(out, "is not owned by uid 0 with mode 0700") {
				t.Errorf("foreign cache directory was not refused:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "pki", "f.pem")); err == nil {
				t.Error("the module ran from a foreign-owned cache directory")
			}

			// Old builds are pruned: plant five stale entries.
			if err := os.Chown(cache, 0, 0); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if err := os.MkdirAll(filepath.Join(cache, strings.Repeat(string(rune('0'+i)), 64)), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.RemoveAll(filepath.Join(cache, amd64)); err != nil {
				t.Fatal(err)
			}
			play(t, r, []map[string]any{certTask(dir, "g")})
			entries, _ := os.ReadDir(cache)
			if len(entries) != 3 {
				t.Errorf("cache holds %d entries after pruning, want 3 (the current build and two others)", len(entries))
			}
		})
	}
}

func TestArchitectureSelection(t *testing.T) {
	requireBuild(t)
	arm64 := fileHash(t, filepath.Join(root, "build", "linux_arm64", "etcdops"))
	for version, playbook := range ansibles(t) {
		for name, answer := range map[string]string{"aarch64": "Linux aarch64", "riscv": "Linux riscv64"} {
			t.Run(version+"/"+name, func(t *testing.T) {
				dir := t.TempDir()
				fake := filepath.Join(dir, "fakebin")
				if err := os.MkdirAll(fake, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho '"+answer+"'\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				task := certTask(dir, name)
				task["environment"] = map[string]any{"PATH": fake + ":" + os.Getenv("PATH")}
				cache := filepath.Join(dir, "cache")
				out := play(t, run{playbook: playbook, cacheDir: cache}, []map[string]any{task})
				switch name {
				case "aarch64":
					if !strings.Contains(out, "uploading linux_arm64 build") {
						t.Fatalf("an aarch64 target did not get the arm64 build:\n%s", out)
					}
					if _, err := os.Stat(filepath.Join(cache, arm64, "etcdops")); err != nil {
						t.Errorf("arm64 build not cached under its hash: %v", err)
					}
				case "riscv":
					if !strings.Contains(out, "no etcdops build for this target (uname -sm: Linux riscv64); available: linux_amd64, linux_arm64") {
						t.Errorf("no clear error for an unsupported target:\n%s", out)
					}
				}
			})
		}
	}
}

func TestNoLogAsyncAndBecome(t *testing.T) {
	requireBuild(t)
	for version, playbook := range ansibles(t) {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			secret := "s3cr3t-common-name-4711"
			noLog := certTask(dir, "hidden")
			noLog["etcd_cert"].(map[string]any)["common_name"] = secret
			noLog["no_log"] = true
			async := certTask(dir, "async")
			async["async"] = 30
			async["poll"] = 2
			async["ignore_errors"] = true
			become := certTask(dir, "become")
			become["become"] = true
			become["become_method"] = "su"
			out := play(t, run{playbook: playbook, cacheDir: filepath.Join(dir, "cache")}, []map[string]any{noLog, async, become})
			if strings.Contains(out, secret) {
				t.Errorf("a no_log task's argument appears in -vvv output")
			}
			if _, err := os.Stat(filepath.Join(dir, "pki", "hidden.pem")); err != nil {
				t.Errorf("no_log task did not run: %v", err)
			}
			if !strings.Contains(out, "not support async") && !strings.Contains(out, "async is not supported") {
				t.Errorf("async was not refused clearly:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "pki", "async.pem")); err == nil {
				t.Error("the async task ran")
			}
			if _, err := os.Stat(filepath.Join(dir, "pki", "become.pem")); err != nil {
				t.Errorf("task with become did not run: %v\n%s", err, out)
			}
		})
	}
}
