package snapshot

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// cut splits b into pieces at the given offsets, as gRPC hands over a
// message that arrived in several frames.
func cut(b []byte, at ...int) mem.BufferSlice {
	var s mem.BufferSlice
	last := 0
	for _, i := range at {
		s = append(s, mem.SliceBuffer(b[last:i]))
		last = i
	}
	return append(s, mem.SliceBuffer(b[last:]))
}

// TestSnapshotChunkDecode decodes messages marshalled by etcd's own
// protobuf code, cut into pieces at every offset, and checks that the
// blob is appended to what the buffer already held and the other fields
// are read or skipped.
func TestSnapshotChunkDecode(t *testing.T) {
	blob := make([]byte, 300)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	withUnknown := func(m *pb.SnapshotResponse) []byte {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// Fields a newer server might add, of every wire type.
		b = protowire.AppendTag(b, 9, protowire.VarintType)
		b = protowire.AppendVarint(b, 1<<40)
		b = protowire.AppendTag(b, 10, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, 7)
		b = protowire.AppendTag(b, 11, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, 7)
		b = protowire.AppendTag(b, 12, protowire.BytesType)
		return protowire.AppendBytes(b, []byte("later"))
	}
	tests := []struct {
		name          string
		msg           []byte
		wantBlob      []byte
		wantRemaining uint64
		wantVersion   string
	}{
		{"a 3.6 message", mustMarshal(t, &pb.SnapshotResponse{Header: &pb.ResponseHeader{ClusterId: 1, Revision: 99},
			RemainingBytes: 12345, Blob: blob, Version: "3.6.0"}), blob, 12345, "3.6.0"},
		{"a 3.5 message (no version)", mustMarshal(t, &pb.SnapshotResponse{RemainingBytes: 1, Blob: blob}), blob, 1, ""},
		{"the last message (remaining 0 is left out)", mustMarshal(t, &pb.SnapshotResponse{Blob: blob[:32]}), blob[:32], 0, ""},
		{"fields it does not know", withUnknown(&pb.SnapshotResponse{RemainingBytes: 5, Blob: blob}), blob, 5, ""},
		{"an empty message", nil, nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i <= len(tt.msg); i++ {
				for j := i; j <= len(tt.msg); j += 1 + len(tt.msg)/7 {
					c := snapshotChunk{buf: []byte("held"), remaining: 777}
					if err := c.decode(cut(tt.msg, i, j)); err != nil {
						t.Fatalf("cut at %d and %d: %v", i, j, err)
					}
					want := append([]byte("held"), tt.wantBlob...)
					if !bytes.Equal(c.buf, want) || c.remaining != tt.wantRemaining || c.version != tt.wantVersion {
						t.Fatalf("cut at %d and %d: blob %d bytes (equal %v), remaining %d, version %q",
							i, j, len(c.buf), bytes.Equal(c.buf, want), c.remaining, c.version)
					}
				}
			}
		})
	}
}

func mustMarshal(t *testing.T, m *pb.SnapshotResponse) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSnapshotChunkDecodeRejects checks that a damaged message is an
// error, never a short or padded blob.
func TestSnapshotChunkDecodeRejects(t *testing.T) {
	good := mustMarshal(t, &pb.SnapshotResponse{RemainingBytes: 3, Blob: []byte("0123456789")})
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{"cut inside the blob", good[:len(good)-3], "beyond the message's end"},
		{"cut inside a tag", []byte{0x80}, "field tag"},
		{"cut inside a varint", []byte{0x10, 0x80}, "field 2"},
		{"cut inside a fixed64", append(protowire.AppendTag(nil, 10, protowire.Fixed64Type), 1, 2), "field 10"},
		{"a group (wire type 3)", protowire.AppendTag(nil, 3, protowire.StartGroupType), "wire type 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := snapshotChunk{}
			err := c.decode(cut(tt.msg))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decode = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// endingStream is a gRPC client stream that has delivered its messages:
// the server closed it cleanly.
type endingStream struct{ grpc.ClientStream }

func (endingStream) RecvMsg(any) error { return io.EOF }

// TestStreamEndsShort: a stream that ends cleanly while the last message
// announced more bytes is an error, not the end of the snapshot.
func TestStreamEndsShort(t *testing.T) {
	s := &grpcSource{stream: endingStream{}}
	s.chunk.remaining = 4096
	if _, err := s.next(nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("next after a short stream = %v, want unexpected EOF", err)
	}
	s.chunk.remaining = 0
	if _, err := s.next(nil); err != io.EOF {
		t.Fatalf("next at the announced end = %v, want EOF", err)
	}
}

// TestReaderSourceGrowsAFullBuffer: a full buffer is grown rather than
// read into with no room (which would loop without progress).
func TestReaderSourceGrowsAFullBuffer(t *testing.T) {
	src := readerSource{strings.NewReader("abc")}
	buf, err := src.next([]byte{})
	if err != nil || string(buf) != "abc" {
		t.Fatalf("next = %q, %v", buf, err)
	}
}

// readerSource is an io.Reader as a chunkSource, for tests of copyHashed.
type readerSource struct{ r io.Reader }

func (s readerSource) next(buf []byte) ([]byte, error) {
	if len(buf) == cap(buf) {
		buf = append(buf, 0)[:len(buf)]
	}
	n, err := s.r.Read(buf[len(buf):cap(buf)])
	return buf[:len(buf)+n], err
}
