package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
)

// childEnv makes the test binary run `etcdops backup` (its arguments) in
// place of the tests: a run the test can kill.
const childEnv = "ETCDOPS_BACKUP_TEST_CHILD"

// runChildIfAsked runs Main when this process is such a child and reports
// whether it was.
func runChildIfAsked() bool {
	if os.Getenv(childEnv) != "1" {
		return false
	}
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	return true
}

// fixture is a cluster, a local directory and, with srv, a bucket prefix,
// written as a configuration file as the playbook writes it.
type fixture struct {
	cl     *etcdtest.Cluster
	srv    *s3test.Server
	dir    string
	prefix string
	conf   string
}

// newFixture writes the configuration: period is [schedule] period; s3 is
// nil for no [s3] section.
func newFixture(t *testing.T, cl *etcdtest.Cluster, srv *s3test.Server, dir, period string, s3 *objstore.Config) *fixture {
	t.Helper()
	f := &fixture{cl: cl, srv: srv, dir: dir, conf: filepath.Join(t.TempDir(), "backup.conf")}
	var b strings.Builder
	o := cl.Options()
	fmt.Fprintf(&b, "[etcd]\nendpoints = %s\nca_cert = %s\nclient_cert = %s\nclient_key = %s\n",
		strings.Join(o.Endpoints, ","), o.CACert, o.ClientCert, o.ClientKey)
	fmt.Fprintf(&b, "[schedule]\nperiod = %s\nmember = m0\nlock_ttl = 2\nlock_wait = 30s\n[local]\ndir = %s\nkeep = 3\n", period, dir)
	if s3 != nil {
		f.prefix = s3.Prefix
		creds := filepath.Join(filepath.Dir(f.conf), "s3.credentials")
		writeFile(t, creds, fmt.Sprintf("access_key_id = %s\nsecret_access_key = %s\n", s3.AccessKey, s3.SecretKey))
		fmt.Fprintf(&b, "[s3]\nendpoint = %s\nbucket = %s\nprefix = %s\npart_size = 5MiB\nkeep = 5\ncredentials_file = %s\n",
			s3.Endpoint, s3.Bucket, s3.Prefix, creds)
		if s3.CAFile != "" {
			fmt.Fprintf(&b, "ca_file = %s\n", s3.CAFile)
		}
	}
	writeFile(t, f.conf, b.String())
	return f
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run is `etcdops backup run --config F`, as the timer's service runs it.
func (f *fixture) run() (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main([]string{"run", "--config", f.conf}, &out, &errOut)
	return code, out.String(), errOut.String()
}

// pendingOne returns the one snapshot recorded as not yet in the store.
func (f *fixture) pendingOne(t *testing.T) Local {
	t.Helper()
	ls, err := pending(f.dir)
	if err != nil || len(ls) != 1 {
		t.Fatalf("pending snapshots: %+v %v, want one", ls, err)
	}
	if got, err := fileSHA256(ls[0].Path); got != ls[0].SHA256 {
		t.Fatalf("the pending snapshot %s has sha256 %s (%v), its record says %s", ls[0].Path, got, err, ls[0].SHA256)
	}
	return ls[0]
}

// uploaded checks that the store holds exactly one snapshot under the
// prefix, l's, with l's sha256 and revision in its metadata, that nothing
// unfinished is left, and that last-success.json names it.
func (f *fixture) uploaded(t *testing.T, l Local) {
	t.Helper()
	st := f.srv.Store(t, f.prefix)
	objs, err := st.List(context.Background())
	if err != nil || len(objs) != 1 {
		t.Fatalf("objects under %s: %+v %v, want one", f.prefix, objs, err)
	}
	o := objs[0]
	if o.SHA256 != l.SHA256 || o.Revision != l.Revision {
		t.Errorf("object %s has sha256 %s revision %d, the snapshot %s and %d", o.Key, o.SHA256, o.Revision, l.SHA256, l.Revision)
	}
	for u := range st.Client().ListIncompleteUploads(context.Background(), f.srv.Bucket, f.prefix, true) {
		t.Errorf("unfinished upload left: %s %v", u.Key, u.Err)
	}
	var s Success
	if ok, err := readJSON(filepath.Join(f.dir, lastSuccessFile), &s); !ok || err != nil {
		t.Fatalf("last-success.json: %v %v", ok, err)
	}
	if s.Object != o.URL || s.SHA256 != l.SHA256 || s.Revision != l.Revision || s.LocalPath != l.Path {
		t.Errorf("last-success.json %+v, want object %s sha256 %s revision %d", s, o.URL, l.SHA256, l.Revision)
	}
	if left, _ := pending(f.dir); len(left) != 0 {
		t.Errorf("still pending after the upload: %+v", left)
	}
}

// putMiB writes n MiB of random values in 1 MiB keys.
func putMiB(t *testing.T, cl *etcdtest.Cluster, prefix string, n int) {
	t.Helper()
	v := make([]byte, 1<<20)
	rand.Read(v)
	if err := cl.Put(context.Background(), prefix, n, v); err != nil {
		t.Fatal(err)
	}
}

// The store is down: the run fails naming the store, keeps its verified
// snapshot as pending and records no success; the next run, with the store
// back, uploads that same snapshot.
func TestRunStoreUnreachableUploadsOnTheNextRun(t *testing.T) {
	cl := etcdtest.NewCluster(t, 1)
	srv := s3test.Start(t)
	s3 := srv.Config("c1/")
	f := newFixture(t, cl, srv, t.TempDir(), "1000h", &s3)
	srv.Stop()

	code, out, errOut := f.run()
	if code != 1 || !strings.Contains(errOut, "cannot reach the store at "+srv.Endpoint) || !strings.Contains(errOut, "the next run uploads it") {
		t.Fatalf("run with the store down: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	noSecret(t, s3, out, errOut)
	l := f.pendingOne(t)
	if _, err := os.Stat(filepath.Join(f.dir, lastSuccessFile)); !os.IsNotExist(err) {
		t.Errorf("a failed run wrote %s: %v", lastSuccessFile, err)
	}

	srv.Restart()
	if code, out, errOut := f.run(); code != 0 {
		t.Fatalf("run with the store back: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	f.uploaded(t, l)
}

// The local directory fills up while the snapshot streams: the run fails
// saying so, no partial file remains, and the older snapshot and the state
// files are the same bytes as before.
func TestRunDiskFullKeepsOlderSnapshots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs as the full disk needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m,mode=0700"); err != nil {
		t.Skipf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	cl := etcdtest.NewCluster(t, 1)
	f := newFixture(t, cl, nil, dir, "1s", nil)
	if code, out, errOut := f.run(); code != 0 {
		t.Fatalf("first run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	before := readDir(t, dir)
	putMiB(t, cl, "big/", 3) // the next snapshot does not fit
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))

	code, out, errOut := f.run()
	if code != 1 || !strings.Contains(errOut, "no space left on device") {
		t.Fatalf("run on a full disk: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	after := readDir(t, dir)
	if !slices.Equal(keys(before), keys(after)) {
		t.Fatalf("files before the failed run %v, after %v", keys(before), keys(after))
	}
	for name, data := range before {
		if !bytes.Equal(data, after[name]) {
			t.Errorf("%s changed in the failed run", name)
		}
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The store refuses the credentials: the error says so and where (the
// endpoint and the bucket), and no key or secret, the wrong one given or
// the right one, shows in the output or in any file the run wrote.
func TestRunWrongCredentialsSayWhereWithoutSecrets(t *testing.T) {
	cl := etcdtest.NewCluster(t, 1)
	srv := s3test.Start(t)
	for _, tc := range []struct {
		name   string
		change func(*objstore.Config)
	}{
		{"wrong secret", func(c *objstore.Config) { c.SecretKey = "wrong-SECRET-" + c.SecretKey[len(c.SecretKey)-6:] }},
		{"unknown access key", func(c *objstore.Config) { c.AccessKey, c.SecretKey = "unknownAccessKey9876", "unknown-SECRET-5432" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s3 := srv.Config("c1/")
			tc.change(&s3)
			f := newFixture(t, cl, srv, t.TempDir(), "1000h", &s3)
			code, out, errOut := f.run()
			for _, want := range []string{"refused the credentials", srv.Endpoint, "s3://" + srv.Bucket + "/"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr does not say %q", want)
				}
			}
			if code != 1 {
				t.Errorf("exit %d", code)
			}
			t.Logf("stderr: %s", errOut)
			var files []string
			for name, data := range readDir(t, f.dir) {
				files = append(files, name+": "+string(data))
			}
			noSecret(t, s3, out, errOut, strings.Join(files, "\n"))
			noSecret(t, srv.Config(""), out, errOut, strings.Join(files, "\n"))
		})
	}
}

// noSecret fails when any text holds the configuration's access key or
// secret key.
func noSecret(t *testing.T, c objstore.Config, texts ...string) {
	t.Helper()
	for _, text := range texts {
		for _, s := range []string{c.SecretKey, c.AccessKey} {
			if strings.Contains(text, s) {
				t.Errorf("a credential (%d characters) shows in: %s", len(s), strings.ReplaceAll(text, s, "<HERE>"))
			}
		}
	}
}

// A run killed while its multipart upload is under way, by SIGKILL or by
// the SIGTERM of systemctl stop, leaves no object under the final key; the
// next run takes the lock once the dead run's lease expires, aborts the
// unfinished upload and uploads the same snapshot.
func TestRunKilledMidUploadCompletesOnTheNextRun(t *testing.T) {
	cl := etcdtest.NewCluster(t, 1)
	putMiB(t, cl, "big/", 48)
	srv := s3test.Start(t)
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			forgetDone(t, cl)
			s3 := srv.Config(fmt.Sprintf("c%d/", i))
			f := newFixture(t, cl, srv, t.TempDir(), "1000h", &s3)
			st := srv.Store(t, "")
			cmd := exec.Command(os.Args[0], "run", "--config", f.conf)
			cmd.Env = append(os.Environ(), childEnv+"=1")
			var childOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &childOut, &childOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			deadline := time.After(60 * time.Second)
			for !uploading(st, f.prefix) {
				select {
				case err := <-exited:
					t.Fatalf("the run ended (%v) before its upload was seen under way:\n%s", err, childOut.String())
				case <-deadline:
					cmd.Process.Kill()
					t.Fatalf("no upload under way after 60s:\n%s", childOut.String())
				case <-time.After(2 * time.Millisecond):
				}
			}
			cmd.Process.Signal(sig)
			if err := <-exited; err == nil {
				t.Fatalf("the run stopped by %s mid-upload succeeded:\n%s", sig, childOut.String())
			}
			t.Logf("the run stopped by %s said: %s", sig, childOut.String())
			if said := childOut.String(); sig == syscall.SIGTERM && (!strings.Contains(said, "stopped by SIGTERM") || !strings.Contains(said, "the next run uploads it")) {
				t.Errorf("the run stopped by SIGTERM said: %s", said)
			}
			if objs, err := st.List(context.Background()); err != nil || len(objs) != 0 {
				t.Fatalf("objects after the run was stopped mid-upload: %+v %v", objs, err)
			}
			l := f.pendingOne(t)

			if code, out, errOut := f.run(); code != 0 {
				t.Fatalf("run after the kill: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			f.uploaded(t, l)
		})
	}
}

// forgetDone deletes the record of the period done, as if none had been.
func forgetDone(t *testing.T, cl *etcdtest.Cluster) {
	t.Helper()
	cli, err := etcdconn.New(cl.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Delete(context.Background(), DoneKey); err != nil {
		t.Fatal(err)
	}
}

// uploading reports whether a multipart upload under prefix is unfinished.
func uploading(st *objstore.Store, prefix string) bool {
	for u := range st.Client().ListIncompleteUploads(context.Background(), st.Bucket(), prefix, true) {
		if u.Err == nil {
			return true
		}
	}
	return false
}
