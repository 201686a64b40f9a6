package snapshot

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// TestTailHasher feeds a stream in pieces of every size and checks that
// the hash covers all but the last 32 bytes, which are kept.
func TestTailHasher(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, chunk := range []int{1, 5, 31, 32, 33, 64, 999, 1000} {
		th := &tailHasher{sum: sha256.New()}
		for off := 0; off < len(data); off += chunk {
			th.Write(data[off:min(off+chunk, len(data))])
		}
		want := sha256.Sum256(data[:len(data)-32])
		if !bytes.Equal(th.sum.Sum(nil), want[:]) || !bytes.Equal(th.body[:th.n], data[len(data)-32:]) {
			t.Errorf("chunk %d: wrong hash or tail", chunk)
		}
	}
}

func TestStorageVersion(t *testing.T) {
	for in, want := range map[string]string{"3.6.0": "3.6.0", "3.6": "3.6.0", "": "", "junk": ""} {
		if got := storageVersion([]byte(in)); got != want {
			t.Errorf("storageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
