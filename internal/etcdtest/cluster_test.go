package etcdtest

import (
	"context"
	"testing"
	"time"

	"github.com/etcdops/etcdops/internal/etcdconn"
)

func TestClusterServesTLS(t *testing.T) {
	c := NewCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Put(ctx, "k", 10, []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, st := range etcdconn.ProbeAll(ctx, c.Options(), c.Endpoints()) {
		if !st.Healthy() {
			t.Fatalf("%s unhealthy: %v", st.Endpoint, st.Err)
		}
	}
	// Without the client certificate the members refuse the connection.
	o := c.Options()
	o.ClientCert, o.ClientKey = "", ""
	o.DialTimeout = 2
	if st := etcdconn.Probe(ctx, o, c.Members[0].ClientURL); st.Healthy() {
		t.Fatal("member accepted a client without a certificate")
	}
	leader := c.Leader()
	c.Stop(leader)
	if st := etcdconn.Probe(ctx, c.Options(), leader.ClientURL); st.Healthy() {
		t.Fatal("stopped member still answers")
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if st := etcdconn.Probe(ctx, c.Options(), leader.ClientURL); !st.Healthy() {
		t.Fatalf("restarted member unhealthy: %v", st.Err)
	}
}
