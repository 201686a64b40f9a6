// Package proc runs a benchmark's program and measures it: wall and CPU
// time, and the peaks of the anonymous and the file-backed resident memory
// of it and its descendants, polled every 10 ms from /proc until it exits.
// (wait4's ru_maxrss of a child started by os/exec counts the parent's RSS
// too, so it is not used.)
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Run is one measured run of a program.
type Run struct {
	Wall   time.Duration
	CPU    time.Duration // user + system, its children's included
	Anon   int64         // peak RssAnon of the program and its descendants, bytes
	File   int64         // peak RssFile (mapped page cache), the same way
	Stdout []byte
}

// Measure starts cmd, waits for it and measures it. A program that exits
// with an error is an error that names it and holds what it printed.
func Measure(cmd *exec.Cmd) (Run, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Run{}, err
	}
	var r Run
	done := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			anon, file := TreeRSS(cmd.Process.Pid)
			r.Anon, r.File = max(r.Anon, anon), max(r.File, file)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	r.Wall = time.Since(start)
	close(done)
	<-polled
	r.Stdout = stdout.Bytes()
	if err != nil {
		return r, fmt.Errorf("%s: %w\n%s%s", cmd, err, stdout.Bytes(), stderr.Bytes())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return r, errors.New("no rusage")
	}
	r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return r, nil
}

// TreeRSS sums RssAnon and RssFile of pid and its descendants, now (zero
// for a process that is gone).
func TreeRSS(pid int) (anon, file int64) {
	fields := statusFields(pid)
	anon, file = fields["RssAnon"], fields["RssFile"]
	// A Go program may start a child from any of its threads.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(f); err == nil {
				a, f := TreeRSS(child)
				anon, file = anon+a, file+f
			}
		}
	}
	return anon, file
}

// Ratios is the ratios of a's wall times to b's, round by round, sorted.
func Ratios(a, b []Run) []float64 {
	var r []float64
	for i := range a {
		r = append(r, a[i].Wall.Seconds()/b[i].Wall.Seconds())
	}
	slices.Sort(r)
	return r
}

// Spread formats sorted ratios: median (min–max).
func Spread(r []float64) string {
	return fmt.Sprintf("%.2f (%.2f–%.2f)", r[len(r)/2], r[0], r[len(r)-1])
}

// MedianWall is the median of the runs' wall times.
func MedianWall(runs []Run) time.Duration {
	var d []time.Duration
	for _, r := range runs {
		d = append(d, r.Wall)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// Status reads one memory field of /proc/<pid>/status (VmHWM, RssAnon, …),
// in bytes; zero for a process that is gone or a field it does not have.
func Status(pid int, field string) int64 { return statusFields(pid)[field] }

// statusFields reads /proc/<pid>/status: each field's value as a number,
// the ones in kB as bytes (nil for a process that is gone).
func statusFields(pid int) map[string]int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	fields := map[string]int64{}
	for _, line := range strings.Split(string(status), "\n") {
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		kb, isKB := strings.CutSuffix(value, " kB")
		n, err := strconv.ParseInt(kb, 10, 64)
		if err != nil {
			continue
		}
		if isKB {
			n <<= 10
		}
		fields[name] = n
	}
	return fields
}
