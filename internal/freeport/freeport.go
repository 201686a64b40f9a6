// Package freeport finds a TCP port on 127.0.0.1 for a server a test
// starts.
//
// A port the kernel hands out for 127.0.0.1:0 comes from the ephemeral
// range (net.ipv4.ip_local_port_range, 32768–60999 by default), from which
// every outgoing connection also takes its source port: between the check
// and the server's bind, a client connection of this or another test
// process can take it, and the server fails with "address already in
// use" (seen in CI). So ports are taken below that range, at random, so
// that test processes running side by side seldom try the same one.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// The range tried: below the default ephemeral range, above the usual
// services.
const (
	low  = 20000
	high = 32000
)

// Pick returns a port on 127.0.0.1 that was free a moment ago.
func Pick() (string, error) {
	for range 200 {
		port := low + rand.IntN(high-low)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return strconv.Itoa(port), nil
	}
	return "", fmt.Errorf("no free port on 127.0.0.1 between %d and %d after 200 tries", low, high)
}

// Get is Pick for a test, which fails when there is no port.
func Get(t testing.TB) string {
	t.Helper()
	port, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
