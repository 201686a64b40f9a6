package proc

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	// A shell that starts a child holding 32 MiB of anonymous memory: the
	// tree's peak counts it.
	r, err := Measure(exec.Command("sh", "-c", `head -c 33554432 /dev/zero | tr '\0' a | (v=$(cat); sleep 0.2; echo ${#v})`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(r.Stdout)); got != "33554432" {
		t.Fatalf("stdout %q", got)
	}
	if r.Anon < 32<<20 {
		t.Errorf("peak anonymous memory %d bytes, want at least 32 MiB", r.Anon)
	}
	if r.Wall < 200*time.Millisecond || r.CPU <= 0 {
		t.Errorf("wall %s, cpu %s", r.Wall, r.CPU)
	}
	if _, err := Measure(exec.Command("sh", "-c", "echo oops >&2; exit 3")); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("a failing program: %v", err)
	}
}

func TestRatios(t *testing.T) {
	a := []Run{{Wall: 3 * time.Second}, {Wall: 2 * time.Second}, {Wall: time.Second}}
	b := []Run{{Wall: time.Second}, {Wall: time.Second}, {Wall: time.Second}}
	if got := Spread(Ratios(a, b)); got != "2.00 (1.00–3.00)" {
		t.Errorf("Spread = %q", got)
	}
	if got := MedianWall(a); got != 2*time.Second {
		t.Errorf("MedianWall = %s", got)
	}
}

func TestStatus(t *testing.T) {
	if hwm, anon := Status(os.Getpid(), "VmHWM"), Status(os.Getpid(), "RssAnon"); hwm <= 0 || anon <= 0 || anon > hwm {
		t.Errorf("VmHWM %d, RssAnon %d", hwm, anon)
	}
	if got := Status(os.Getpid(), "NoSuchField"); got != 0 {
		t.Errorf("a missing field: %d", got)
	}
}
