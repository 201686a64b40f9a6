//go:build lab

package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// TestDeployCluster deploys a 3-member TLS cluster with 02.etcd.yml, checks
// that a second run changes nothing, and that every member serves TLS only,
// agrees on the members and on data written through another member.
func TestDeployCluster(t *testing.T) {
	l := NewLab(t, 3, 3)
	first := l.MustPlaybook("playbooks/02.etcd.yml")
	if first.Changed() == 0 {
		t.Fatal("first run changed nothing")
	}
	second := l.MustPlaybook("playbooks/02.etcd.yml")
	if second.Changed() != 0 {
		t.Fatalf("second run changed %d tasks, want 0\n%s", second.Changed(), tail(second.Output, 60))
	}
	t.Logf("02.etcd.yml: first run %s, second run %s", first.Duration, second.Duration)

	l.MustSSH(l.Hosts[0], `for i in $(seq 1 100); do etcdctl put lab/key-$i value-$i >/dev/null || exit 1; done`)
	want := []string{"etcd1", "etcd2", "etcd3"}
	for _, h := range l.Hosts {
		out := l.MustSSH(h, "etcdctl endpoint health -w json")
		if !strings.Contains(out, `"health":true`) {
			t.Fatalf("%s not healthy over TLS: %s", h, out)
		}
		var names []string
		for _, m := range l.Members(h) {
			names = append(names, m.Name)
			if m.IsLearner || len(m.ClientURLs) != 1 || !strings.HasPrefix(m.ClientURLs[0], "https://") {
				t.Fatalf("member %+v seen from %s is not a TLS voting member", m, h)
			}
		}
		sort.Strings(names)
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Fatalf("members seen from %s: %v, want %v", h, names, want)
		}
		// Serializable read: this member's own copy of the data.
		if got := l.MustSSH(h, "etcdctl get --consistency=s --prefix lab/ --count-only -w fields"); !strings.Contains(got, `"Count" : 100`) {
			t.Fatalf("%s does not have the 100 keys: %s", h, got)
		}
		// No plain-HTTP listener, and no TLS client without a certificate.
		if out, err := l.SSH(h, "etcdctl --endpoints=http://127.0.0.1:2379 --cacert= --cert= --key= --command-timeout=3s endpoint health"); err == nil {
			t.Fatalf("%s answers plain HTTP: %s", h, out)
		}
		if out, err := l.SSH(h, "etcdctl --cert= --key= --command-timeout=3s get x"); err == nil {
			t.Fatalf("%s accepts a client without a certificate: %s", h, out)
		}
		perms := l.MustSSH(h, "stat -c '%a %U %n' /var/lib/etcd /etc/etcd/ssl/member-key.pem /etc/etcd/ssl/client-key.pem")
		for _, want := range []string{"700 etcd /var/lib/etcd", "600 etcd /etc/etcd/ssl/member-key.pem", "600 root /etc/etcd/ssl/client-key.pem"} {
			if !strings.Contains(perms, want) {
				t.Fatalf("%s: permissions %q lack %q", h, perms, want)
			}
		}
		if unit := l.MustSSH(h, "systemctl show -p Type -p ActiveState etcd"); !strings.Contains(unit, "Type=notify") || !strings.Contains(unit, "ActiveState=active") {
			t.Fatalf("%s: unit %s", h, unit)
		}
	}
	// Ad hoc, as an operator asks: ansible -m etcd_member -a 'state=info ...'.
	adhoc := exec.Command(strings.Replace(ansiblePlaybook(), "ansible-playbook", "ansible", 1),
		"-i", l.Inventory, l.Hosts[1], "-m", "etcd_member", "-o", "-a",
		"state=info endpoints=https://"+l.Hosts[1]+":2379 ca_cert=/etc/etcd/ssl/ca.pem "+
			"client_cert=/etc/etcd/ssl/client.pem client_key=/etc/etcd/ssl/client-key.pem")
	adhoc.Dir = repoRoot
	adhoc.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1")
	out, err := adhoc.CombinedOutput()
	if err != nil {
		t.Fatalf("ansible -m etcd_member: %v\n%s", err, out)
	}
	// -o prints "HOST | SUCCESS => {json}".
	_, js, _ := strings.Cut(string(out), "=> ")
	var info struct {
		Changed bool `json:"changed"`
		Members []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		t.Fatalf("ansible -m etcd_member output: %v\n%s", err, out)
	}
	var adhocNames []string
	for _, m := range info.Members {
		if !m.Healthy {
			t.Fatalf("ad hoc info reports %s unhealthy: %s", m.Name, out)
		}
		adhocNames = append(adhocNames, m.Name)
	}
	sort.Strings(adhocNames)
	if info.Changed || fmt.Sprint(adhocNames) != fmt.Sprint(want) {
		t.Fatalf("ad hoc info: changed=%v members %v, want %v", info.Changed, adhocNames, want)
	}

	// The CA key stays on the deploy node.
	for _, h := range l.Hosts {
		if out := l.MustSSH(h, "find / -xdev -name 'ca-key.pem' 2>/dev/null | wc -l"); strings.TrimSpace(out) != "0" {
			t.Fatalf("%s has a CA key", h)
		}
	}
}
