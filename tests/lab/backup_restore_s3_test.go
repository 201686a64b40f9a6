//go:build lab

package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupRestoreFromBucket: a real S3 gateway (versitygw, posix
// backend, TLS from a CA of the test's) on the 4th machine; two members
// put scheduled backups in it with `etcdops backup run`; cluster_status.yml
// reports their ages and fails with a small etcd_backup_max_age;
// 24.restore.yml lists the bucket and changes nothing, then restores from
// s3://bucket/key: the keys written before the backup are back, those
// after are gone, one cluster, all healthy; a second restore changes
// nothing.
func TestBackupRestoreFromBucket(t *testing.T) {
	l := NewLab(t, 4, 3)
	h1, h2, h3, s3host := l.Hosts[0], l.Hosts[1], l.Hosts[2], l.Hosts[3]
	bk := "etcd_backup_dir=" + filepath.Join(t.TempDir(), "backup")
	l.MustPlaybook("playbooks/02.etcd.yml", bk)
	l.PutKeys(h1, "before/", 0, 200)

	s3 := startGateway(t, l, s3host)
	creds := filepath.Join(t.TempDir(), "s3.creds")
	writeTestFile(t, creds, fmt.Sprintf("access_key_id = %s\nsecret_access_key = %s\n", s3.access, s3.secret))
	bucket := []string{bk, "etcd_backup_s3_endpoint=" + s3.endpoint(), "etcd_backup_s3_bucket=" + s3.bucket,
		"etcd_backup_s3_prefix=etcd/", "etcd_backup_s3_deploy_ca_file=" + s3.ca, "etcd_backup_s3_deploy_credentials_file=" + creds}

	// The schedule's configuration on two members (h3 has none), as the
	// schedule's playbook writes it; a period of 2s, so that each run
	// makes its own object.
	bin := filepath.Join(repoRoot, "build", "linux_amd64", "etcdops")
	conf := fmt.Sprintf("[schedule]\nperiod = 2s\n[local]\nkeep = 2\n[s3]\nendpoint = %s\nbucket = %s\nprefix = etcd/\n"+
		"ca_file = /etc/etcdops/s3-ca.pem\ncredentials_file = /etc/etcdops/s3.creds\ncompression = zstd\n", s3.endpoint(), s3.bucket)
	for _, h := range []string{h1, h2} {
		l.copyTo(h, "/usr/local/bin/etcdops", "0755", fileReader(t, bin))
		l.copyTo(h, "/etc/etcdops/s3-ca.pem", "0644", fileReader(t, s3.ca))
		l.copyTo(h, "/etc/etcdops/s3.creds", "0600", fileReader(t, creds))
		l.copyTo(h, "/etc/etcdops/backup.conf", "0600", strings.NewReader(conf))
	}
	for _, h := range []string{h1, h2} {
		time.Sleep(2 * time.Second) // the next period
		out := l.MustSSH(h, "etcdops backup run --config /etc/etcdops/backup.conf")
		t.Logf("%s: %s", h, strings.TrimSpace(out))
	}
	var objs []struct {
		URL      string `json:"url"`
		Member   string `json:"member"`
		Revision int64  `json:"revision"`
	}
	if err := json.Unmarshal([]byte(l.MustSSH(h1, "etcdops backup list --config /etc/etcdops/backup.conf --json")), &objs); err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].Member != "etcd2" || objs[1].Member != "etcd1" {
		t.Fatalf("the bucket holds %+v, want a backup by etcd2 and an older one by etcd1", objs)
	}
	l.PutKeys(h1, "after/", 0, 50)

	t.Run("cluster_status shows the ages and fails when too old", func(t *testing.T) {
		r := l.MustPlaybook("playbooks/tools/cluster_status.yml", append(bucket, "etcd_backup_max_age=1h")...)
		for _, want := range []string{h1 + `": "the newest backup in the bucket is`, h2 + `": "the newest backup in the bucket is`,
			"this member's newest local snapshot is", h3 + `": "no backup configuration at /etc/etcdops/backup.conf`,
			`"bucket (deploy node)": "the newest backup in the bucket is`} {
			if !strings.Contains(r.Output, want) {
				t.Errorf("the report lacks %q\n%s", want, tail(r.Output, 60))
			}
		}
		r = l.Playbook("playbooks/tools/cluster_status.yml", append(bucket, "etcd_backup_max_age=1ms")...)
		failure := ""
		if i := strings.Index(r.Output, "Backups too old: "); i >= 0 {
			failure, _, _ = strings.Cut(r.Output[i:], "\n")
		}
		if !r.Failed() || !strings.Contains(failure, h1+": the newest backup in the bucket is") || !strings.Contains(failure, h2+": the newest") ||
			!strings.Contains(failure, "older than the 1ms allowed") || !strings.Contains(failure, "bucket (deploy node): the newest") ||
			strings.Contains(failure, h3) {
			t.Errorf("with etcd_backup_max_age=1ms: failed %v\n%s", r.Failed(), tail(r.Output, 40))
		}
		if strings.Contains(r.Output, s3.secret) {
			t.Error("the secret key is in the output")
		}
	})

	t.Run("etcd_restore_list lists the bucket and changes nothing", func(t *testing.T) {
		r := l.MustPlaybook("playbooks/24.restore.yml", append(bucket, "etcd_restore_list=true")...)
		for _, o := range objs {
			if want := fmt.Sprintf("revision %d  ", o.Revision); !strings.Contains(r.Output, want) || !strings.Contains(r.Output, "by "+o.Member+"  "+o.URL) {
				t.Errorf("the list lacks %s (%s, by %s)\n%s", o.URL, want, o.Member, tail(r.Output, 40))
			}
		}
		if r.Changed() != 0 || len(r.Stats) != 1 {
			t.Errorf("listing changed %d tasks on %d hosts\n%s", r.Changed(), len(r.Stats), changedTasks(r.Output))
		}
		if got := l.Count(h2, "after/"); got != 50 {
			t.Errorf("after listing, %d of the 50 keys written after the backups are left", got)
		}
	})

	t.Run("restore from s3://bucket/key", func(t *testing.T) {
		from := "etcd_restore_snapshot=" + objs[0].URL
		// --check fetches the object to verify it, and leaves the members be.
		l.MustPlaybook("playbooks/24.restore.yml", append(bucket, from, "--check")...)
		if got := l.Count(h2, "after/"); got != 50 {
			t.Fatalf("after a --check restore, %d of the 50 keys written after the backups are left", got)
		}
		l.MustPlaybook("playbooks/24.restore.yml", append(bucket, from)...)
		for _, h := range l.Hosts[:3] {
			if before, after := l.Count(h, "before/"), l.Count(h, "after/"); before != 200 || after != 0 {
				t.Errorf("%s holds %d of the 200 keys written before the backup and %d written after", h, before, after)
			}
		}
		expectOneCluster(t, l, h1, 3)
		l.ExpectVoters(h1, "etcd1", "etcd2", "etcd3")
		r := l.MustPlaybook("playbooks/24.restore.yml", append(bucket, from, "--verbose")...)
		if r.Changed() != 0 {
			t.Errorf("a second restore from the same object changed %d tasks\n%s", r.Changed(), changedTasks(r.Output))
		}
		if strings.Contains(r.Output, s3.secret) || strings.Contains(r.Output, s3.access) {
			t.Error("a credential is in the restore's output (-v)")
		}
	})
}

// copyTo writes what r holds to path on host (its directory made), with
// mode, through SSH.
func (l *Lab) copyTo(host, path, mode string, r io.Reader) {
	l.t.Helper()
	dir := filepath.Dir(path)
	cmd := exec.Command("ssh", "-i", l.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "root@"+host,
		fmt.Sprintf("mkdir -p %s && umask 077 && cat > %s.part && chmod %s %s.part && mv %s.part %s", dir, path, mode, path, path, path))
	cmd.Stdin = r
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("copy to %s:%s: %v\n%s", host, path, err, out)
	}
}

func fileReader(t *testing.T, path string) io.Reader {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(data)
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
