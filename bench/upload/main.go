// Command upload is the benchmark of the backup's upload (`make bench`).
// It uploads one snapshot-sized file (1 GiB by default, pages half random
// and half repeated text, so that zstd has about as much to do as on a
// Kubernetes database) to a real versitygw on loopback, for several
// rounds, with three arms in turn, each a child process of this binary:
//
//   - plain: one minio-go PutObject of the file with default options, the
//     same client as the project's;
//   - project: objstore.Upload, the backup's path (multipart, sha256 and
//     revision metadata, the object checked after the upload);
//   - zstd: objstore.Upload with zstd compression.
//
// It prints the project's and zstd's throughput as ratios to plain's
// (median, min–max), zstd's compression ratio, and each arm's peak memory:
// VmHWM and RssAnon, which the child reads from its own /proc/self/status
// just before it exits, and the peak RssAnon the parent polls from
// /proc/<pid>/status every 10 ms. Not a timed test: it fails only when an
// upload fails.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/etcdops/etcdops/bench/internal/proc"
	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/objstore/s3test"
)

// configEnv passes the store's configuration, credentials included, to a
// child: not on its command line, which any user can read.
const configEnv = "BENCH_UPLOAD_STORE"

func main() {
	child := flag.String("child", "", "internal: upload once with this arm (plain, project, zstd) and report")
	file := flag.String("file", "", "internal, with -child: the file to upload")
	key := flag.String("key", "", "internal, with -child: the object key")
	sum := flag.String("sha256", "", "internal, with -child: the file's sha256")
	sizeMiB := flag.Int("size", 1024, "size of the file to upload, MiB")
	rounds := flag.Int("rounds", 3, "rounds (each uploads once with every arm)")
	cache := flag.String("cache", "/var/cache/etcd-lab", "where the file and the store's directory are made")
	out := flag.String("out", "build/bench-upload.txt", "report file (also printed)")
	flag.Parse()
	var err error
	if *child != "" {
		err = runChild(*child, *file, *key, *sum)
	} else {
		err = run(*sizeMiB, *rounds, *cache, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/upload:", err)
		os.Exit(1)
	}
}

// report is what a child prints when its upload is done.
type report struct {
	Sent   int64 `json:"sent"`   // bytes of the object
	VmHWM  int64 `json:"vmhwm"`  // peak resident set, bytes
	Anon   int64 `json:"anon"`   // RssAnon at the end, bytes
	Millis int64 `json:"millis"` // the upload alone, without the start
}

func runChild(arm, file, key, sum string) error {
	var cfg objstore.Config
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", configEnv, err)
	}
	st, err := objstore.New(cfg)
	if err != nil {
		return err
	}
	if arm != "plain" {
		objstore.LimitMemory(cfg) // as `etcdops backup run` does
	}
	ctx := context.Background()
	start := time.Now()
	var sent int64
	switch arm {
	case "plain":
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		info, err := f.Stat()
		if err != nil {
			return err
		}
		up, err := st.Client().PutObject(ctx, st.Bucket(), key, f, info.Size(), minio.PutObjectOptions{})
		f.Close()
		if err != nil {
			return err
		}
		sent = up.Size
	case "project", "zstd":
		l := codec.Layers{Compression: codec.None}
		if arm == "zstd" {
			l.Compression = codec.Zstd
		}
		o, err := st.Upload(ctx, key, file, l, objstore.Meta{SHA256: sum, Revision: 1, Member: "bench"})
		if err != nil {
			return err
		}
		sent = o.Size
	default:
		return fmt.Errorf("no arm %q", arm)
	}
	r := report{Sent: sent, Millis: time.Since(start).Milliseconds()}
	r.VmHWM, r.Anon = proc.Status(os.Getpid(), "VmHWM"), proc.Status(os.Getpid(), "RssAnon")
	return json.NewEncoder(os.Stdout).Encode(r)
}

// measurement is one arm's upload.
type measurement struct {
	report
	run proc.Run // the child, start to exit; its RssAnon polled by the parent
}

func run(sizeMiB, rounds int, cache, out string) error {
	work, err := os.MkdirTemp(cache, "bench-upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	file := filepath.Join(cache, fmt.Sprintf("bench-upload-%dm.db", sizeMiB))
	if err := makeFile(file, sizeMiB); err != nil {
		return err
	}
	sum, err := sha256File(file)
	if err != nil {
		return err
	}
	tb := &benchTB{dir: work}
	defer tb.close()
	srv, err := startStore(tb)
	if err != nil {
		return err
	}
	cfg := srv.Config("bench/")
	cfg.PartSize = 0 // the default, as a configuration without part_size has
	env, _ := json.Marshal(cfg)
	st, err := objstore.New(cfg)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	arms := []string{"plain", "project", "zstd"}
	got := map[string][]measurement{}
	for i := 0; i < rounds; i++ {
		for j := range arms {
			arm := arms[(i+j)%len(arms)]
			l := codec.Layers{Compression: codec.None}
			if arm == "zstd" {
				l.Compression = codec.Zstd
			}
			key, err := st.Key(time.Date(2026, 1, 1, 0, 0, i*len(arms)+j, 0, time.UTC), arm, l)
			if err != nil {
				return err
			}
			cmd := exec.Command(self, "-child", arm, "-file", file, "-key", key, "-sha256", sum)
			cmd.Env = append(os.Environ(), configEnv+"="+string(env))
			// The previous upload's pages are written out first: no arm
			// pays for another's writeback.
			syscall.Sync()
			m, err := measure(cmd)
			if err != nil {
				return fmt.Errorf("%s: %w", arm, err)
			}
			got[arm] = append(got[arm], m)
			// Each object goes before the next upload: the disk holds one.
			if err := st.Client().RemoveObject(context.Background(), st.Bucket(), key, minio.RemoveObjectOptions{}); err != nil {
				return err
			}
		}
	}
	size := int64(sizeMiB) << 20
	var b strings.Builder
	fmt.Fprintf(&b, "\nupload of a %d MiB file (pages half random, half text) to versitygw on loopback, %d rounds, %s\n",
		sizeMiB, rounds, time.Now().UTC().Format(time.RFC3339))
	for i := 0; i < rounds; i++ {
		fmt.Fprintf(&b, "  round %d:", i+1)
		for _, a := range arms {
			m := got[a][i]
			fmt.Fprintf(&b, "   %s %5.2fs (%4.0f MiB/s) %s", a, m.run.Wall.Seconds(), float64(size)/(1<<20)/m.run.Wall.Seconds(), m.mem())
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  throughput / plain PutObject: project %s   zstd %s\n", ratios(got["plain"], got["project"]), ratios(got["plain"], got["zstd"]))
	zs := got["zstd"][0].Sent
	fmt.Fprintf(&b, "  zstd: %.2f:1 (%d MiB to %d MiB), median time %.2fs (plain %.2fs)\n",
		float64(size)/float64(zs), sizeMiB, zs>>20, median(got["zstd"]).Seconds(), median(got["plain"]).Seconds())
	fmt.Fprintf(&b, "  peak memory (max over rounds): plain %s   project %s   zstd %s\n", peak(got["plain"]), peak(got["project"]), peak(got["zstd"]))
	r := ratioList(got["plain"], got["project"])
	fmt.Fprintf(&b, "  targets: project throughput >= 0.8x plain (median): %s; project and zstd peak VmHWM <= 64 MiB: %s\n",
		yes(r[len(r)/2] >= 0.8), yes(max(peakHWM(got["project"]), peakHWM(got["zstd"])) <= 64<<20))
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// startStore runs versitygw with s3test, turning its fatal errors into an
// error.
func startStore(tb *benchTB) (srv *s3test.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start versitygw: %v", r)
		}
	}()
	return s3test.Start(tb), nil
}

// benchTB is the part of testing.TB that s3test uses, outside a test:
// TempDir is under dir, Fatal panics, cleanups run at close. Any other
// method of testing.TB would panic on the nil interface.
type benchTB struct {
	testing.TB
	dir      string
	n        int
	cleanups []func()
}

func (t *benchTB) Helper() {}

func (t *benchTB) TempDir() string {
	t.n++
	d := filepath.Join(t.dir, fmt.Sprint(t.n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		panic(err)
	}
	return d
}

func (t *benchTB) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *benchTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (t *benchTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (t *benchTB) close() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// makeFile writes sizeMiB of 4 KiB pages, each 2 KiB random and 2 KiB of
// repeated text, unless the file is there with that size.
func makeFile(path string, sizeMiB int) error {
	if info, err := os.Stat(path); err == nil && info.Size() == int64(sizeMiB)<<20 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "bench/upload: writing %s (once)\n", path)
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	text := bytes.Repeat([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default"}}`), 2048/66+1)[:2048]
	page := make([]byte, 4096)
	for i := 0; i < sizeMiB<<8; i++ {
		rand.Read(page[:2048])
		copy(page[2048:], text)
		if _, err := w.Write(page); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// measure runs a child with proc.Measure and reads its report.
func measure(cmd *exec.Cmd) (measurement, error) {
	var m measurement
	var err error
	if m.run, err = proc.Measure(cmd); err != nil {
		return m, err
	}
	if err := json.Unmarshal(m.run.Stdout, &m.report); err != nil {
		return m, fmt.Errorf("the child's report %q: %w", m.run.Stdout, err)
	}
	if m.Sent == 0 {
		return m, errors.New("the child sent nothing")
	}
	return m, nil
}

func (m measurement) mem() string {
	return fmt.Sprintf("VmHWM %3d MiB RssAnon %3d MiB", m.VmHWM>>20, max(m.Anon, m.run.Anon)>>20)
}

func peak(ms []measurement) string {
	var p measurement
	for _, m := range ms {
		p.VmHWM, p.Anon = max(p.VmHWM, m.VmHWM), max(p.Anon, m.Anon, m.run.Anon)
	}
	return p.mem()
}

func runs(ms []measurement) []proc.Run {
	var r []proc.Run
	for _, m := range ms {
		r = append(r, m.run)
	}
	return r
}

// ratioList is the throughput ratios of b to base (base's time over b's),
// round by round, sorted.
func ratioList(base, b []measurement) []float64 { return proc.Ratios(runs(base), runs(b)) }

// ratios formats ratioList: median (min–max).
func ratios(base, b []measurement) string {
	r := ratioList(base, b)
	return fmt.Sprintf("%.2fx (%.2f–%.2f)", r[len(r)/2], r[0], r[len(r)-1])
}

func peakHWM(ms []measurement) int64 {
	var p int64
	for _, m := range ms {
		p = max(p, m.VmHWM)
	}
	return p
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func median(ms []measurement) time.Duration { return proc.MedianWall(runs(ms)) }
