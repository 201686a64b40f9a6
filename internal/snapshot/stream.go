package snapshot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// The snapshot stream is received without clientv3's Maintenance.Snapshot,
// for speed. That helper decodes each 32 KiB message with the proto codec
// (which first gathers the message's frames into a pooled buffer it zeroes:
// a 1 MiB one, because a message is just over 32 KiB), copies the blob
// into a new SnapshotResponse, then through an io.Pipe to the reader. Here
// a codec copies the blob straight from gRPC's frame buffers into the
// buffer that is written to the file: one copy instead of three, and no
// zeroing. The wire format is etcd's SnapshotResponse, the same for 3.4 to
// 3.6 servers.

// SnapshotResponse's field numbers (api/etcdserverpb/rpc.proto).
const (
	fieldRemainingBytes = 2
	fieldBlob           = 3
	fieldVersion        = 4
)

// snapshotChunk receives one SnapshotResponse: the blob is appended to buf.
type snapshotChunk struct {
	buf       []byte
	remaining uint64 // blob bytes the server says are still to come
	version   string // the server's version (3.6+), in the first message
}

// snapshotCodec decodes into a *snapshotChunk and leaves every other
// message (the SnapshotRequest it sends) to the proto codec.
type snapshotCodec struct{ proto encoding.CodecV2 }

func newSnapshotCodec() snapshotCodec {
	return snapshotCodec{proto: encoding.GetCodecV2(proto.Name)}
}

// Name is the content-subtype gRPC sends: the server decodes the request
// as protobuf, as it always does.
func (snapshotCodec) Name() string { return proto.Name }

func (c snapshotCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if chunk, ok := v.(*snapshotChunk); ok {
		return chunk.decode(data)
	}
	return c.proto.Unmarshal(data, v)
}

// decode reads a SnapshotResponse from the buffers of one message.
func (c *snapshotChunk) decode(data mem.BufferSlice) error {
	c.remaining = 0 // proto3 leaves a zero out
	r := data.Reader()
	defer r.Close()
	for r.Remaining() > 0 {
		tag, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("snapshot message: field tag: %w", err)
		}
		num, typ := tag>>3, tag&7
		var skip uint64
		switch typ {
		case 0: // varint
			v, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("snapshot message: field %d: %w", num, err)
			}
			if num == fieldRemainingBytes {
				c.remaining = v
			}
		case 1: // fixed64
			skip = 8
		case 5: // fixed32
			skip = 4
		case 2: // length-delimited
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("snapshot message: field %d: %w", num, err)
			}
			if n > uint64(r.Remaining()) {
				return fmt.Errorf("snapshot message: field %d: length %d beyond the message's end", num, n)
			}
			switch num {
			case fieldBlob: // copied from gRPC's buffers straight into buf
				start := len(c.buf)
				c.buf = slices.Grow(c.buf, int(n))[:start+int(n)]
				io.ReadFull(r, c.buf[start:])
			case fieldVersion:
				v := make([]byte, n)
				io.ReadFull(r, v)
				c.version = string(v)
			default:
				skip = n
			}
		default:
			return fmt.Errorf("snapshot message: field %d has wire type %d", num, typ)
		}
		if _, err := io.CopyN(io.Discard, r, int64(skip)); err != nil {
			return fmt.Errorf("snapshot message: field %d: %w", num, io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// grpcSource is the snapshot stream of one member, as a chunkSource.
type grpcSource struct {
	stream grpc.ClientStream
	chunk  snapshotChunk
}

// openStream starts the Snapshot RPC on the client's connection. The
// client's interceptors apply; a broken stream is not retried (that would
// splice two streams), it fails, and the sha256 trailer would catch any
// loss anyway.
func openStream(ctx context.Context, cli *clientv3.Client) (*grpcSource, error) {
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{},
		grpc.ForceCodecV2(newSnapshotCodec()))
	if err != nil {
		return nil, err
	}
	return &grpcSource{stream: stream}, nil
}

// next appends the next message's blob to buf.
func (s *grpcSource) next(buf []byte) ([]byte, error) {
	s.chunk.buf = buf
	err := s.stream.RecvMsg(&s.chunk)
	buf, s.chunk.buf = s.chunk.buf, nil
	if errors.Is(err, io.EOF) {
		if s.chunk.remaining != 0 {
			return buf, fmt.Errorf("%w: the stream ended %d bytes short of what the server announced",
				io.ErrUnexpectedEOF, s.chunk.remaining)
		}
		return buf, io.EOF
	}
	return buf, err
}
