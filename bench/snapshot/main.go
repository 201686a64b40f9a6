// Command snapshot is the benchmark of etcd_snapshot (`make bench`). On
// each database it saves a snapshot from a real etcd process on loopback
// with four programs, in turn, for several rounds: `etcdctl snapshot
// save`, etcd_snapshot, and two limits — a tiny client (this binary,
// re-run) that receives the same stream and discards it (the physical
// limit), and the same client writing what it receives to a file and
// fsyncing it (the limit of any save that keeps the stream). Then it
// reads one file's status with etcd_snapshot (state=status) and `etcdutl
// snapshot status`, in turn. It reports wall-time ratios (median, min–max)
// and each program's own peak memory, anonymous and file-backed (mapped
// page cache) apart, polled from /proc/<pid>/status of the program and its
// children until they exit; and it checks that etcd_snapshot returns the
// hash, revision and total_keys that etcdutl prints. Not a timed test: it
// prints figures and fails only when a run fails or a number differs.
//
// Two databases: ~1 GiB of 64 KiB values, and two million small keys,
// where the work etcd_snapshot does and etcdctl does not (etcdutl's hash,
// revision and key count) grows with the number of keys, not of bytes.
// Each is filled once and cached.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/etcdops/etcdops/bench/internal/proc"
	"github.com/etcdops/etcdops/internal/freeport"
)

type config struct {
	sizeMiB   int
	smallKeys int
	rounds    int
	etcdBin   string
	module    string
	compare   string
	cacheDir  string
	out       string
}

func main() {
	var c config
	discard := flag.String("discard", "", "internal: receive a snapshot from this endpoint and discard it")
	writeTo := flag.String("write", "", "internal, with -discard: write the messages' bytes to this file and fsync it instead")
	flag.IntVar(&c.sizeMiB, "size", 1024, "database size to fill, MiB")
	flag.IntVar(&c.smallKeys, "small-keys", 2_000_000, "keys in the second database, of small keys (0: skip it)")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds (each saves once with every program, and reads a status with both)")
	flag.StringVar(&c.etcdBin, "etcd-bin", envOr("ETCD_BIN_DIR", "bin"), "directory with etcd, etcdctl and etcdutl")
	flag.StringVar(&c.module, "module", "library/etcd_snapshot", "the etcd_snapshot binary module")
	flag.StringVar(&c.compare, "compare", "", "another build of etcd_snapshot to measure beside it (\"candidate\")")
	flag.StringVar(&c.cacheDir, "cache", "/var/cache/etcd-lab", "where the filled databases are kept between runs")
	flag.StringVar(&c.out, "out", "build/bench-snapshot.txt", "report file (also printed)")
	flag.Parse()
	var err error
	if *discard != "" {
		err = discardStream(*discard, *writeTo)
	} else {
		err = run(context.Background(), c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/snapshot:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// measurement is one program's run.
type measurement = proc.Run

// dataset is one database the benchmark saves.
type dataset struct {
	name string
	dir  string
	fill func(ctx context.Context, cli *clientv3.Client) error
}

func run(ctx context.Context, c config) error {
	sets := []dataset{{
		name: fmt.Sprintf("%d MiB of 64 KiB values", c.sizeMiB),
		dir:  filepath.Join(c.cacheDir, fmt.Sprintf("bench-snapshot-%dm", c.sizeMiB)),
		fill: func(ctx context.Context, cli *clientv3.Client) error { return fillLarge(ctx, cli, c.sizeMiB) },
	}}
	if c.smallKeys > 0 {
		sets = append(sets, dataset{
			name: fmt.Sprintf("%d small keys", c.smallKeys),
			dir:  filepath.Join(c.cacheDir, fmt.Sprintf("bench-snapshot-%dkeys", c.smallKeys)),
			fill: func(ctx context.Context, cli *clientv3.Client) error { return fillSmall(ctx, cli, c.smallKeys) },
		})
	}
	var b strings.Builder
	for _, set := range sets {
		if err := runSet(ctx, c, set, &b); err != nil {
			return fmt.Errorf("%s: %w", set.name, err)
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.out, []byte(b.String()), 0o644)
}

// arm is one program the benchmark runs: cmd makes its command for a
// snapshot at path.
type arm struct {
	name string
	cmd  func(path string) *exec.Cmd
}

// runSet fills the dataset's database once (it is cached), saves it with
// every arm for c.rounds rounds, then reads one file's status with both
// programs, appending its report to b.
func runSet(ctx context.Context, c config, set dataset, b *strings.Builder) error {
	dataDir := set.dir
	if _, err := os.Stat(filepath.Join(dataDir, "member")); err != nil {
		fmt.Fprintf(os.Stderr, "bench/snapshot: filling the database of %s (once; cached in %s)\n", set.name, dataDir)
		if err := fill(ctx, c, dataDir, set.fill); err != nil {
			return fmt.Errorf("fill the database: %w", err)
		}
	}
	url, stop, err := startEtcd(ctx, c.etcdBin, dataDir)
	if err != nil {
		return err
	}
	defer stop()

	work, err := os.MkdirTemp(filepath.Dir(dataDir), "bench-snapshot-out-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	module := func(bin string, args map[string]any) *exec.Cmd {
		f := filepath.Join(work, fmt.Sprintf("args-%d.json", time.Now().UnixNano()))
		data, _ := json.Marshal(args)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			panic(err)
		}
		return exec.Command(bin, f)
	}
	arms := []arm{
		{"etcdctl", func(p string) *exec.Cmd {
			return exec.Command(filepath.Join(c.etcdBin, "etcdctl"), "--endpoints="+url, "snapshot", "save", p)
		}},
		{"etcd_snapshot", func(p string) *exec.Cmd {
			return module(c.module, map[string]any{"state": "saved", "path": p, "endpoints": []string{url}})
		}},
		{"discard", func(string) *exec.Cmd { return exec.Command(self, "-discard", url) }},
		{"write", func(p string) *exec.Cmd { return exec.Command(self, "-discard", url, "-write", p) }},
	}
	if c.compare != "" {
		arms = append(arms, arm{"candidate", func(p string) *exec.Cmd {
			return module(c.compare, map[string]any{"state": "saved", "path": p, "endpoints": []string{url}})
		}})
	}
	// A first save with each warms the page cache and checks that all work.
	var size int64
	for _, a := range arms {
		p := filepath.Join(work, "warmup.db")
		m, err := measure(a.cmd(p))
		if err != nil {
			return err
		}
		if a.name == "discard" || a.name == "write" {
			if got, _ := strconv.ParseInt(strings.TrimSpace(string(m.Stdout)), 10, 64); got != size {
				return fmt.Errorf("the discarding client received %d bytes, the saved file has %d", got, size)
			}
			os.Remove(p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		size = st.Size()
		os.Remove(p)
	}

	got := map[string][]measurement{}
	for i := 0; i < c.rounds; i++ {
		// Each round starts with another arm, so that none always meets
		// the server or the cache the same way.
		for j := range arms {
			a := arms[(i+j)%len(arms)]
			p := filepath.Join(work, a.name+".db")
			m, err := measure(a.cmd(p))
			if err != nil {
				return err
			}
			os.Remove(p)
			got[a.name] = append(got[a.name], m)
		}
	}
	fmt.Fprintf(b, "\nsnapshot save of a %.0f MiB database, %s (etcd %s on loopback), %d rounds, %s\n",
		float64(size)/(1<<20), set.name, version(c.etcdBin), c.rounds, time.Now().UTC().Format(time.RFC3339))
	ours, ctl, dis, wr := got["etcd_snapshot"], got["etcdctl"], got["discard"], got["write"]
	for i := range ours {
		fmt.Fprintf(b, "  round %d: discard %5.2fs (cpu %4.2fs)   write %5.2fs (cpu %4.2fs)   etcdctl %5.2fs (cpu %4.2fs) %s   etcd_snapshot %5.2fs (cpu %4.2fs) %s\n", i+1,
			dis[i].Wall.Seconds(), dis[i].CPU.Seconds(), wr[i].Wall.Seconds(), wr[i].CPU.Seconds(),
			ctl[i].Wall.Seconds(), ctl[i].CPU.Seconds(), memOf(ctl[i]),
			ours[i].Wall.Seconds(), ours[i].CPU.Seconds(), memOf(ours[i]))
	}
	fmt.Fprintf(b, "  save / discard:  etcd_snapshot %s   etcdctl %s   write %s\n", ratios(ours, dis), ratios(ctl, dis), ratios(wr, dis))
	fmt.Fprintf(b, "  save / write:    etcd_snapshot %s   etcdctl %s\n", ratios(ours, wr), ratios(ctl, wr))
	fmt.Fprintf(b, "  save / etcdctl:  etcd_snapshot %s\n", ratios(ours, ctl))
	fmt.Fprintf(b, "  peak memory (max over rounds): etcd_snapshot %s, etcdctl %s\n", peak(ours), peak(ctl))
	if cand := got["candidate"]; cand != nil {
		fmt.Fprintf(b, "  candidate: / discard %s, / etcdctl %s, / etcd_snapshot %s, peak %s\n",
			ratios(cand, dis), ratios(cand, ctl), ratios(cand, ours), peak(cand))
	}
	return benchStatus(b, c, work, arms[1].cmd, module)
}

// benchStatus saves one snapshot with etcd_snapshot, checks its numbers
// against `etcdutl snapshot status`, then reads its status with both in
// turn for c.rounds rounds. etcd_snapshot also verifies the sha256 trailer
// and runs bbolt's consistency check (as etcdutl does).
func benchStatus(b *strings.Builder, c config, work string, save func(string) *exec.Cmd, module func(string, map[string]any) *exec.Cmd) error {
	p := filepath.Join(work, "status.db")
	saved, err := measure(save(p))
	if err != nil {
		return err
	}
	defer os.Remove(p)
	etcdutl := func() *exec.Cmd {
		return exec.Command(filepath.Join(c.etcdBin, "etcdutl"), "snapshot", "status", "-w", "json", p)
	}
	status := func(bin string) func() *exec.Cmd {
		return func() *exec.Cmd { return module(bin, map[string]any{"state": "status", "path": p}) }
	}
	progs := []struct {
		name string
		cmd  func() *exec.Cmd
	}{{"etcdutl", etcdutl}, {"etcd_snapshot", status(c.module)}}
	if c.compare != "" {
		progs = append(progs, struct {
			name string
			cmd  func() *exec.Cmd
		}{"candidate", status(c.compare)})
	}
	got := map[string][]measurement{}
	for i := 0; i < c.rounds; i++ {
		for j := range progs {
			pr := progs[(i+j)%len(progs)]
			m, err := measure(pr.cmd())
			if err != nil {
				return err
			}
			got[pr.name] = append(got[pr.name], m)
		}
	}
	mine, theirs := got["etcd_snapshot"], got["etcdutl"]
	if err := sameNumbers(theirs[0].Stdout, saved.Stdout, mine[0].Stdout); err != nil {
		return err
	}
	for i := range mine {
		fmt.Fprintf(b, "  status %d: etcdutl %5.2fs %s   etcd_snapshot %5.2fs %s\n", i+1,
			theirs[i].Wall.Seconds(), memOf(theirs[i]), mine[i].Wall.Seconds(), memOf(mine[i]))
	}
	fmt.Fprintf(b, "  status / etcdutl: etcd_snapshot %s\n", ratios(mine, theirs))
	fmt.Fprintf(b, "  peak memory (max over rounds): etcd_snapshot %s, etcdutl %s\n", peak(mine), peak(theirs))
	if cand := got["candidate"]; cand != nil {
		if err := sameNumbers(theirs[0].Stdout, cand[0].Stdout); err != nil {
			return fmt.Errorf("candidate: %w", err)
		}
		fmt.Fprintf(b, "  candidate: status / etcdutl %s, peak %s\n", ratios(cand, theirs), peak(cand))
	}
	fmt.Fprintf(b, "  etcd_snapshot's save and status return etcdutl's hash, revision and total_keys\n")
	return nil
}

// sameNumbers checks that the module's results (save's and status's) hold
// the hash, revision and total keys that etcdutl printed.
func sameNumbers(etcdutl []byte, results ...[]byte) error {
	var want struct {
		Hash     uint32 `json:"hash"`
		Revision int64  `json:"revision"`
		TotalKey int    `json:"totalKey"`
	}
	if err := json.Unmarshal(etcdutl, &want); err != nil {
		return fmt.Errorf("etcdutl's status %q: %w", etcdutl, err)
	}
	for _, r := range results {
		var got struct {
			Hash      uint32 `json:"hash"`
			Revision  int64  `json:"revision"`
			TotalKeys int    `json:"total_keys"`
		}
		if err := json.Unmarshal(r, &got); err != nil {
			return fmt.Errorf("etcd_snapshot's result %q: %w", r, err)
		}
		if got.Hash != want.Hash || got.Revision != want.Revision || got.TotalKeys != want.TotalKey {
			return fmt.Errorf("etcd_snapshot returned hash %d, revision %d, %d keys; etcdutl %d, %d, %d",
				got.Hash, got.Revision, got.TotalKeys, want.Hash, want.Revision, want.TotalKey)
		}
	}
	return nil
}

// ratios formats the ratios of a's wall times to b's, round by round:
// median (min–max).
func ratios(a, b []measurement) string { return proc.Spread(proc.Ratios(a, b)) }

func memOf(m measurement) string {
	return fmt.Sprintf("anon %3d MiB file %4d MiB", m.Anon>>20, m.File>>20)
}

func peak(ms []measurement) string {
	var p measurement
	for _, m := range ms {
		p.Anon, p.File = max(p.Anon, m.Anon), max(p.File, m.File)
	}
	return memOf(p)
}

// measure runs cmd with proc.Measure; a module that answers failed is an
// error too.
func measure(cmd *exec.Cmd) (measurement, error) {
	m, err := proc.Measure(cmd)
	if err == nil && (bytes.Contains(m.Stdout, []byte(`"failed": true`)) || bytes.Contains(m.Stdout, []byte(`"failed":true`))) {
		err = fmt.Errorf("%s: %s", cmd, m.Stdout)
	}
	return m, err
}

// discardStream receives a snapshot from endpoint, as etcd_snapshot's
// connection does (the same window and buffer sizes), without decoding or
// keeping any of it, and prints how many bytes came: the physical limit
// of a save. With path, it writes every message's bytes to that file, in
// 64 KiB writes as etcd_snapshot does, and fsyncs it: the limit of a save
// that keeps the stream, without hashing or checking it.
func discardStream(endpoint, path string) error {
	conn, err := grpc.NewClient(strings.TrimPrefix(endpoint, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(8<<20), grpc.WithInitialConnWindowSize(8<<20), grpc.WithReadBufferSize(256<<10))
	if err != nil {
		return err
	}
	defer conn.Close()
	codec := discardCodec{CodecV2: encoding.GetCodecV2(proto.Name)}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		codec.w = bufio.NewWriterSize(f, 64<<10)
		defer func() {
			if err := codec.w.Flush(); err == nil {
				f.Sync()
			}
		}()
	}
	stream, err := pb.NewMaintenanceClient(conn).Snapshot(context.Background(), &pb.SnapshotRequest{}, grpc.ForceCodecV2(codec))
	if err != nil {
		return err
	}
	var n discarded
	for {
		if err := stream.RecvMsg(&n); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	fmt.Println(n.blob)
	return nil
}

// discarded counts the blob bytes of the SnapshotResponses received.
type discarded struct{ blob int64 }

// discardCodec counts each response's blob (its length: the message less
// the blob's tag and length, and the remaining_bytes field) and drops it.
type discardCodec struct {
	encoding.CodecV2
	w *bufio.Writer // nil: drop the bytes
}

func (discardCodec) Name() string { return proto.Name }

func (c discardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	d, ok := v.(*discarded)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	d.blob += blobLen(data)
	if c.w != nil {
		for _, b := range data {
			if _, err := c.w.Write(b.ReadOnlyData()); err != nil {
				return err
			}
		}
	}
	return nil
}

// blobLen reads the length of field 3 (blob) of a SnapshotResponse from
// the message's first bytes: field 1 (header) and 2 (remaining_bytes) come
// before it.
func blobLen(data mem.BufferSlice) int64 {
	var head []byte
	for _, b := range data {
		head = append(head, b.ReadOnlyData()[:min(b.Len(), 128-len(head))]...)
		if len(head) == 128 {
			break
		}
	}
	for len(head) > 0 {
		num, typ, n := protowire.ConsumeTag(head)
		if n < 0 {
			return 0
		}
		head = head[n:]
		if num == 3 && typ == protowire.BytesType {
			l, n := protowire.ConsumeVarint(head)
			if n < 0 {
				return 0
			}
			return int64(l)
		}
		if n = protowire.ConsumeFieldValue(num, typ, head); n < 0 {
			return 0
		}
		head = head[n:]
	}
	return 0
}

// startEtcd runs a one-member etcd on a free loopback port over dataDir and
// waits until it serves.
func startEtcd(ctx context.Context, bin, dataDir string) (string, func(), error) {
	client, err := freeport.Pick()
	if err != nil {
		return "", nil, err
	}
	peer, err := freeport.Pick()
	if err != nil {
		return "", nil, err
	}
	url := "http://127.0.0.1:" + client
	cmd := exec.Command(filepath.Join(bin, "etcd"), "--name=bench", "--data-dir="+dataDir,
		"--listen-client-urls="+url, "--advertise-client-urls="+url,
		"--listen-peer-urls=http://127.0.0.1:"+peer, "--initial-advertise-peer-urls=http://127.0.0.1:"+peer,
		"--initial-cluster=bench=http://127.0.0.1:"+peer, "--quota-backend-bytes=8589934592",
		"--log-level=error")
	log, err := os.Create(filepath.Join(filepath.Dir(dataDir), "bench-etcd.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start etcd: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		log.Close()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		stop()
		return "", nil, err
	}
	defer cli.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Status(sctx, url)
		cancel()
		if err == nil {
			return url, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("etcd on %s did not come up: %w (log: %s)", url, err, log.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fill runs etcd on a fresh data directory, fills it with put, then moves
// it into place.
func fill(ctx context.Context, c config, dataDir string, put func(context.Context, *clientv3.Client) error) error {
	tmp := dataDir + ".filling"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	url, stop, err := startEtcd(ctx, c.etcdBin, tmp)
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		stop()
		return err
	}
	err = put(ctx, cli)
	cli.Close()
	stop()
	if err != nil {
		return err
	}
	return os.Rename(tmp, dataDir)
}

// parallel runs work(i) for i in [0, n) on 16 goroutines and returns the
// first error.
func parallel(n int, work func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := work(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	return err
}

// fillLarge writes sizeMiB of 64 KiB random values under distinct keys.
func fillLarge(ctx context.Context, cli *clientv3.Client, sizeMiB int) error {
	const valueSize = 64 << 10
	return parallel(sizeMiB<<20/valueSize, func(i int) error {
		v := make([]byte, valueSize)
		if _, err := io.ReadFull(rand.Reader, v); err != nil {
			return err
		}
		_, err := cli.Put(ctx, fmt.Sprintf("bench/%08d", i), string(v))
		return err
	})
}

// fillSmall writes n keys shaped like Kubernetes registry paths with
// one-byte values, 128 to a transaction (etcd's default limit).
func fillSmall(ctx context.Context, cli *clientv3.Client, n int) error {
	const batch = 128
	return parallel((n+batch-1)/batch, func(i int) error {
		ops := make([]clientv3.Op, 0, batch)
		for k := i * batch; k < min(n, (i+1)*batch); k++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/registry/bench/%08d", k), "v"))
		}
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		return err
	})
}

func version(bin string) string {
	out, err := exec.Command(filepath.Join(bin, "etcd"), "--version").Output()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "etcd Version: "); ok {
			return v
		}
	}
	return "?"
}
