package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

// TestSnapshot runs the binary as the action plugin runs it, under its own
// name with the module named in the args file, which holds Ansible's
// internal keys (some unknown to this runtime): stdout must be exactly one
// JSON object.
func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	bin := binary(t, dir, "etcdops")
	c := etcdtest.NewCluster(t, 1)
	for _, check := range []bool{true, false} {
		args, _ := json.Marshal(map[string]any{
			"path": dir, "endpoints": c.Endpoints(), "ca_cert": c.CAFile, "client_cert": c.Client.Cert, "client_key": c.Client.Key,
			"_ansible_check_mode": check, "_ansible_diff": true, "_ansible_module_name": "etcd_snapshot",
			"_ansible_some_future_key": "x", "_ansible_no_log": false,
		})
		argsFile := filepath.Join(dir, "args.json")
		if err := os.WriteFile(argsFile, args, 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, argsFile)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("check=%v: %v\n%s%s", check, err, stdout.String(), stderr.String())
		}
		dec := json.NewDecoder(&stdout)
		var res map[string]any
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("stdout is not JSON: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatal("stdout holds more than one JSON value")
		}
		if res["changed"] != true || res["failed"] != nil {
			t.Fatalf("check=%v: %v", check, res)
		}
		if _, err := os.Stat(res["path"].(string)); (err == nil) == check {
			t.Fatalf("check=%v: file %s exists=%v", check, res["path"], err == nil)
		}
	}
}
