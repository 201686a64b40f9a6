package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestGetIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		p := Get(t)
		n, err := strconv.Atoi(p)
		if err != nil || n < low || n >= high {
			t.Fatalf("port %q is outside %d–%d", p, low, high)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("port %s is not free: %v", p, err)
		}
		l.Close()
		seen[p] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 ports drawn, only %d different: not at random", len(seen))
	}
}
