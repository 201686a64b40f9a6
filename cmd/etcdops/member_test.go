package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdops/etcdops/internal/etcdtest"
)

// TestMember runs the binary as Ansible runs library/etcd_member, with an
// args file, against a real (embedded) cluster: stdout must be exactly one
// JSON object, stderr empty, the exit status 0 on success and 1 on failure.
func TestMember(t *testing.T) {
	dir := t.TempDir()
	bin := binary(t, dir, "etcd_member")
	c := etcdtest.NewCluster(t, 1)
	m0 := c.Members[0]

	run := func(t *testing.T, args map[string]any) (map[string]any, int) {
		t.Helper()
		data, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "args")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, path)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if stderr.Len() > 0 {
			t.Errorf("stderr: %s", stderr.String())
		}
		dec := json.NewDecoder(&stdout)
		var res map[string]any
		if err := dec.Decode(&res); err != nil {
			t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout.String())
		}
		var extra json.RawMessage
		if err := dec.Decode(&extra); err != io.EOF {
			t.Fatalf("stdout holds more than one JSON value: %s", extra)
		}
		return res, code
	}

	t.Run("info", func(t *testing.T) {
		res, code := run(t, map[string]any{
			"state": "info", "endpoints": []string{m0.ClientURL}, "ca_cert": c.CAFile,
			"client_cert": c.Client.Cert, "client_key": c.Client.Key,
			"_ansible_check_mode": false, "_ansible_module_name": "etcd_member", "_ansible_verbosity": 0,
		})
		members, _ := res["members"].([]any)
		if code != 0 || res["failed"] != nil || len(members) != 1 {
			t.Fatalf("exit %d: %v", code, res)
		}
		m, _ := members[0].(map[string]any)
		if m["name"] != "m0" || m["healthy"] != true || m["is_leader"] != true || res["initial_cluster"] != "m0="+m0.PeerURL {
			t.Errorf("%v", res)
		}
	})
	t.Run("failure", func(t *testing.T) {
		res, code := run(t, map[string]any{"state": "info", "endpoints": []string{m0.ClientURL}, "ca_cert": c.CAFile,
			"client_cert": c.Client.Cert, "client_key": c.Client.Key, "_ansible_check_mode": true, "bogus": 1})
		if code != 1 || res["failed"] != true || !strings.Contains(res["msg"].(string), "unsupported parameters: bogus") {
			t.Fatalf("exit %d: %v", code, res)
		}
	})
}
