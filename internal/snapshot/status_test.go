package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestTailHasher feeds a stream in pieces of every size and checks that
// the body hash covers all but the last 32 bytes, which are kept, and the
// whole hash everything.
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
		if !bytes.Equal(th.tail[:th.n], data[len(data)-32:]) {
			t.Errorf("chunk %d: wrong tail", chunk)
		}
		wantBody, wantWhole := sha256.Sum256(data[:len(data)-32]), sha256.Sum256(data)
		body, whole, ok := th.sums()
		if !ok || !bytes.Equal(body, wantBody[:]) || !bytes.Equal(whole, wantWhole[:]) {
			t.Errorf("chunk %d: wrong sums (ok %v)", chunk, ok)
		}
	}
}

// TestKVKey reads the key of encoded KeyValues as the full decoder does.
func TestKVKey(t *testing.T) {
	for _, kv := range []mvccpb.KeyValue{
		{Key: []byte("a"), Value: []byte("v"), CreateRevision: 3, ModRevision: 9, Version: 2, Lease: 7},
		{Key: []byte("/registry/pods/default/x"), Value: bytes.Repeat([]byte("z"), 70000)},
		{Key: nil, Value: []byte("no key")},
	} {
		data, err := kv.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := kvKey(data)
		if err != nil || !bytes.Equal(got, kv.Key) {
			t.Errorf("kvKey = %q, %v; want %q", got, err, kv.Key)
		}
	}
	if _, err := kvKey([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Error("kvKey accepted a key field longer than the message")
	}
}

func TestStorageVersion(t *testing.T) {
	for in, want := range map[string]string{"3.6.0": "3.6.0", "3.6": "3.6.0", "": "", "junk": ""} {
		if got := storageVersion([]byte(in)); got != want {
			t.Errorf("storageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}

// TestCopyHashed checks that the copy hashes exactly what it wrote, and
// that a write error (a full disk) ends it with that error.
func TestCopyHashed(t *testing.T) {
	data := make([]byte, 5<<20+123)
	for i := range data {
		data[i] = byte(i * 31)
	}
	var out bytes.Buffer
	th := &tailHasher{sum: sha256.New()}
	n, err := copyHashed(&out, readerSource{bytes.NewReader(data)}, th, func(int) {})
	body, whole, ok := th.sums()
	wantBody, wantWhole := sha256.Sum256(data[:len(data)-32]), sha256.Sum256(data)
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) || !ok ||
		!bytes.Equal(body, wantBody[:]) || !bytes.Equal(whole, wantWhole[:]) {
		t.Fatalf("copyHashed = %d, %v; copy equal %v, sums ok %v", n, err, bytes.Equal(out.Bytes(), data), ok)
	}

	var alive int64
	n, err = copyHashed(&failingWriter{after: 3 << 20}, readerSource{bytes.NewReader(data)}, &tailHasher{sum: sha256.New()}, func(b int) { alive += int64(b) })
	if err == nil || !strings.Contains(err.Error(), "no space left") || n != 3<<20 || alive != n {
		t.Fatalf("copyHashed to a full disk = %d, %v (alive for %d bytes)", n, err, alive)
	}
}
