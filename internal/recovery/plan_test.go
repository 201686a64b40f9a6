package recovery

import (
	"errors"
	"slices"
	"testing"
)

func members(ids ...string) []MemberInfo {
	var out []MemberInfo
	for _, id := range ids {
		out = append(out, MemberInfo{ID: id, Name: "etcd-" + id, PeerURLs: []string{"https://" + id + ":2380"}, ClientURLs: []string{"https://" + id + ":2379"}})
	}
	return out
}

// running is a member that answers Status, with the member list it serves.
func running(host string, applied uint64, rev int64, quorum bool, list ...string) Survivor {
	return Survivor{Host: host, Name: "etcd-" + host, PeerURLs: []string{"https://" + host + ":2380"}, Running: true, Source: "status",
		MemberID: host, ClusterID: "c1", AppliedIndex: applied, RaftIndex: applied, Revision: rev, Quorum: quorum, Members: members(list...)}
}

func stopped(host string, applied uint64, rev int64) Survivor {
	return Survivor{Host: host, Name: "etcd-" + host, PeerURLs: []string{"https://" + host + ":2380"}, Source: "data", AppliedIndex: applied, RaftIndex: applied, Revision: rev}
}

func TestDecide(t *testing.T) {
	all5 := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name      string
		req       Request
		action    string
		chosen    string
		rejoin    []string
		errIs     error
		errAny    bool
		lossAhead map[string]int64
	}{
		{name: "4 of 5 answer: a quorum, refused",
			req: Request{Survivors: []Survivor{running("a", 10, 5, true, all5...), running("b", 10, 5, true, all5...),
				running("c", 10, 5, true, all5...), running("d", 10, 5, true, all5...)}, Unreachable: []string{"e"}},
			action: ActionNone, errIs: ErrQuorum},
		{name: "3 of 5 run but none reads yet (an election): refused",
			req: Request{Survivors: []Survivor{running("a", 10, 5, false, all5...), running("b", 10, 5, false, all5...),
				running("c", 10, 5, false, all5...)}, Unreachable: []string{"d", "e"}},
			errIs: ErrQuorum},
		{name: "2 of 5: the one that applied most is chosen, the other rejoins",
			req: Request{Survivors: []Survivor{running("d", 90, 40, false, all5...), running("e", 95, 42, false, all5...)},
				Unreachable: []string{"a", "b", "c"}},
			action: ActionRecover, chosen: "e", rejoin: []string{"d"}},
		{name: "recover_from a survivor behind: what the other had more is reported lost",
			req: Request{Survivors: []Survivor{running("d", 90, 40, false, all5...), running("e", 95, 42, false, all5...)},
				Unreachable: []string{"a", "b", "c"}, RecoverFrom: "d"},
			action: ActionRecover, chosen: "d", rejoin: []string{"e"}, lossAhead: map[string]int64{"e": 2}},
		{name: "a stopped survivor ahead is chosen from its data",
			req: Request{Survivors: []Survivor{running("d", 90, 40, false, all5...), stopped("e", 99, 44)},
				Unreachable: []string{"a", "b", "c"}},
			action: ActionRecover, chosen: "e", rejoin: []string{"d"}},
		{name: "a tie goes to the running member",
			req:    Request{Survivors: []Survivor{stopped("d", 90, 40), running("e", 90, 40, false, all5...)}},
			action: ActionRecover, chosen: "e", rejoin: []string{"d"}},
		{name: "recover_from a host not reached: refused",
			req:    Request{Survivors: []Survivor{running("d", 90, 40, false, all5...)}, Unreachable: []string{"a"}, RecoverFrom: "a"},
			errAny: true},
		{name: "no survivor has data: refused",
			req:    Request{Survivors: []Survivor{{Host: "d", Error: "no data"}}, Unreachable: []string{"a", "b"}},
			errAny: true},
		{name: "after a recovery: the old members, powered on, are removed ones and rejoin",
			req: Request{Survivors: []Survivor{
				running("a", 5, 3, true, all5...), running("b", 5, 3, true, all5...), running("c", 5, 3, true, all5...),
				running("d", 120, 50, true, "d", "f"), running("f", 120, 50, true, "d", "f")}},
			action: ActionRejoin, chosen: "d", rejoin: []string{"a", "b", "c"}},
		{name: "after a recovery: old members whose etcd is stopped rejoin, found by name",
			req:    Request{Survivors: []Survivor{stopped("a", 5, 3), running("d", 120, 50, true, "d", "f"), running("f", 120, 50, true, "d", "f")}},
			action: ActionRejoin, chosen: "d", rejoin: []string{"a"}},
		{name: "a healthy cluster with a member stopped: refused, nothing to rejoin",
			req:   Request{Survivors: []Survivor{stopped("c", 5, 3), running("a", 9, 5, true, "a", "b", "c"), running("b", 9, 5, true, "a", "b", "c")}},
			errIs: ErrQuorum},
		{name: "two clusters: refused",
			req: Request{Survivors: []Survivor{running("a", 9, 5, false, "a"), func() Survivor {
				s := running("b", 9, 5, false, "b")
				s.ClusterID = "c2"
				return s
			}()}},
			errAny: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decide(tt.req)
			switch {
			case tt.errIs != nil:
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("err %v, want %v", err, tt.errIs)
				}
			case tt.errAny:
				if err == nil {
					t.Fatalf("no error: %+v", p)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if p.Rejoin == nil || p.LeftOut == nil || p.Stopped == nil || p.Losses == nil || p.Endpoints == nil {
				t.Fatalf("a list is null: %+v", p)
			}
			if tt.action != "" && p.Action != tt.action {
				t.Fatalf("action %q, want %q: %s", p.Action, tt.action, p.Summary)
			}
			if p.Chosen != tt.chosen && tt.chosen != "" {
				t.Fatalf("chosen %q, want %q", p.Chosen, tt.chosen)
			}
			if tt.rejoin != nil && !slices.Equal(p.Rejoin, tt.rejoin) {
				t.Fatalf("rejoin %v, want %v", p.Rejoin, tt.rejoin)
			}
			if !slices.Equal(p.LeftOut, slices.Sorted(slices.Values(tt.req.Unreachable))) {
				t.Fatalf("left out %v, want %v", p.LeftOut, tt.req.Unreachable)
			}
			for _, l := range p.Losses {
				if l.RevisionsAhead != tt.lossAhead[l.Host] {
					t.Fatalf("%s: %d revisions ahead, want %d", l.Host, l.RevisionsAhead, tt.lossAhead[l.Host])
				}
			}
		})
	}
}
