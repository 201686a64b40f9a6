package snapshot

import (
	"os"
	"testing"
)

// TestMain lets this test binary serve as bbolt's check child, as every
// main does.
func TestMain(m *testing.M) {
	if RunCheckChildIfAsked() {
		return
	}
	os.Exit(m.Run())
}
