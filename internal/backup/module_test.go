package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/etcdops/etcdops/internal/etcdtest"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
	"github.com/etcdops/etcdops/internal/snapshot"
)

// moduleFixture is the faults tests' fixture (one member, a bucket, its
// backup.conf) for the module, with extra lines in the [s3] section.
type moduleFixture struct {
	*fixture
	creds string // the credentials file the configuration names
}

func newModuleFixture(t *testing.T, prefix string, s3extra ...string) moduleFixture {
	t.Helper()
	srv := s3test.Start(t)
	cfg := srv.Config(prefix)
	f := newFixture(t, etcdtest.NewCluster(t, 1), srv, filepath.Join(t.TempDir(), "local"), "1h", &cfg)
	if len(s3extra) > 0 {
		conf, err := os.ReadFile(f.conf)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, f.conf, string(conf)+strings.Join(s3extra, "\n")+"\n")
	}
	return moduleFixture{fixture: f, creds: filepath.Join(filepath.Dir(f.conf), "s3.credentials")}
}

// backupAt runs the schedule once as if the clock said now.
func (f moduleFixture) backupAt(t *testing.T, now time.Time) Result {
	t.Helper()
	c, err := Load(f.conf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), c, now)
	if err != nil {
		t.Fatalf("backup run: %v", err)
	}
	if r.Taken == nil {
		t.Fatalf("the run took no snapshot: %s", r.Line())
	}
	return r
}

// direct is the bucket given as task options (the deploy node's way).
func (f moduleFixture) direct(extra map[string]any) map[string]any {
	args := map[string]any{"endpoint": f.srv.Endpoint, "bucket": f.srv.Bucket, "credentials_file": f.creds}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

func runModule(t *testing.T, args map[string]any) modrun.Result {
	t.Helper()
	return modrun.ExecuteArgs(context.Background(), args, ModuleSpec, RunModule)
}

func ok(t *testing.T, r modrun.Result) {
	t.Helper()
	if r["failed"] == true {
		t.Fatalf("module failed: %v", r["msg"])
	}
}

func TestModuleStatus(t *testing.T) {
	f := newModuleFixture(t, "c1/")
	// Backups taken "five and three hours ago": ages are known without
	// waiting for the clock.
	f.backupAt(t, time.Now().Add(-5*time.Hour))
	latest := f.backupAt(t, time.Now().Add(-3*time.Hour))
	unreachable := filepath.Join(t.TempDir(), "backup.conf")
	conf, _ := os.ReadFile(f.conf)
	writeFile(t, unreachable, strings.Replace(string(conf), f.srv.Endpoint, "http://127.0.0.1:1", 1))
	noBucket := filepath.Join(t.TempDir(), "backup.conf")
	writeFile(t, noBucket, string(conf[:strings.Index(string(conf), "[s3]")]))

	hour := 3600.0
	cases := []struct {
		name       string
		args       map[string]any
		stale      bool
		local      bool    // a local snapshot is reported
		remoteFrom string  // the remote's source
		newest     float64 // hours, roughly
		warn       bool
	}{
		{name: "config, fresh enough", args: map[string]any{"config": f.conf, "max_age": "4h"}, local: true, remoteFrom: "bucket", newest: 3},
		{name: "config, too old", args: map[string]any{"config": f.conf, "max_age": "2h"}, stale: true, local: true, remoteFrom: "bucket", newest: 3},
		{name: "config, days", args: map[string]any{"config": f.conf, "max_age": "1d"}, local: true, remoteFrom: "bucket", newest: 3},
		{name: "no max_age: report only", args: map[string]any{"config": f.conf}, local: true, remoteFrom: "bucket", newest: 3},
		{name: "bucket from the task", args: f.direct(map[string]any{"prefix": "c1/", "max_age": "2h"}), stale: true, remoteFrom: "bucket", newest: 3},
		{name: "empty prefix of the bucket", args: f.direct(map[string]any{"prefix": "other/", "max_age": "2h"}), stale: true},
		{name: "no bucket configured: the state file", args: map[string]any{"config": noBucket, "max_age": "2h"}, stale: true, local: true, remoteFrom: "state file", newest: 3},
		{name: "bucket unreachable: the state file", args: map[string]any{"config": unreachable, "max_age": "4h"}, local: true, remoteFrom: "state file", newest: 3, warn: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runModule(t, c.args)
			ok(t, r)
			t.Log(r["msg"])
			if r["stale"] != c.stale || r["changed"] != false {
				t.Errorf("stale %v changed %v, want stale %v, unchanged", r["stale"], r["changed"], c.stale)
			}
			local, _ := r["local"].(*Backup)
			if c.local != (local != nil) {
				t.Fatalf("local = %+v, want one: %v", local, c.local)
			}
			if local != nil && (local.Revision != latest.Taken.Revision || local.SHA256 != latest.Taken.SHA256 || local.Path != latest.Taken.Path) {
				t.Errorf("local %+v, want the latest snapshot %+v", local, latest.Taken)
			}
			remote, _ := r["remote"].(*Backup)
			if c.remoteFrom == "" {
				if remote != nil {
					t.Errorf("remote %+v, want none", remote)
				}
			} else if remote == nil || remote.Source != c.remoteFrom || remote.URL != latest.Taken.Object ||
				remote.Revision != latest.Taken.Revision || remote.SHA256 != latest.Taken.SHA256 || remote.Member != "m0" {
				t.Errorf("remote %+v, want %s from the %s", remote, latest.Taken.Object, c.remoteFrom)
			}
			age, _ := r["newest_age_seconds"].(*float64)
			if c.newest > 0 && (age == nil || *age < c.newest*hour || *age > (c.newest+1)*hour) {
				t.Errorf("newest_age_seconds %v, want about %vh", age, c.newest)
			}
			if _, warned := r["warnings"]; warned != c.warn {
				t.Errorf("warnings %v, want some: %v", r["warnings"], c.warn)
			}
			if strings.Contains(fmt.Sprint(r), f.srv.SecretKey) {
				t.Errorf("the secret key is in the result")
			}
		})
	}
}

func TestModuleStatusRefusesBadInput(t *testing.T) {
	f := newModuleFixture(t, "c1/")
	missing := filepath.Join(t.TempDir(), "backup.conf")
	open := filepath.Join(t.TempDir(), "open.creds")
	writeFile(t, open, "access_key_id = a\nsecret_access_key = b\n")
	os.Chmod(open, 0o644)
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"malformed max_age", map[string]any{"config": f.conf, "max_age": "twelve hours"}, "max_age"},
		{"zero max_age", map[string]any{"config": f.conf, "max_age": "0s"}, "max_age"},
		{"config missing, to list", map[string]any{"state": "listed", "config": missing}, "no such file"},
		{"config and endpoint", map[string]any{"config": f.conf, "endpoint": f.srv.Endpoint}, "mutually exclusive"},
		{"endpoint without credentials", map[string]any{"endpoint": f.srv.Endpoint, "bucket": f.srv.Bucket}, "credentials_file"},
		{"credentials readable by others", f.direct(map[string]any{"credentials_file": open}), "chmod 600"},
		{"bad endpoint", f.direct(map[string]any{"endpoint": "s3.example.com"}), "give a URL"},
		{"wrong secret", f.direct(map[string]any{"credentials_file": nil, "access_key_id": f.srv.AccessKey, "secret_access_key": "not-the-secret"}), "refused the credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runModule(t, c.args)
			if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), c.want) {
				t.Errorf("failed %v msg %q, want a failure saying %q", r["failed"], r["msg"], c.want)
			}
			if strings.Contains(fmt.Sprint(r), "not-the-secret") || strings.Contains(fmt.Sprint(r), f.srv.SecretKey) {
				t.Errorf("a secret is in the result: %v", r)
			}
		})
	}
	// No configuration: nothing to report, not a failure.
	r := runModule(t, map[string]any{"config": missing, "max_age": "1h"})
	if r["failed"] == true || r["configured"] != false || r["stale"] != false {
		t.Errorf("without a configuration: %v, want configured=false, stale=false", r)
	}
}

func TestModuleListed(t *testing.T) {
	f := newModuleFixture(t, "c1/")
	older := f.backupAt(t, time.Now().Add(-5*time.Hour))
	newer := f.backupAt(t, time.Now().Add(-3*time.Hour))
	// Objects the listing must leave out: another prefix, a foreign name.
	f.srv.Put(t, "c1/notes.txt", []byte("not a snapshot"))
	f.srv.Put(t, "c2/snapshot_20260101T000000Z_x.db", []byte("another prefix"))
	for name, args := range map[string]map[string]any{
		"config":  {"state": "listed", "config": f.conf},
		"options": f.direct(map[string]any{"state": "listed", "prefix": "c1/"}),
	} {
		t.Run(name, func(t *testing.T) {
			r := runModule(t, args)
			ok(t, r)
			got, _ := r["objects"].([]objstore.Object)
			want := []*Local{newer.Taken, older.Taken}
			if lines, _ := r["lines"].([]string); len(lines) != 2 || !strings.Contains(lines[0], newer.Taken.Object) || !strings.Contains(lines[0], "by m0") {
				t.Errorf("lines %q", r["lines"])
			}
			if len(got) != len(want) || r["count"] != 2 {
				t.Fatalf("listed %+v, want the two snapshots", got)
			}
			for i, w := range want {
				g := got[i]
				if g.URL != w.Object || g.Revision != w.Revision || g.Member != "m0" || g.Size != w.Size || !g.Time.Equal(w.Time) {
					t.Errorf("object %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestModuleFetched(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		extra  []string // [s3] lines
		suffix string
	}{
		{name: "plain", suffix: ".db"},
		{name: "zstd and age", extra: []string{"compression = zstd", "age_recipient = " + id.Recipient().String()}, suffix: ".db.zst.age"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newModuleFixture(t, "team/etcd/", c.extra...)
			if err := f.cl.Put(context.Background(), "/fetch/", 200, []byte("value")); err != nil {
				t.Fatal(err)
			}
			taken := f.backupAt(t, time.Now()).Taken
			if !strings.HasSuffix(taken.Object, c.suffix) {
				t.Fatalf("object %s, want a %s", taken.Object, c.suffix)
			}
			idFile := filepath.Join(t.TempDir(), "age.key")
			writeFile(t, idFile, id.String()+"\n")
			destDir := t.TempDir()
			want := filepath.Join(destDir, "snapshot_"+taken.Time.UTC().Format("20060102T150405Z")+"_m0.db")
			args := f.direct(map[string]any{"state": "fetched", "key": taken.Object, "dest": destDir, "age_identity_file": idFile})

			check := runModule(t, with(args, "_ansible_check_mode", true))
			ok(t, check)
			if check["changed"] != true || check["dest"] != want {
				t.Errorf("check mode: changed %v dest %v, want changed and %s", check["changed"], check["dest"], want)
			}
			if names, _ := os.ReadDir(destDir); len(names) != 0 {
				t.Fatalf("check mode wrote %v", names)
			}

			r := runModule(t, args)
			ok(t, r)
			if r["changed"] != true || r["sha256"] != taken.SHA256 || r["revision"] != taken.Revision || r["member"] != "m0" {
				t.Errorf("fetch: %v", r)
			}
			st, err := snapshot.ReadStatus(want)
			if err != nil || st.SHA256 != taken.SHA256 || st.Revision != taken.Revision {
				t.Fatalf("the fetched file: %+v %v, want sha256 %s revision %d", st, err, taken.SHA256, taken.Revision)
			}
			if info, _ := os.Stat(want); info.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", info.Mode().Perm())
			}
			if names, _ := os.ReadDir(destDir); len(names) != 1 {
				t.Errorf("dest holds %v, want only the snapshot", names)
			}

			for name, again := range map[string]map[string]any{
				"again, by key":                    args,
				"again, as file":                   with(args, "dest", want),
				"again, checking":                  with(args, "_ansible_check_mode", true),
				"the bucket named by the URL only": with(args, "bucket", nil),
				"by the member's config": {"state": "fetched", "config": f.conf, "key": taken.Object, "dest": want,
					"age_identity_file": idFile},
			} {
				if r := runModule(t, again); r["failed"] == true || r["changed"] != false {
					t.Errorf("%s: changed %v msg %v, want unchanged", name, r["changed"], r["msg"])
				}
			}

			// Another file at dest is replaced by the snapshot.
			writeFile(t, want, "something else")
			if r := runModule(t, with(args, "dest", want)); r["changed"] != true {
				t.Errorf("over another file: changed %v msg %v", r["changed"], r["msg"])
			}
			if st, err := snapshot.ReadStatus(want); err != nil || st.SHA256 != taken.SHA256 {
				t.Errorf("after replacing: %v %v", st.SHA256, err)
			}
		})
	}
}

func TestModuleFetchRefusals(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	f := newModuleFixture(t, "", "age_recipient = "+id.Recipient().String())
	taken := f.backupAt(t, time.Now()).Taken
	f.srv.Put(t, "snapshot_20260101T000000Z_x.db", []byte("no metadata"))
	dest := t.TempDir()
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"encrypted without an identity", f.direct(map[string]any{"state": "fetched", "key": taken.Object, "dest": dest}), "age_identity_file"},
		{"another bucket", f.direct(map[string]any{"state": "fetched", "key": "s3://elsewhere/" + strings.TrimPrefix(taken.Object, "s3://backups/"), "dest": dest}), "not elsewhere"},
		{"no such object", f.direct(map[string]any{"state": "fetched", "key": "snapshot_20200101T000000Z_m0.db.age", "dest": dest}), "no such object"},
		{"not a snapshot name", f.direct(map[string]any{"state": "fetched", "key": "notes.txt", "dest": dest}), "not a snapshot"},
		{"no metadata", f.direct(map[string]any{"state": "fetched", "key": "snapshot_20260101T000000Z_x.db", "dest": dest}), "no sha256"},
		{"dest directory missing", f.direct(map[string]any{"state": "fetched", "key": taken.Object, "dest": filepath.Join(dest, "no", "x.db")}), "does not exist"},
		{"no dest", f.direct(map[string]any{"state": "fetched", "key": taken.Object}), "dest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runModule(t, c.args)
			if r["failed"] != true || !strings.Contains(fmt.Sprint(r["msg"]), c.want) {
				t.Errorf("failed %v msg %q, want a failure saying %q", r["failed"], r["msg"], c.want)
			}
			if names, _ := os.ReadDir(dest); len(names) != 0 {
				t.Errorf("a failed fetch left %v", names)
			}
		})
	}
}

func with(args map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for key, val := range args {
		if key != k {
			out[key] = val
		}
	}
	return out
}
