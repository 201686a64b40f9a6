package mirror

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/etcdops/etcdops/internal/discover"
)

// Disagreements lists how the members' layouts differ, each line naming the
// members and the two values. A new member is made like one of them, so it
// must be clear which "like" means: where they differ, nothing is guessed.
// Settings that are each member's own (its name, address, bootstrap
// cluster) do not count.
func Disagreements(members []discover.Member) []string {
	if len(members) < 2 {
		return nil
	}
	type shape = map[string]string
	shapeOf := func(m discover.Member) shape {
		s := shape{
			"layout": m.Layout, "unit": m.Unit.Name, "unit file": m.Unit.FragmentPath, "binary": m.Binary,
			"user": m.Unit.User, "data dir": m.DataDir, "WAL dir": m.WALDir,
			"client certificate": m.ClientTLS.CertFile, "client key": m.ClientTLS.KeyFile,
			"client CA": m.ClientTLS.TrustedCAFile, "client-cert-auth": fmt.Sprint(m.ClientTLS.ClientCertAuth),
			"peer certificate": m.PeerTLS.CertFile, "peer key": m.PeerTLS.KeyFile,
			"peer CA": m.PeerTLS.TrustedCAFile, "peer-client-cert-auth": fmt.Sprint(m.PeerTLS.ClientCertAuth),
			"plain client listeners": fmt.Sprint(len(m.PlainClientURLs)),
		}
		addr, _ := DonorAddress(m)
		for name, v := range m.Settings {
			if slices.Contains(perMember, name) || name == "initial-cluster-token" {
				continue
			}
			s["setting "+name] = ReplaceAddress(v.Value, addr, "<own address>") + " (" + v.Source + ")"
		}
		return s
	}
	first := members[0]
	want := shapeOf(first)
	var out []string
	for _, m := range members[1:] {
		got := shapeOf(m)
		keys := map[string]bool{}
		for k := range want {
			keys[k] = true
		}
		for k := range got {
			keys[k] = true
		}
		var diffs []string
		for k := range keys {
			if got[k] != want[k] {
				diffs = append(diffs, fmt.Sprintf("%s: %s has %s, %s has %s", k, first.Name, orNone(want[k]), m.Name, orNone(got[k])))
			}
		}
		sort.Strings(diffs)
		out = append(out, diffs...)
	}
	return out
}

func orNone(v string) string {
	if strings.TrimSpace(v) == "" {
		return "none"
	}
	return v
}
