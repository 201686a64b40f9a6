//go:build lab

package lab

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAdoptKubeasz walks the seed's workflow on clusters laid out exactly
// as kubeasz 3.7.0 and 2.2.4 deploy them, with their own inventories and
// no extra variables: grow a single member to four (1→2, then up to 3→4),
// each new member made like the others with its own certificate from
// kubeasz's CA and no existing member restarted; remove the first host of
// [etcd]; back up to where kubeasz's restore looks; restore; refuse
// malformed input. Second runs change nothing; keys are checked on every
// member.
func TestAdoptKubeasz(t *testing.T) {
	for _, version := range []string{"3.7", "2.2"} {
		t.Run("kubeasz-"+version, func(t *testing.T) { adoptKubeasz(t, version) })
	}
}

func adoptKubeasz(t *testing.T, version string) {
	l := NewLab(t, 4, 0)
	h := l.Hosts
	var extra []string
	// The member names: kubeasz 3.x's etcd-<ip>; in 2.x each host's
	// NODE_NAME, which the operator writes on its [new-etcd] line too.
	name := func(i int) string { return "etcd-" + h[i] }
	if version == "2.2" {
		name = func(i int) string { return fmt.Sprintf("etcd%d", i+1) }
		var lines []string
		for i := 1; i < len(h); i++ {
			lines = append(lines, `"`+h[i]+` NODE_NAME=`+name(i)+`"`)
		}
		extra = []string{`{"kubeasz_new_etcd": [` + strings.Join(lines, ",") + `]}`}
	}
	start := time.Now()
	k := DeployKubeasz(t, l, version, h[:1], extra...)
	t.Logf("kubeasz %s fixture, 1 member: %s", version, time.Since(start).Round(time.Millisecond))
	k.PutKeys(h[0], "adopt/", 0, 300)

	twice := func(playbook string, extra ...string) Run {
		t.Helper()
		first := k.RunPlaybook(playbook, extra...)
		if first.Failed() {
			t.Fatalf("%s %v failed\n%s", playbook, extra, tail(first.Output, 80))
		}
		second := k.RunPlaybook(playbook, extra...)
		if second.Failed() || second.Changed() != 0 {
			t.Fatalf("%s %v: second run failed or changed %d tasks\n%s", playbook, extra, second.Changed(), tail(second.Output, 60))
		}
		return first
	}

	// Ad hoc, with no arguments, on a member: the module finds its TLS files.
	out, err := kubeaszAnsible(k, h[0], "-m", "etcd_member")
	if err != nil || !strings.Contains(out, name(0)) {
		t.Fatalf("ansible -m etcd_member on a kubeasz member: %v\n%s", err, out)
	}
	out, err = kubeaszAnsible(k, h[0], "-m", "etcd_snapshot", "-a", "path=/tmp/adhoc.db")
	if err != nil || !strings.Contains(out, `"sha256"`) {
		t.Fatalf("ansible -m etcd_snapshot on a kubeasz member: %v\n%s", err, out)
	}

	// etcd_facts names the layout and asks the member for its IDs; a host
	// without etcd says so.
	out, err = kubeaszAnsible(k, h[0], "-m", "etcd_facts")
	if err != nil || !strings.Contains(out, `"layout": "kubeasz-`+strings.Split(version, ".")[0]+`"`) || !strings.Contains(out, `"healthy": true`) {
		t.Fatalf("ansible -m etcd_facts on a kubeasz member: %v\n%s", err, out)
	}
	if out, err = kubeaszAnsible(k, h[1], "-i", h[1]+",", "-m", "etcd_facts"); err != nil || !strings.Contains(out, `"found": false`) {
		t.Fatalf("ansible -m etcd_facts on a host without etcd: %v\n%s", err, out)
	}

	// 02.etcd.yml does not install over a cluster it did not deploy.
	pid := k.MainPID(h[0])
	if r := k.RunPlaybook("playbooks/02.etcd.yml"); !r.Failed() || !strings.Contains(r.Output, "which this project did") ||
		k.MainPID(h[0]) != pid {
		t.Fatalf("02.etcd.yml on a kubeasz member was not refused, or restarted it\n%s", tail(r.Output, 30))
	}

	// A malformed NODE_TO_ADD is refused, with nothing changed.
	if r := k.RunPlaybook("playbooks/19.addetcd.yml", "NODE_TO_ADD=not-an-ip;rm"); !r.Failed() ||
		!strings.Contains(r.Output, "neither an IPv4 address nor a host") || len(k.Members(h[0])) != 1 {
		t.Fatalf("a malformed NODE_TO_ADD was not refused\n%s", tail(r.Output, 30))
	}

	// Without the CA key an add is refused before any change, naming the file.
	inv := readFile(t, k.Inventory)
	if err := os.Rename(k.CAKey, k.CAKey+".away"); err != nil {
		t.Fatal(err)
	}
	args := []string{}
	if version == "3.7" {
		args = append(args, "NODE_TO_ADD="+h[1])
	}
	if r := k.RunPlaybook("playbooks/19.addetcd.yml", args...); !r.Failed() || !strings.Contains(r.Output, k.CAKey) ||
		readFile(t, k.Inventory) != inv || len(k.Members(h[0])) != 1 {
		t.Fatalf("an add without the CA key was not refused before any change\n%s", tail(r.Output, 30))
	}
	if err := os.Rename(k.CAKey+".away", k.CAKey); err != nil {
		t.Fatal(err)
	}

	// Grow 1 → 2 → 3 → 4, as each kubeasz version's operator does it.
	for i := 1; i < len(h); i++ {
		pids := map[string]int{}
		for _, m := range h[:i] {
			pids[m] = k.MainPID(m)
		}
		args := []string{}
		if version == "3.7" {
			k.InsertEtcd(h[i]) // ezctl add-etcd puts it in [etcd], then runs the add
			args = append(args, "NODE_TO_ADD="+h[i])
		}
		if i == 1 {
			inv := readFile(t, k.Inventory)
			r := k.RunPlaybook("playbooks/19.addetcd.yml", append(args, "--check")...)
			if r.Failed() || readFile(t, k.Inventory) != inv || k.MainPID(h[i]) != 0 {
				t.Fatalf("19.addetcd.yml --check failed or changed something\n%s", tail(r.Output, 60))
			}
		}
		var r Run
		if version == "3.7" || i == len(h)-1 {
			r = twice("playbooks/19.addetcd.yml", args...)
		} else { // the seed's way: each run adds the first host of [new-etcd]
			r = k.RunPlaybook("playbooks/19.addetcd.yml")
			if r.Failed() || !strings.Contains(r.Output, "run the playbook again for the next") {
				t.Fatalf("19.addetcd.yml with %d hosts in [new-etcd]\n%s", len(h)-i, tail(r.Output, 60))
			}
		}
		t.Logf("add %d→%d: %s", i, i+1, r.Duration.Round(time.Millisecond))
		for m, pid := range pids {
			if got := k.MainPID(m); got != pid {
				t.Fatalf("adding %s restarted etcd on %s (MainPID %d → %d)", h[i], m, pid, got)
			}
		}
		names := []string{}
		for j := range h[:i+1] {
			names = append(names, name(j))
		}
		expectKubeaszVoters(t, k, h[0], names)
		for _, m := range h[:i+1] {
			if got := k.Count(m, "adopt/"); got != 300 {
				t.Fatalf("%s holds %d of the 300 keys", m, got)
			}
		}
		checkNewKubeaszMember(t, k, h[0], h[i])
	}
	if got := ansibleInventory(t, k).group("etcd"); !sameSet(got, h) {
		t.Fatalf("[etcd] is %v after the adds, want %v", got, h)
	}
	// After the adds every member's certificate names its address and is
	// from the CA the member trusts, the shared one of kubeasz 3.x too.
	// The deploy node's client certificate (3.x etcd.pem, 2.x admin.pem) is
	// read too.
	if st := k.RunPlaybook("playbooks/tools/cluster_status.yml"); st.Failed() || strings.Count(st.Output, "verifies against") < len(h)+1 ||
		!strings.Contains(st.Output, "deploy node: "+k.ClientCert+": ") {
		t.Fatalf("cluster_status.yml after the adds: failed, fewer than %d certificates checked, or not %s\n%s", len(h)+1, k.ClientCert, tail(st.Output, 40))
	}

	// Malformed input changes nothing.
	inv = readFile(t, k.Inventory)
	if r := k.RunPlaybook("playbooks/tools/remove_etcd_node.yml", "ETCD_TO_DEL=not-an-ip;rm"); !r.Failed() ||
		!strings.Contains(r.Output, "neither an IPv4 address nor a host") || readFile(t, k.Inventory) != inv {
		t.Fatalf("a malformed ETCD_TO_DEL was not refused, or changed the inventory\n%s", tail(r.Output, 30))
	}

	// Remove the first host of [etcd], by IP.
	twice("playbooks/tools/remove_etcd_node.yml", "ETCD_TO_DEL="+h[0])
	names := []string{}
	for j := 1; j < len(h); j++ {
		names = append(names, name(j))
	}
	expectKubeaszVoters(t, k, h[1], names)
	if got := ansibleInventory(t, k).group("etcd"); !sameSet(got, h[1:]) {
		t.Fatalf("[etcd] is %v after removing %s", got, h[0])
	}

	// Back up to where kubeasz's restore reads, then restore from there.
	r := k.RunPlaybook("playbooks/23.backup.yml")
	if r.Failed() {
		t.Fatalf("23.backup.yml failed\n%s", tail(r.Output, 60))
	}
	if _, err := os.Stat(filepath.Join(k.BackupDir, "snapshot.db")); err != nil {
		t.Fatalf("no snapshot.db where kubeasz's restore reads it: %v", err)
	}
	k.PutKeys(h[1], "after/", 0, 50)
	twice("playbooks/24.restore.yml")
	for _, m := range h[1:] {
		if got, after := k.Count(m, "adopt/"), k.Count(m, "after/"); got != 300 || after != 0 {
			t.Fatalf("restored %s holds %d of 300 keys and %d written after the backup", m, got, after)
		}
	}
	expectKubeaszVoters(t, k, h[1], names)
}

// expectKubeaszVoters checks that the members are exactly names, all
// voting.
func expectKubeaszVoters(t *testing.T, k *Kubeasz, host string, names []string) {
	t.Helper()
	var got []string
	for _, m := range k.Members(host) {
		if m.IsLearner {
			t.Fatalf("%s is still a learner", m.Name)
		}
		got = append(got, m.Name)
	}
	if !sameSet(got, names) {
		t.Fatalf("members %v, want %v", got, names)
	}
}

// checkNewKubeaszMember checks that the new member is run like the first:
// the same unit but for its own name and address, and a certificate of its
// own, from kubeasz's CA, for its own address.
func checkNewKubeaszMember(t *testing.T, k *Kubeasz, old, added string) {
	t.Helper()
	oldUnit, oldFlags := parseUnit(k.MustExec(old, "cat", k.Member.Unit))
	newUnit, newFlags := parseUnit(k.MustExec(added, "cat", k.Member.Unit))
	for key, vs := range oldUnit {
		if key == "ExecStart" {
			continue
		}
		if got, want := strings.Join(newUnit[key], "\n"), strings.Join(vs, "\n"); got != want {
			t.Errorf("the new member's unit has %s=%q, the others %q", key, got, want)
		}
	}
	for flag, v := range oldFlags {
		switch flag {
		case "name", "initial-cluster", "initial-cluster-state":
			continue
		}
		if got, want := newFlags[flag], strings.ReplaceAll(v, old, added); got != want {
			t.Errorf("the new member's --%s is %q, want %q", flag, got, want)
		}
	}
	if len(newFlags) != len(oldFlags) {
		t.Errorf("the new member has %d flags, the others %d", len(newFlags), len(oldFlags))
	}
	if got := newFlags["initial-cluster-state"]; got != "existing" {
		t.Errorf("the new member's --initial-cluster-state is %q", got)
	}
	cert := parseCert(t, []byte(k.MustExec(added, "cat", k.Member.Cert)))
	ca := parseCert(t, []byte(readFile(t, k.CACert)))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the new member's certificate is not from kubeasz's CA: %v", err)
	}
	if !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.String() == added }) {
		t.Errorf("the new member's certificate does not name its address %s: %v", added, cert.IPAddresses)
	}
	// The members' shared certificate (3.x) was not rewritten.
	oldCert := parseCert(t, []byte(k.MustExec(old, "cat", k.Member.Cert)))
	if oldCert.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("the new member got the old members' certificate, not its own")
	}
	if t.Failed() {
		t.FailNow()
	}
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x string) bool { return !slices.Contains(b, x) })
}
