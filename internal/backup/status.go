package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Report is what the etcd_backup module's state=status says of a member.
type Report struct {
	LastSuccess *Success `json:"last_success"`
	LastSkipped *Skipped `json:"last_skipped"`
	// Ages in seconds, nil when there is no such backup.
	LocalNewestAge  *float64 `json:"local_newest_age_seconds"`
	LocalNewest     string   `json:"local_newest"`
	RemoteNewestAge *float64 `json:"remote_newest_age_seconds"`
	RemoteNewest    string   `json:"remote_newest"`
	// The cluster's newest backup as this member knows it: the store's
	// newest with a store, else the newer of this member's own snapshot and
	// the one another member recorded taking (last-run.json).
	NewestAge *float64 `json:"newest_age_seconds"`
	TooOld    bool     `json:"too_old"`
	Message   string   `json:"message"`
}

// Status reads the state files, the local directory and (with a store) the
// store's newest object, and judges the newest backup against maxAge
// (0: no judgement).
func Status(ctx context.Context, c Config, now time.Time, maxAge time.Duration) (Report, error) {
	var r Report
	var s Success
	if ok, err := readJSON(filepath.Join(c.Dir, lastSuccessFile), &s); err != nil {
		return r, err
	} else if ok {
		r.LastSuccess = &s
	}
	var k Skipped
	if ok, err := readJSON(filepath.Join(c.Dir, lastRunFile), &k); err != nil {
		return r, err
	} else if ok {
		r.LastSkipped = &k
	}
	age := func(t time.Time) *float64 { a := now.Sub(t).Seconds(); return &a }
	if t, path, ok := newestLocal(c.Dir); ok {
		r.LocalNewestAge, r.LocalNewest = age(t), path
	}
	store, err := c.Store()
	if err != nil {
		return r, err
	}
	if store != nil {
		objs, err := store.List(ctx)
		if err != nil {
			return r, err
		}
		if len(objs) > 0 {
			r.RemoteNewestAge, r.RemoteNewest = age(objs[0].Time), objs[0].URL
		}
		r.NewestAge = r.RemoteNewestAge
	} else {
		r.NewestAge = r.LocalNewestAge
		if r.LastSkipped != nil && (r.NewestAge == nil || *age(r.LastSkipped.Time) < *r.NewestAge) {
			r.NewestAge = age(r.LastSkipped.Time)
		}
	}
	where := "in the store"
	if store == nil {
		where = "known to this member (no store configured)"
	}
	switch {
	case r.NewestAge == nil:
		r.Message = "no backup " + where
		r.TooOld = maxAge > 0
	default:
		a := time.Duration(*r.NewestAge * float64(time.Second)).Round(time.Second)
		r.Message = fmt.Sprintf("the newest backup %s is %s old", where, a)
		if maxAge > 0 && a > maxAge {
			r.TooOld = true
			r.Message += fmt.Sprintf(", older than the %s allowed", maxAge)
		}
	}
	return r, nil
}
