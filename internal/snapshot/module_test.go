package snapshot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/snapdir"
)

// etcdBin returns a real etcd binary's path; the Makefile sets ETCD_BIN_DIR.
func etcdBin(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("ETCD_BIN_DIR")
	if dir == "" {
		t.Fatal("ETCD_BIN_DIR is not set: run the tests with `make test-go` (it builds etcd, etcdctl and etcdutl into bin/)")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (run `make etcd-bin`)", p, err)
	}
	return p
}

// etcdutlStatus is what `etcdutl snapshot status -w json` prints.
type etcdutlStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

func etcdutl(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(etcdBin(t, "etcdutl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl %v: %v\n%s", args, err, out)
	}
	return out
}

// run executes the module as Ansible would, with args as the args file.
func run(t *testing.T, args map[string]any) modrun.Result {
	t.Helper()
	return modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
}

func connArgs(o etcdconn.Options, extra map[string]any) map[string]any {
	args := map[string]any{"endpoints": o.Endpoints, "ca_cert": o.CACert, "client_cert": o.ClientCert, "client_key": o.ClientKey,
		"dial_timeout": 2, "_ansible_module_name": "etcd_snapshot"}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

func mustSucceed(t *testing.T, r modrun.Result) {
	t.Helper()
	if r["failed"] == true {
		t.Fatalf("module failed: %v", r["msg"])
	}
}

// fillData writes keys, overwrites and deletes some (tombstones), so that
// the key count differs from the number of revisions.
func fillData(t *testing.T, c *etcdtest.Cluster, n int) {
	t.Helper()
	cli, err := etcdconn.New(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k/%04d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n/10; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k/%04d", i), "again"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Delete(ctx, fmt.Sprintf("k/%04d", n-1-i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSaveMatchesEtcdutl(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	fillData(t, c, 300)
	dir := t.TempDir()
	r := run(t, connArgs(c.Options(), map[string]any{"path": dir, "latest_link": "snapshot.db", "keep": 3}))
	mustSucceed(t, r)
	path := r["path"].(string)
	if !snapdir.IsName(filepath.Base(path)) || filepath.Dir(path) != dir {
		t.Fatalf("saved to %s, want %s/snapshot_<timestamp>.db", path, dir)
	}
	var want etcdutlStatus
	if err := json.Unmarshal(etcdutl(t, "snapshot", "status", "-w", "json", path), &want); err != nil {
		t.Fatal(err)
	}
	got := etcdutlStatus{Hash: r["hash"].(uint32), Revision: r["revision"].(int64), TotalKey: r["total_keys"].(int),
		TotalSize: r["total_size"].(int64), Version: r["version"].(string)}
	if got != want {
		t.Fatalf("module status %+v, etcdutl %+v", got, want)
	}
	if want.TotalKey != 270 {
		t.Errorf("etcdutl counts %d keys, want 270 (300 put, 30 deleted)", want.TotalKey)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 || info.Size() != r["size"].(int64) {
		t.Errorf("file mode %v size %d, want 0600 and %v", info.Mode().Perm(), info.Size(), r["size"])
	}
	link, err := os.Stat(filepath.Join(dir, "snapshot.db"))
	if err != nil || !os.SameFile(info, link) {
		t.Fatalf("snapshot.db is not the new snapshot: %v", err)
	}
	if r["endpoint"] != c.Members[0].ClientURL || r["member_id"] == "" {
		t.Errorf("endpoint %v member_id %v", r["endpoint"], r["member_id"])
	}
	// etcd's own restore accepts it (it verifies the sha256 trailer too).
	etcdutl(t, "snapshot", "restore", path, "--data-dir", filepath.Join(t.TempDir(), "restored"))

	// status of the saved file gives the same numbers, changes nothing.
	s := run(t, map[string]any{"state": "status", "path": path})
	mustSucceed(t, s)
	for _, k := range []string{"hash", "revision", "total_keys", "sha256", "size"} {
		if s[k] != r[k] {
			t.Errorf("status %s = %v, save reported %v", k, s[k], r[k])
		}
	}
	if s["changed"] != false {
		t.Error("status reported a change")
	}

	// The key count spilled to files (after 10 keys) agrees with etcdutl.
	spilled, err := readStatusKeys(path, "", 10)
	if err != nil || spilled.TotalKeys != want.TotalKey || spilled.Hash != want.Hash {
		t.Fatalf("status with a spilled key set: %d keys, hash %d, %v; etcdutl %d, %d",
			spilled.TotalKeys, spilled.Hash, err, want.TotalKey, want.Hash)
	}
}

func TestKeepPrunesOnlyOldSnapshots(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	dir := t.TempDir()
	others := []string{"snapshot.db", "notes.txt", "snapshot_1.db", "snapshot_20200101000000.db.bak", "my.db"}
	old := []string{"snapshot_20200101000000.db", "snapshot_20210101000000.db", "snapshot_20220101000000.db", "snapshot_20230101000000.db"}
	for _, n := range append(append([]string{}, others...), old...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Check mode says what it would prune and changes nothing.
	args := connArgs(c.Options(), map[string]any{"path": dir, "keep": 3, "_ansible_check_mode": true})
	r := run(t, args)
	mustSucceed(t, r)
	wantRemoved := []string{filepath.Join(dir, old[1]), filepath.Join(dir, old[0])}
	if fmt.Sprint(r["removed"]) != fmt.Sprint(wantRemoved) || r["changed"] != true {
		t.Fatalf("check mode: removed %v changed %v, want %v and true", r["removed"], r["changed"], wantRemoved)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(others)+len(old) {
		t.Fatalf("check mode changed the directory: %d entries", len(entries))
	}
	delete(args, "_ansible_check_mode")
	r = run(t, args)
	mustSucceed(t, r)
	if fmt.Sprint(r["removed"]) != fmt.Sprint(wantRemoved) {
		t.Fatalf("removed %v, want %v", r["removed"], wantRemoved)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := append(append([]string{}, others...), old[2], old[3], filepath.Base(r["path"].(string)))
	sort.Strings(want)
	if fmt.Sprint(left) != fmt.Sprint(want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func TestEndpointChoice(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	dead := "https://127.0.0.1:1" // nothing listens on port 1
	o := c.Options()
	o.Endpoints = append([]string{dead}, o.Endpoints...)
	r := run(t, connArgs(o, map[string]any{"path": t.TempDir(), "_ansible_check_mode": true}))
	mustSucceed(t, r)
	if r["endpoint"] != c.Members[0].ClientURL {
		t.Errorf("used %v, want the first healthy endpoint %s", r["endpoint"], c.Members[0].ClientURL)
	}
	o.Endpoints = []string{dead, "https://127.0.0.1:2"}
	r = run(t, connArgs(o, map[string]any{"path": t.TempDir()}))
	msg, _ := r["msg"].(string)
	if r["failed"] != true || !strings.Contains(msg, "no healthy member") || !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "127.0.0.1:2") {
		t.Fatalf("no healthy endpoint: %v", r)
	}
}

func TestCheckModeWritesNothing(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	dir := t.TempDir()
	r := run(t, connArgs(c.Options(), map[string]any{"path": dir, "latest_link": "snapshot.db", "_ansible_check_mode": true}))
	mustSucceed(t, r)
	if r["changed"] != true || !strings.HasPrefix(r["msg"].(string), "would save") {
		t.Fatalf("check mode: %v", r)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("check mode wrote %d files", len(entries))
	}
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"path": filepath.Join(dir, "missing", "s.db")}, "does not exist"},
		{map[string]any{"path": dir, "keep": 0}, "keep must be at least 1"},
		{map[string]any{"path": dir, "mode": "rw"}, "octal file mode"},
		{map[string]any{"path": dir, "mode": "0200"}, "octal file mode"},
		{map[string]any{"path": dir, "latest_link": "a/b"}, "without '/'"},
		{map[string]any{"path": dir, "state": "gone"}, "state"},
		{map[string]any{}, "path"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			r := run(t, tc.args)
			if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), tc.want) {
				t.Fatalf("got %v, want failure mentioning %q", r, tc.want)
			}
		})
	}
}

func TestStatusOfDamagedFiles(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	fillData(t, c, 200)
	dir := t.TempDir()
	r := run(t, connArgs(c.Options(), map[string]any{"path": filepath.Join(dir, "good.db")}))
	mustSucceed(t, r)
	good, err := os.ReadFile(filepath.Join(dir, "good.db"))
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, len(good))
	rand.Read(random)
	flipped := append([]byte{}, good...)
	flipped[len(flipped)/2] ^= 0xff
	noTrailer := good[:len(good)-32]
	// Both bbolt meta pages damaged past their magic and page size: bbolt
	// cannot open it, but the sha256 says first what happened.
	headers := append([]byte{}, good...)
	pageSize := int(binary.LittleEndian.Uint32(headers[16+8:]))
	headers[16+16] ^= 0xff
	headers[pageSize+16+16] ^= 0xff
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"random", "not an etcd snapshot", random},
		{"empty", "not an etcd snapshot", nil},
		{"truncated", "truncated", good[:len(good)/2]},
		{"truncated-by-a-few-bytes", "truncated", good[:len(good)-5]},
		{"flipped", "sha256 mismatch", flipped},
		{"both-headers-damaged", "sha256 mismatch", headers},
		// Without a trailer nothing catches the damage before bbolt, whose
		// check would crash the process on this one.
		{"no-trailer-bad-bucket-root", "its database is damaged", damageBucketRoot(t, noTrailer, "key")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := run(t, map[string]any{"state": "status", "path": p})
			if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), tc.want) {
				t.Fatalf("got %v, want failure mentioning %q", r["msg"], tc.want)
			}
		})
	}
	// A database without trailer is readable, with a warning.
	p := filepath.Join(dir, "db")
	if err := os.WriteFile(p, noTrailer, 0o600); err != nil {
		t.Fatal(err)
	}
	s := run(t, map[string]any{"state": "status", "path": p})
	mustSucceed(t, s)
	if s["hash"] != r["hash"] || s["warnings"] == nil {
		t.Fatalf("database without trailer: hash %v (want %v), warnings %v", s["hash"], r["hash"], s["warnings"])
	}
}

// damageBucketRoot returns a copy of a bbolt database whose root bucket
// entry for bucket points at a page far beyond the file.
func damageBucketRoot(t *testing.T, db []byte, bucket string) []byte {
	t.Helper()
	d := append([]byte{}, db...)
	pageSize := int(binary.LittleEndian.Uint32(d[16+8:]))
	meta := func(page int) (root, txid uint64) {
		m := d[page*pageSize+16:]
		return binary.LittleEndian.Uint64(m[16:]), binary.LittleEndian.Uint64(m[48:])
	}
	root, txid0 := meta(0)
	if root1, txid1 := meta(1); txid1 > txid0 {
		root = root1
	}
	page := d[int(root)*pageSize:]
	count := int(binary.LittleEndian.Uint16(page[10:]))
	for i := 0; i < count; i++ {
		elem := page[16+16*i:]
		pos, ksize := binary.LittleEndian.Uint32(elem[4:]), binary.LittleEndian.Uint32(elem[8:])
		if string(elem[pos:pos+ksize]) == bucket {
			binary.LittleEndian.PutUint64(elem[pos+ksize:], 1<<55)
			return d
		}
	}
	t.Fatalf("no bucket %q in the root page %d", bucket, root)
	return nil
}

// cutProxy forwards TCP to target and cuts every connection once limit
// bytes have come back from the target in total; after the cut it refuses
// new connections, so a client cannot retry around it.
type cutProxy struct {
	ln    net.Listener
	limit int64
	seen  atomic.Int64
	cut   atomic.Bool
}

func newCutProxy(t *testing.T, target string, limit int64) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, limit: limit}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if p.cut.Load() {
				conn.Close()
				continue
			}
			go p.serve(conn, target)
		}
	}()
	return p
}

func (p *cutProxy) serve(conn net.Conn, target string) {
	defer conn.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go io.Copy(up, conn)
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if p.seen.Add(int64(n)) > p.limit {
				p.cut.Store(true)
				p.ln.Close()
				return
			}
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestConnectionLostMidStream(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	cli, err := etcdconn.New(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("x", 64<<10)
	for i := 0; i < 96; i++ { // about 6 MiB
		if _, err := cli.Put(context.Background(), fmt.Sprintf("big/%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	cli.Close()
	dir := t.TempDir()
	first := run(t, connArgs(c.Options(), map[string]any{"path": dir, "latest_link": "snapshot.db"}))
	mustSucceed(t, first)
	before, _ := os.ReadDir(dir)

	u, _ := url.Parse(c.Members[0].ClientURL)
	proxy := newCutProxy(t, u.Host, 2<<20)
	o := c.Options()
	o.Endpoints = []string{"https://" + proxy.ln.Addr().String()}
	// The endpoint probe goes through the proxy too: it must get through
	// before the cut, which comes in the middle of the snapshot stream.
	time.Sleep(1100 * time.Millisecond) // a new second: a new file name
	r := run(t, connArgs(o, map[string]any{"path": dir, "latest_link": "snapshot.db", "keep": 1}))
	if r["failed"] != true || !proxy.cut.Load() {
		t.Fatalf("a snapshot through a connection cut after 2 MiB did not fail: %v", r)
	}
	t.Logf("failure message: %v", r["msg"])
	mustBeUntouched(t, dir, before, first["path"].(string))
}

// TestSaveCheckFailsBeforeRename: when the check of the streamed file
// fails or panics, the file it would have replaced is untouched and no
// temporary file remains.
func TestSaveCheckFailsBeforeRename(t *testing.T) {
	c := etcdtest.NewCluster(t, 1)
	cli, err := etcdconn.New(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "etcd.db")
	if err := os.WriteFile(path, []byte("the previous backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func(string, Saved) error{
		"fails":  func(string, Saved) error { return errors.New("bad database") },
		"panics": func(string, Saved) error { panic("bbolt: corrupt page") },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Save(context.Background(), cli, path, 0o600, 5*time.Second, check)
			if err == nil {
				t.Fatal("Save succeeded although its check failed")
			}
			if got, _ := os.ReadFile(path); string(got) != "the previous backup" {
				t.Fatalf("the existing file was replaced: %q", got)
			}
			if es, _ := os.ReadDir(dir); len(es) != 1 {
				t.Fatalf("files left behind: %v", names(es))
			}
		})
	}
	saved, err := Save(context.Background(), cli, path, 0o600, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != saved.SHA256 || int64(len(data)) != saved.Size {
		t.Fatalf("Save reported sha256 %s and %d bytes for a file of %d bytes", saved.SHA256, saved.Size, len(data))
	}
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// startEtcdProcess runs a one-member etcd server process (plain HTTP on
// loopback) until the test ends, and returns its client URL, the process
// and a client.
func startEtcdProcess(t *testing.T) (string, *exec.Cmd, *clientv3.Client) {
	t.Helper()
	ports := freePorts(t, 2)
	client, peer := "http://127.0.0.1:"+ports[0], "http://127.0.0.1:"+ports[1]
	data := t.TempDir()
	cmd := exec.Command(etcdBin(t, "etcd"), "--name", "solo", "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "solo="+peer, "--log-level", "error")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "real/0", "x")
		cancel()
		if err == nil {
			return client, cmd, cli
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not start: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRealEtcdProcess saves from an etcd server process and checks the
// file against etcdutl.
func TestRealEtcdProcess(t *testing.T) {
	client, _, cli := startEtcdProcess(t)
	for i := 1; i < 50; i++ {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("real/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "real.db")
	r := run(t, map[string]any{"endpoints": []string{client}, "path": path})
	mustSucceed(t, r)
	var want etcdutlStatus
	if err := json.Unmarshal(etcdutl(t, "snapshot", "status", "-w", "json", path), &want); err != nil {
		t.Fatal(err)
	}
	if r["hash"].(uint32) != want.Hash || r["revision"].(int64) != want.Revision || r["total_keys"].(int) != want.TotalKey || want.TotalKey != 50 {
		t.Fatalf("module %v/%v/%v, etcdutl %+v", r["hash"], r["revision"], r["total_keys"], want)
	}
}

// TestServerKilledMidStream kills the etcd process (SIGKILL) once part of
// a ~100 MiB snapshot has been written: the save fails, no partial file is
// left, and the snapshot already there and its latest link are untouched.
func TestServerKilledMidStream(t *testing.T) {
	client, cmd, cli := startEtcdProcess(t)
	fillBig(t, cli)
	dir := t.TempDir()
	args := map[string]any{"endpoints": []string{client}, "path": dir, "latest_link": "snapshot.db", "keep": 1}
	first := run(t, args)
	mustSucceed(t, first)
	before, _ := os.ReadDir(dir)

	killed := signalMidStream(dir, cmd, syscall.SIGKILL)
	time.Sleep(1100 * time.Millisecond) // a new second: a new file name
	r := run(t, args)
	at, ok := <-killed
	if !ok {
		t.Fatal("the snapshot stream was never seen in progress")
	}
	if r["failed"] != true {
		t.Fatalf("a save whose server was killed after %d bytes did not fail: %v", at, r)
	}
	t.Logf("killed after %d bytes; message: %v", at, r["msg"])
	if msg := fmt.Sprint(r["msg"]); !strings.Contains(msg, "the stream broke after") || strings.Contains(msg, "TLS") {
		t.Errorf("the message does not say the stream broke (or blames TLS): %s", msg)
	}
	mustBeUntouched(t, dir, before, first["path"].(string))
}

// TestServerStalledMidStream: a server that stops sending (SIGSTOP) fails
// the save after command_timeout with no data, and nothing is left.
func TestServerStalledMidStream(t *testing.T) {
	client, cmd, cli := startEtcdProcess(t)
	fillBig(t, cli)
	dir := t.TempDir()
	stopped := signalMidStream(dir, cmd, syscall.SIGSTOP)
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGCONT) })
	start := time.Now()
	r := run(t, map[string]any{"endpoints": []string{client}, "path": dir, "command_timeout": 1})
	took := time.Since(start)
	at, ok := <-stopped
	if !ok {
		t.Fatal("the snapshot stream was never seen in progress")
	}
	if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), "no data for 1s") {
		t.Fatalf("a save whose server stopped after %d bytes: %v", at, r)
	}
	t.Logf("stopped after %d bytes; failed after %s: %v", at, took, r["msg"])
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed save left %v", names(left))
	}
}

// fillBig puts 100 MiB of 64 KiB values, so that a snapshot takes long
// enough to be interrupted.
func fillBig(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	value := strings.Repeat("v", 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 1600)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1600; i += 8 {
				if _, err := cli.Put(context.Background(), fmt.Sprintf("big/%04d", i), value); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// signalMidStream sends sig to the server as soon as a temporary snapshot
// file in dir holds 4 MiB, and then sends its size; the channel closes
// without a size if none did within 30 s.
func signalMidStream(dir string, cmd *exec.Cmd, sig syscall.Signal) <-chan int64 {
	sent := make(chan int64, 1)
	go func() {
		defer close(sent)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			parts, _ := filepath.Glob(filepath.Join(dir, ".snapshot_*.part-*"))
			for _, p := range parts {
				if st, err := os.Stat(p); err == nil && st.Size() >= 4<<20 {
					cmd.Process.Signal(sig)
					sent <- st.Size()
					return
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return sent
}

func mustBeUntouched(t *testing.T, dir string, before []os.DirEntry, previous string) {
	t.Helper()
	after, _ := os.ReadDir(dir)
	if fmt.Sprint(names(before)) != fmt.Sprint(names(after)) {
		t.Fatalf("directory changed by a failed save: before %v, after %v", names(before), names(after))
	}
	link, _ := os.Stat(filepath.Join(dir, "snapshot.db"))
	orig, _ := os.Stat(previous)
	if !os.SameFile(link, orig) {
		t.Fatal("snapshot.db no longer points at the previous snapshot")
	}
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
