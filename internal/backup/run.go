package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcdops/etcdops/internal/discover"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/objstore"
	"github.com/etcdops/etcdops/internal/snapdir"
	"github.com/etcdops/etcdops/internal/snapshot"
)

// The keys in etcd through which the members agree.
const (
	LockKey = "/etcdops/backup/lock"
	DoneKey = "/etcdops/backup/last"
)

// Done is the record at DoneKey: the last period backed up, and by whom.
type Done struct {
	Period   time.Time `json:"period"`
	Member   string    `json:"member"`
	Revision int64     `json:"revision"`
	Key      string    `json:"key"`
	Time     time.Time `json:"time"`
}

// PeriodOf is the period a run at now belongs to: now truncated to a
// multiple of period since the zero time, in UTC (6h: 00:00, 06:00, 12:00,
// 18:00 UTC).
func PeriodOf(now time.Time, period time.Duration) time.Time {
	return now.UTC().Truncate(period)
}

// Result is what a run did.
type Result struct {
	Period  time.Time
	Skipped *Done   // the period was done by Skipped.Member
	Taken   *Local  // the snapshot of the period, taken or picked up from a failed run
	Pending []Local // older snapshots uploaded (or found superseded) in this run
	Removed []string
	Pruned  []string // object keys retention deleted
	Aborted []string // unfinished uploads of a member that died, aborted
}

// Line is the one line a run prints.
func (r Result) Line() string {
	if d := r.Skipped; d != nil {
		where := d.Key
		if where == "" {
			where = "kept on that member only"
		}
		return fmt.Sprintf("backup of the period from %s already done by member %s: revision %d, %s",
			r.Period.Format(time.RFC3339), d.Member, d.Revision, where)
	}
	t := r.Taken
	where := t.Object
	if where == "" {
		where = "no store configured"
	}
	return fmt.Sprintf("backup of the period from %s: member %s, revision %d, %d bytes, sha256 %s, %s, %s",
		r.Period.Format(time.RFC3339), t.Member, t.Revision, t.Size, t.SHA256, t.Path, where)
}

// Run is one firing of the schedule on a member.
//
// The rule: exactly one healthy member backs up each period. Each run
// reads DoneKey; if it names this period, the run records that in
// last-run.json and succeeds doing nothing. Otherwise it takes the lock
// LockKey (a concurrency.Mutex held by a lease of LockTTL seconds, kept
// alive while the run lives), waiting at most LockWait for the member that
// holds it, and reads DoneKey again: a member that held the lock before it
// and finished wrote DoneKey, so the waiters then do nothing. The holder
// takes a verified snapshot (or picks up its own snapshot of this period
// that a failed run kept), uploads it and writes DoneKey only while it
// still owns the lock. A holder that dies loses the lock when its lease
// expires, and the next member waiting takes the backup; one whose lease
// expires while it runs is cancelled. A failed run (no snapshot, or the
// store refused or could not be reached) writes no DoneKey: another
// member, or the next firing, tries again.
func Run(ctx context.Context, c Config, now time.Time) (Result, error) {
	res := Result{Period: PeriodOf(now, c.Period)}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return res, fmt.Errorf("local dir: %w", err)
	}
	store, err := c.Store()
	if err != nil {
		return res, err
	}
	if err := discover.FillConn(ctx, &c.Etcd); err != nil {
		return res, err
	}
	cli, err := etcdconn.New(c.Etcd)
	if err != nil {
		return res, err
	}
	defer cli.Close()

	if d, err := readDone(ctx, cli, c.Etcd); err != nil {
		return res, err
	} else if d != nil && d.Period.Equal(res.Period) {
		return skip(c, res, d, now)
	}

	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(c.LockTTL), concurrency.WithContext(ctx))
	if err != nil {
		return res, &etcdconn.Error{Op: "start a lease for the backup lock", Err: err}
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, LockKey)
	lctx, cancel := context.WithTimeout(ctx, c.LockWait)
	err = mu.Lock(lctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return res, fmt.Errorf("another member held the backup lock %s for longer than %s", LockKey, c.LockWait)
		}
		return res, &etcdconn.Error{Op: "take the backup lock " + LockKey, Err: err}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), c.Etcd.DialTimeoutDuration())
		mu.Unlock(uctx)
		cancel()
	}()
	// Work under the lock stops when its lease is lost.
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-sess.Done():
			stop(fmt.Errorf("lost the backup lock: the lease of this run expired (etcd unreachable for %ds)", c.LockTTL))
		case <-rctx.Done():
		}
	}()
	if d, err := readDone(rctx, cli, c.Etcd); err != nil {
		return res, err
	} else if d != nil && d.Period.Equal(res.Period) {
		return skip(c, res, d, now)
	}

	older, current, err := pendingSplit(c, res.Period)
	if err != nil {
		return res, err
	}
	if current == nil {
		if current, err = take(rctx, c, now, res.Period); err != nil {
			return res, causeOf(rctx, err)
		}
	}
	res.Taken = current
	if res.Removed, err = snapdir.Prune(c.Dir, c.Keep, current.Path); err != nil {
		return res, err
	}
	if store != nil {
		if err := upload(rctx, c, store, current); err != nil {
			return res, causeOf(rctx, err)
		}
	}
	// The period is done as soon as its snapshot is in the store: a failure
	// in what follows (earlier periods' uploads, the store's retention) fails
	// the run, but must not make another member take the period again.
	d := Done{Period: res.Period, Member: current.Member, Revision: current.Revision, Key: current.Object, Time: now.UTC()}
	if err := writeDone(rctx, cli, mu, d); err != nil {
		return res, causeOf(rctx, err)
	}
	if store != nil {
		for _, l := range older {
			if err := catchUp(rctx, c, store, &l); err != nil {
				return res, causeOf(rctx, err)
			}
			res.Pending = append(res.Pending, l)
		}
		// After this run's upload, not before it: the upload of a run
		// stopped a moment ago may show in the store's list only later
		// (seen with versitygw after a SIGTERM mid-upload).
		res.Aborted, _ = store.AbortStale(rctx) // best effort: the next run tries again
		if res.Pruned, err = store.Retain(rctx, c.S3Keep); err != nil {
			return res, err
		}
	}
	err = writeJSON(lastSuccess(c), Success{Time: current.Time, Period: res.Period, Member: current.Member,
		Revision: current.Revision, SHA256: current.SHA256, Size: current.Size, LocalPath: current.Path, Object: current.Object})
	return res, err
}

func lastSuccess(c Config) string { return c.Dir + "/" + lastSuccessFile }

// causeOf prefers the reason the run's context was cancelled.
func causeOf(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

func skip(c Config, res Result, d *Done, now time.Time) (Result, error) {
	res.Skipped = d
	return res, writeJSON(c.Dir+"/"+lastRunFile, Skipped{SkippedBy: d.Member, Time: now.UTC(), TakenAt: d.Time, Period: d.Period, Revision: d.Revision, Object: d.Key})
}

func readDone(ctx context.Context, cli *clientv3.Client, o etcdconn.Options) (*Done, error) {
	cctx, cancel := context.WithTimeout(ctx, o.CommandTimeoutDuration())
	defer cancel()
	r, err := cli.Get(cctx, DoneKey)
	if err != nil {
		return nil, &etcdconn.Error{Op: "read " + DoneKey, Err: err}
	}
	if len(r.Kvs) == 0 {
		return nil, nil
	}
	var d Done
	if err := json.Unmarshal(r.Kvs[0].Value, &d); err != nil {
		return nil, fmt.Errorf("%s holds no backup record (%v): delete it with etcdctl del %s", DoneKey, err, DoneKey)
	}
	return &d, nil
}

// writeDone writes the record only while this run owns the lock.
func writeDone(ctx context.Context, cli *clientv3.Client, mu *concurrency.Mutex, d Done) error {
	data, _ := json.Marshal(d)
	r, err := cli.Txn(ctx).If(mu.IsOwner()).Then(clientv3.OpPut(DoneKey, string(data))).Commit()
	if err != nil {
		return &etcdconn.Error{Op: "write " + DoneKey, Err: err}
	}
	if !r.Succeeded {
		return errors.New("lost the backup lock before the backup was recorded")
	}
	return nil
}

// pendingSplit returns this member's snapshots not yet in the store: those
// of earlier periods, and the newest one of this period (a failed run's).
func pendingSplit(c Config, period time.Time) (older []Local, current *Local, err error) {
	if c.S3 == nil {
		return nil, nil, nil
	}
	all, err := pending(c.Dir)
	if err != nil {
		return nil, nil, err
	}
	for i, l := range all {
		if PeriodOf(l.Time, c.Period).Equal(period) {
			current = &all[i]
		} else {
			older = append(older, l)
		}
	}
	return older, current, nil
}

// take saves a verified snapshot from the first healthy member given.
func take(ctx context.Context, c Config, now, period time.Time) (*Local, error) {
	src, err := snapshot.ChooseEndpoint(ctx, c.Etcd)
	if err != nil {
		return nil, err
	}
	member := c.Member
	h := src.Status.Header
	if member == "" {
		if member, err = memberName(ctx, c.Etcd, src.Endpoint, h.MemberId); err != nil {
			return nil, err
		}
	}
	bulk, err := etcdconn.NewBulk(c.Etcd, src.Endpoint)
	if err != nil {
		return nil, err
	}
	defer bulk.Close()
	path := snapdir.NewName(c.Dir, now)
	st, err := snapshot.SaveVerified(ctx, bulk, src.Endpoint, path, 0o600, c.Etcd.CommandTimeoutDuration())
	if err != nil {
		return nil, err
	}
	l := &Local{Path: path, Time: now.UTC().Truncate(time.Second), Period: period, Member: member, Revision: st.Revision,
		SHA256: st.SHA256, Size: st.Size, ClusterID: fmt.Sprintf("%x", h.ClusterId), EtcdVersion: src.Status.Version}
	if c.S3 != nil {
		if err := markPending(*l); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("record the snapshot as pending: %w", err)
		}
	}
	return l, nil
}

func memberName(ctx context.Context, o etcdconn.Options, endpoint string, id uint64) (string, error) {
	cli, err := etcdconn.New(o, endpoint)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, o.CommandTimeoutDuration())
	defer cancel()
	r, err := cli.MemberList(cctx)
	if err != nil {
		return "", &etcdconn.Error{Op: "list the members", Err: err}
	}
	for _, m := range r.Members {
		if m.ID == id && m.Name != "" {
			return m.Name, nil
		}
	}
	return fmt.Sprintf("%x", id), nil
}

// upload puts a local snapshot into the store and marks it uploaded.
func upload(ctx context.Context, c Config, store *objstore.Store, l *Local) error {
	key, err := store.Key(l.Time, l.Member, c.Layers)
	if err != nil {
		return err
	}
	o, err := store.Upload(ctx, key, l.Path, c.Layers, objstore.Meta{SHA256: l.SHA256, Revision: l.Revision,
		Member: l.Member, ClusterID: l.ClusterID, EtcdVersion: l.EtcdVersion})
	if err != nil {
		return fmt.Errorf("%w; the snapshot is kept in %s and the next run uploads it", err, l.Path)
	}
	l.Object = o.URL
	return markUploaded(*l)
}

// catchUp uploads an earlier period's snapshot unless the store has one of
// that period already (another member's).
func catchUp(ctx context.Context, c Config, store *objstore.Store, l *Local) error {
	objs, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if PeriodOf(o.Time, c.Period).Equal(PeriodOf(l.Time, c.Period)) {
			l.SupersededBy = o.URL
			return markUploaded(*l)
		}
	}
	return upload(ctx, c, store, l)
}
