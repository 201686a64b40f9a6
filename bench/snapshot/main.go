// Command snapshot is the benchmark of etcd_snapshot's save against
// `etcdctl snapshot save` (`make bench`): both take a snapshot of the same
// database from a real etcd process on loopback, alternating, for several
// rounds. It reports the wall-time ratio (ours / etcdctl) of each round,
// their min/median/max, and the peak RSS of each program; then the time and
// peak RSS of reading one file's status with each (`etcdutl snapshot
// status` on etcd's side). Not a timed test: it prints figures and fails
// only when a run fails.
//
// Two databases: ~1 GiB of 64 KiB values, the one the targets are
// set on, and two million small keys, where the work etcd_snapshot does
// and etcdctl does not (etcdutl's hash, revision and key count) is
// proportional to the number of keys, not of bytes. Each is filled once
// and cached; every round starts from the same files in the page cache for
// both programs.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

type config struct {
	sizeMiB   int
	smallKeys int
	rounds    int
	etcdBin   string
	module    string
	cacheDir  string
	out       string
}

func main() {
	var c config
	flag.IntVar(&c.sizeMiB, "size", 1024, "database size to fill, MiB")
	flag.IntVar(&c.smallKeys, "small-keys", 2_000_000, "keys in the second database, of small keys (0: skip it)")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds (each saves once with either program)")
	flag.StringVar(&c.etcdBin, "etcd-bin", envOr("ETCD_BIN_DIR", "bin"), "directory with etcd and etcdctl")
	flag.StringVar(&c.module, "module", "library/etcd_snapshot", "the etcd_snapshot binary module")
	flag.StringVar(&c.cacheDir, "cache", "/var/cache/etcd-lab", "where the filled database is kept between runs")
	flag.StringVar(&c.out, "out", "build/bench-snapshot.txt", "report file (also printed)")
	flag.Parse()
	if err := run(context.Background(), c); err != nil {
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

// measurement is one program's run: wall time and peak resident memory.
type measurement struct {
	wall   time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // bytes
}

// dataset is one database the benchmark saves.
type dataset struct {
	name    string
	dir     string
	fill    func(ctx context.Context, cli *clientv3.Client) error
	targets bool // the targets apply to it
}

func run(ctx context.Context, c config) error {
	sets := []dataset{{
		name:    fmt.Sprintf("%d MiB of 64 KiB values", c.sizeMiB),
		dir:     filepath.Join(c.cacheDir, fmt.Sprintf("bench-snapshot-%dm", c.sizeMiB)),
		fill:    func(ctx context.Context, cli *clientv3.Client) error { return fillLarge(ctx, cli, c.sizeMiB) },
		targets: true,
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

// runSet fills the dataset's database once (it is cached), then saves it
// with both programs for c.rounds rounds and reads one file's status with
// both, appending its report to b.
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
	etcdctl := func(path string) *exec.Cmd {
		return exec.Command(filepath.Join(c.etcdBin, "etcdctl"), "--endpoints="+url, "snapshot", "save", path)
	}
	ours := func(path string) *exec.Cmd {
		args := filepath.Join(work, "args.json")
		data, _ := json.Marshal(map[string]any{"state": "saved", "path": path, "endpoints": []string{url}})
		if err := os.WriteFile(args, data, 0o600); err != nil {
			panic(err)
		}
		return exec.Command(c.module, args)
	}
	// A first save of each warms the page cache and checks that both work.
	var size int64
	for _, mk := range []func(string) *exec.Cmd{etcdctl, ours} {
		p := filepath.Join(work, "warmup.db")
		if _, err := measure(mk(p)); err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		size = st.Size()
		os.Remove(p)
	}

	var ratios []float64
	var theirs, mine []measurement
	for i := 0; i < c.rounds; i++ {
		// Alternate who goes first, so neither always meets a cache the
		// other has just warmed.
		order := []string{"etcdctl", "etcd_snapshot"}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		got := map[string]measurement{}
		for _, who := range order {
			p := filepath.Join(work, who+".db")
			mk := etcdctl
			if who == "etcd_snapshot" {
				mk = ours
			}
			m, err := measure(mk(p))
			if err != nil {
				return err
			}
			os.Remove(p)
			got[who] = m
		}
		theirs, mine = append(theirs, got["etcdctl"]), append(mine, got["etcd_snapshot"])
		ratios = append(ratios, got["etcd_snapshot"].wall.Seconds()/got["etcdctl"].wall.Seconds())
	}

	target := func(t string) string {
		if set.targets {
			return " (target " + t + ")"
		}
		return ""
	}
	fmt.Fprintf(b, "snapshot save of a %.0f MiB database, %s (etcd %s on loopback), %d rounds, %s\n",
		float64(size)/(1<<20), set.name, version(c.etcdBin), c.rounds, time.Now().UTC().Format(time.RFC3339))
	for i := range ratios {
		fmt.Fprintf(b, "  round %d: etcdctl %5.2fs (cpu %4.2fs) %3d MiB   etcd_snapshot %5.2fs (cpu %4.2fs) %3d MiB   ratio %.3f\n", i+1,
			theirs[i].wall.Seconds(), theirs[i].cpu.Seconds(), theirs[i].maxRSS>>20,
			mine[i].wall.Seconds(), mine[i].cpu.Seconds(), mine[i].maxRSS>>20, ratios[i])
	}
	sorted := slices.Sorted(slices.Values(ratios))
	fmt.Fprintf(b, "wall-time ratio etcd_snapshot/etcdctl: min %.3f median %.3f max %.3f%s\n",
		sorted[0], sorted[len(sorted)/2], sorted[len(sorted)-1], target("<= 1.05"))
	fmt.Fprintf(b, "peak RSS: etcd_snapshot %d MiB%s, etcdctl %d MiB\n", peak(mine)>>20, target("<= 64"), peak(theirs)>>20)
	return benchStatus(b, c, work, ours)
}

// benchStatus reads the status of one snapshot file with etcd_snapshot
// (state=status) and with `etcdutl snapshot status`, twice each, and
// reports the wall time and peak RSS of each. etcd_snapshot also verifies
// the sha256 trailer, which etcdutl does not.
func benchStatus(b *strings.Builder, c config, work string, save func(string) *exec.Cmd) error {
	p := filepath.Join(work, "status.db")
	if _, err := measure(save(p)); err != nil {
		return err
	}
	defer os.Remove(p)
	args := filepath.Join(work, "status-args.json")
	data, _ := json.Marshal(map[string]any{"state": "status", "path": p})
	if err := os.WriteFile(args, data, 0o600); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		ours, err := measure(exec.Command(c.module, args))
		if err != nil {
			return err
		}
		theirs, err := measure(exec.Command(filepath.Join(c.etcdBin, "etcdutl"), "snapshot", "status", p))
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "  status %d: etcdutl %5.2fs %4d MiB   etcd_snapshot %5.2fs %4d MiB\n", i+1,
			theirs.wall.Seconds(), theirs.maxRSS>>20, ours.wall.Seconds(), ours.maxRSS>>20)
	}
	return nil
}

func peak(ms []measurement) int64 {
	var p int64
	for _, m := range ms {
		p = max(p, m.maxRSS)
	}
	return p
}

// measure runs cmd and returns its wall time and peak RSS (from wait4).
func measure(cmd *exec.Cmd) (measurement, error) {
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w\n%s", cmd, err, out)
	}
	if strings.Contains(string(out), `"failed": true`) || strings.Contains(string(out), `"failed":true`) {
		return measurement{}, fmt.Errorf("%s: %s", cmd, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return measurement{}, errors.New("no rusage")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return measurement{wall: wall, cpu: cpu, maxRSS: ru.Maxrss << 10}, nil
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

// startEtcd runs a one-member etcd on a free loopback port over dataDir and
// waits until it serves.
func startEtcd(ctx context.Context, bin, dataDir string) (string, func(), error) {
	client, peer := freePort(), freePort()
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

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}
