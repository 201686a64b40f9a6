package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/etcdops/etcdops/internal/keycount"
)

// bbolt's consistency check can crash the process on a damaged database:
// it lists the free pages by walking the trees on a goroutine of its own,
// where a bad page number panics or faults with nothing to recover it
// (etcdutl crashes the same way). So status runs the check, and then the
// numbers, in a child process: the same binary, run again with
// checkChildEnv set and the arguments checkChildFlag <path>. A crash
// there is a damaged database here. Every main calls
// RunCheckChildIfAsked first.
const (
	checkChildEnv  = "ETCDOPS_BBOLT_CHECK_CHILD"
	checkChildFlag = "--etcdops-bbolt-check" // a flag: a binary without the hook refuses it at once
)

// checkReport is what the child prints on stdout, as JSON.
type checkReport struct {
	Problems    []string // bbolt's check: the first five
	More        int      // and how many more there were
	Err         string   // why the numbers could not be read
	NotSnapshot bool     // Err is an ErrNotSnapshot
	Status      Status   // the numbers, when there was nothing wrong
}

// RunCheckChildIfAsked runs bbolt's check and the numbers of the database
// named in the arguments, printing a checkReport, when this process was
// started as such a child, and reports whether it was: the caller then
// exits. Call it first in main (and in TestMain).
func RunCheckChildIfAsked() bool {
	if os.Getenv(checkChildEnv) != "1" || len(os.Args) != 3 || os.Args[1] != checkChildFlag {
		return false
	}
	var r checkReport
	err := withDB(os.Args[2], func(db *bolt.DB) error {
		r.Problems, r.More = checkDB(db)
		if len(r.Problems) > 0 {
			return nil
		}
		return r.Status.readNumbers(db, keycount.DefaultLimit)
	})
	if err != nil {
		r.Err, r.NotSnapshot = err.Error(), errors.Is(err, ErrNotSnapshot)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return true
}

// checkInChild runs bbolt's check and reads the numbers of the database
// at path in a child process, and puts the numbers into st.
func (st *Status) checkInChild(ctx context.Context, path string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("run bbolt's check in a child process: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, checkChildFlag, path)
	cmd.Env = append(os.Environ(), checkChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var r checkReport
	if jerr := json.Unmarshal(stdout.Bytes(), &r); runErr != nil || jerr != nil {
		why := firstLine(stderr.String())
		if why == "" {
			why = fmt.Sprint(runErr, jerr)
		}
		return fmt.Errorf("%w: its database is damaged (bbolt's check crashed: %s)", ErrNotSnapshot, why)
	}
	switch {
	case len(r.Problems) > 0:
		if r.More > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("and %d more", r.More))
		}
		return fmt.Errorf("%w: bbolt consistency check failed: %s", ErrNotSnapshot, strings.Join(r.Problems, "; "))
	case r.NotSnapshot:
		return fmt.Errorf("%w%s", ErrNotSnapshot, strings.TrimPrefix(r.Err, ErrNotSnapshot.Error()))
	case r.Err != "":
		return errors.New(r.Err)
	}
	st.Hash, st.Revision, st.TotalKeys = r.Status.Hash, r.Status.Revision, r.Status.TotalKeys
	st.TotalSize, st.Version = r.Status.TotalSize, r.Status.Version
	return nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// checkDB runs bbolt's consistency check (what etcdutl runs before it
// computes its numbers) and returns the first problems it finds, and how
// many more there were.
func checkDB(db *bolt.DB) (problems []string, more int) {
	db.View(func(tx *bolt.Tx) error {
		// Every problem is received: the check's goroutine would otherwise
		// block for ever on its channel.
		for err := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, err.Error())
			} else {
				more++
			}
		}
		return nil
	})
	return problems, more
}
