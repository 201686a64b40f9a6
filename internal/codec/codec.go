// Package codec is the stream layers of a backup object: optional zstd
// compression, then optional encryption to an age recipient, and the
// reverse for a restore. Each layer streams: memory stays a few MiB
// whatever the size.
package codec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// Compression names the compression of an object.
const (
	None = "none"
	Zstd = "zstd"
)

// Layers says how an object is encoded.
type Layers struct {
	Compression string // None or Zstd
	Recipient   string // an age1... public key; empty for no encryption
}

// Validate checks the compression name and parses the recipient.
func (l Layers) Validate() error {
	if l.Compression != None && l.Compression != Zstd {
		return fmt.Errorf("compression %q: give none or zstd", l.Compression)
	}
	if l.Recipient != "" {
		if _, err := age.ParseX25519Recipient(l.Recipient); err != nil {
			return fmt.Errorf("age_recipient: %w", err)
		}
	}
	return nil
}

// Plain reports whether the object is the snapshot as it is.
func (l Layers) Plain() bool { return l.Compression == None && l.Recipient == "" }

// Suffix is what the layers add to an object's name: .zst, then .age.
func (l Layers) Suffix() string {
	s := ""
	if l.Compression == Zstd {
		s += ".zst"
	}
	if l.Recipient != "" {
		s += ".age"
	}
	return s
}

// FromName reads the layers of an object from its name's suffixes (the
// recipient is then "?": encrypted to someone).
func FromName(name string) Layers {
	l := Layers{Compression: None}
	if strings.HasSuffix(name, ".age") {
		l.Recipient, name = "?", strings.TrimSuffix(name, ".age")
	}
	if strings.HasSuffix(name, ".zst") {
		l.Compression = Zstd
	}
	return l
}

// encoderWindow bounds zstd's window, and so the memory of both ends.
const encoderWindow = 4 << 20

// Encode returns a writer that encodes what is written to it into w; Close
// flushes every layer (it does not close w).
func Encode(w io.Writer, l Layers) (io.WriteCloser, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var closers []io.Closer
	out := w
	if l.Recipient != "" {
		r, _ := age.ParseX25519Recipient(l.Recipient)
		aw, err := age.Encrypt(out, r)
		if err != nil {
			return nil, fmt.Errorf("start age encryption: %w", err)
		}
		closers = append(closers, aw)
		out = aw
	}
	if l.Compression == Zstd {
		zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(encoderWindow))
		if err != nil {
			return nil, fmt.Errorf("start zstd compression: %w", err)
		}
		closers = append(closers, zw)
		out = zw
	}
	return &stack{Writer: out, closers: closers}, nil
}

// stack closes the innermost layer (the last one added) first.
type stack struct {
	io.Writer
	closers []io.Closer
}

func (s *stack) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i].Close())
	}
	return errors.Join(errs...)
}

// ReadIdentities reads an age identity file (as age-keygen writes it).
func ReadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", path, err)
	}
	return ids, nil
}

// Decode returns the plain stream of r encoded with l (the recipient only
// says whether it is encrypted); identities decrypt it. Close releases the
// decoder.
func Decode(r io.Reader, l Layers, identities []age.Identity) (io.ReadCloser, error) {
	in := r
	if l.Recipient != "" {
		if len(identities) == 0 {
			return nil, errors.New("the object is encrypted with age: give the identity file (age_identity_file)")
		}
		ar, err := age.Decrypt(in, identities...)
		if err != nil {
			return nil, fmt.Errorf("decrypt with age: %w", err)
		}
		in = ar
	}
	if l.Compression == Zstd {
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, fmt.Errorf("start zstd decompression: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(in), nil
}
