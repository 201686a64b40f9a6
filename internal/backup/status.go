package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdops/etcdops/internal/objstore"
)

// Backup is one backup as the etcd_backup module's state=status reports it.
type Backup struct {
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
	Revision   int64     `json:"revision"`
	SHA256     string    `json:"sha256"`
	Size       int64     `json:"size"`
	Member     string    `json:"member"`
	Path       string    `json:"path,omitempty"` // a local snapshot
	URL        string    `json:"url,omitempty"`  // an object
	// Source says where this was read: "local directory", "bucket", or
	// "state file" (what the last run recorded, when the bucket is not
	// configured or did not answer).
	Source string `json:"source"`
}

// Report is what state=status says of a member (or, without a local
// directory, of the bucket alone).
type Report struct {
	Local       *Backup  `json:"local"`
	Remote      *Backup  `json:"remote"`
	LastSuccess *Success `json:"last_success"`
	LastSkipped *Skipped `json:"last_skipped"`
	// NewestAge is the age of the cluster's newest backup as this member
	// knows it: the bucket's newest with a bucket (or, when it did not
	// answer, the newest object the state files name), else the newer of
	// this member's own snapshot and the one another member recorded
	// taking. Nil when there is none.
	NewestAge *float64 `json:"newest_age_seconds"`
	// Stale: maxAge was given and the newest backup is older, or there is
	// none.
	Stale   bool   `json:"stale"`
	Message string `json:"msg"`
	// Warning says why the bucket could not be read ("" when it was).
	Warning string `json:"-"`
}

// Status reads the state files and the snapshots of dir (none when dir is
// ""), the newest object of store (when not nil), and judges the newest
// backup against maxAge (0: no judgement). A bucket that does not answer is
// a warning, not an error: the state files then say what was uploaded last.
func Status(ctx context.Context, dir string, store *objstore.Store, now time.Time, maxAge time.Duration) (Report, error) {
	var r Report
	age := func(t time.Time) float64 { return now.Sub(t).Seconds() }
	if dir != "" {
		if err := readState(dir, &r); err != nil {
			return r, err
		}
		if l := newestLocalBackup(dir, r.LastSuccess); l != nil {
			l.AgeSeconds = age(l.Time)
			r.Local = l
		}
	}
	var remoteErr error
	if store != nil {
		objs, err := store.List(ctx)
		switch {
		case answered(err):
			// The store answered no (credentials, bucket): not a
			// passing outage.
			return r, err
		case err != nil:
			remoteErr = err
			r.Warning = fmt.Sprintf("the bucket could not be read (%v): the remote backup is what this member's state files recorded", err)
		case len(objs) > 0:
			o := objs[0]
			r.Remote = &Backup{Time: o.Time, Revision: o.Revision, SHA256: o.SHA256, Size: o.Size, Member: o.Member, URL: o.URL, Source: "bucket"}
		}
	}
	if store == nil || remoteErr != nil {
		r.Remote = recordedRemote(r.LastSuccess, r.LastSkipped)
	}
	if r.Remote != nil {
		r.Remote.AgeSeconds = age(r.Remote.Time)
	}

	newest := func(ts ...*time.Time) {
		for _, t := range ts {
			if t != nil && (r.NewestAge == nil || age(*t) < *r.NewestAge) {
				a := age(*t)
				r.NewestAge = &a
			}
		}
	}
	where := "in the bucket"
	switch {
	case store != nil:
		if r.Remote != nil {
			newest(&r.Remote.Time)
		}
		if remoteErr != nil {
			where = "recorded as uploaded (the bucket did not answer)"
		}
	default:
		where = "known to this member (no bucket configured)"
		if r.Local != nil {
			newest(&r.Local.Time)
		}
		if k := r.LastSkipped; k != nil {
			t := k.TakenAt
			if t.IsZero() {
				t = k.Time
			}
			newest(&t)
		}
	}
	switch {
	case r.NewestAge == nil:
		r.Message = "no backup " + where
		r.Stale = maxAge > 0
	default:
		a := time.Duration(*r.NewestAge * float64(time.Second)).Round(time.Second)
		r.Message = fmt.Sprintf("the newest backup %s is %s old", where, a)
		if maxAge > 0 && a > maxAge {
			r.Stale = true
			r.Message += fmt.Sprintf(", older than the %s allowed", maxAge)
		}
	}
	if dir != "" && r.Local == nil {
		r.Message += "; no local snapshot on this member"
	}
	if r.Local != nil {
		r.Message += fmt.Sprintf("; this member's newest local snapshot is %s old", time.Duration(r.Local.AgeSeconds*float64(time.Second)).Round(time.Second))
	}
	return r, nil
}

// answered reports whether err is the store's own refusal.
func answered(err error) bool {
	var e *objstore.Error
	return errors.As(err, &e) && e.Code != ""
}

func readState(dir string, r *Report) error {
	var s Success
	if ok, err := readJSON(filepath.Join(dir, lastSuccessFile), &s); err != nil {
		return err
	} else if ok {
		r.LastSuccess = &s
	}
	var k Skipped
	if ok, err := readJSON(filepath.Join(dir, lastRunFile), &k); err != nil {
		return err
	} else if ok {
		r.LastSkipped = &k
	}
	return nil
}

// newestLocalBackup describes the newest snapshot in dir, with what its
// companion file (or the last success) says of it.
func newestLocalBackup(dir string, last *Success) *Backup {
	t, path, ok := newestLocal(dir)
	if !ok {
		return nil
	}
	b := &Backup{Time: t, Path: path, Source: "local directory"}
	if info, err := os.Stat(path); err == nil {
		b.Size = info.Size()
	}
	for _, ext := range []string{uploadedExt, pendingExt} {
		var l Local
		if ok, err := readJSON(companion(path, ext), &l); ok && err == nil {
			b.Time, b.Revision, b.SHA256, b.Member = l.Time, l.Revision, l.SHA256, l.Member
			return b
		}
	}
	if last != nil && last.LocalPath == path {
		b.Time, b.Revision, b.SHA256, b.Member = last.Time, last.Revision, last.SHA256, last.Member
	}
	return b
}

// recordedRemote is the newest object the state files name.
func recordedRemote(s *Success, k *Skipped) *Backup {
	var b *Backup
	if s != nil && s.Object != "" {
		b = &Backup{Time: s.Time, Revision: s.Revision, SHA256: s.SHA256, Size: s.Size, Member: s.Member, URL: s.Object, Source: "state file"}
	}
	if k != nil && k.Object != "" {
		t, ok := objstore.KeyTime(k.Object)
		if !ok {
			t = k.TakenAt
		}
		if b == nil || t.After(b.Time) {
			b = &Backup{Time: t, Revision: k.Revision, Member: k.SkippedBy, URL: k.Object, Source: "state file"}
		}
	}
	return b
}

// MaxAge reads a max_age option: "" is none; else a duration like 12h,
// 90m, 7d or a number of seconds, more than zero.
func MaxAge(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	d, err := duration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("max_age %q: give a duration like 12h, 90m or 7d", s)
	}
	return d, nil
}
