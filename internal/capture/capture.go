// Package capture records every change made to an etcd cluster into a
// change log chain (internal/changelog), continuously: it watches the whole
// keyspace, groups the events of each revision into a Txn, and stores them
// in segments, flushed at least every Options.MaxInterval (the bound on the
// changes a crash of kopsdr can lose) or sooner once Options.MaxBytes of
// changes wait.
//
// Exactly once: Run resumes at the chain's last durable revision plus one,
// which etcd still holds unless it compacted past it (then the chain ends),
// and it refuses any revision from the watch that is not the one after the
// last it received. A revision is durable once its segment is stored; a
// killed Run loses only what it had not stored, and the next Run reads it
// again from etcd.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
)

// Defaults of Options.
const (
	DefaultMaxInterval = 5 * time.Second
	DefaultMaxBytes    = 4 << 20
	DefaultHeadEvery   = 10 * time.Second
)

// Options tunes Run. Zero values take the defaults.
type Options struct {
	// MaxInterval: pending changes are stored at least this often (the
	// bound on what a crash loses). Default 5s.
	MaxInterval time.Duration
	// MaxBytes: pending changes are stored sooner once their keys and
	// values reach this many bytes. Memory is bounded by about MaxBytes
	// plus one watch response (and see Run on a slow store). Default 4 MiB.
	MaxBytes int
	// HeadEvery: head.json is written at least this often while etcd
	// answers, also when nothing changes. Default 10s.
	HeadEvery time.Duration
	// Durable is called after each segment and head write with the newest
	// durable revision and the time it was observed; the activity
	// heartbeats it. Called from Run's goroutine. Nothing calls it while
	// etcd or the store do not answer.
	Durable func(h changelog.Head)
	// OnSegment, when set, is called after each segment is stored (for
	// metrics and benchmarks), from Run's goroutine.
	OnSegment func(SegmentStats)
	// Logger gets what Run retries; nil discards it.
	Logger *slog.Logger
}

// SegmentStats describes one stored segment.
type SegmentStats struct {
	Segment  changelog.SegmentInfo
	RawBytes int       // keys and values in it
	Durable  time.Time // when its Put returned
	// Lag is Durable minus the observed time of its oldest and newest txn.
	MaxLag, MinLag time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxInterval <= 0 {
		o.MaxInterval = DefaultMaxInterval
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.HeadEvery <= 0 {
		o.HeadEvery = DefaultHeadEvery
	}
	if o.Durable == nil {
		o.Durable = func(changelog.Head) {}
	}
	if o.OnSegment == nil {
		o.OnSegment = func(SegmentStats) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Ended says the chain cannot continue: etcd compacted past the revision
// capture has to resume at (changelog.EndCompacted), or it is another
// cluster, or one whose history was rewound (changelog.EndClusterChanged).
// Everything up to LastRevision is durable.
type Ended struct {
	Reason       string
	LastRevision int64
	Detail       string
}

func (e *Ended) Error() string {
	return fmt.Sprintf("change log chain ended (%s) after revision %d: %s", e.Reason, e.LastRevision, e.Detail)
}

// Tuning that is not worth an option.
const (
	storeAttempts  = 5                      // per segment or head write
	storeBackoff   = 500 * time.Millisecond // doubled per retry
	watchBackoff   = 100 * time.Millisecond // first wait before watching again
	maxWatchWait   = 5 * time.Second
	checkTimeout   = 15 * time.Second
	opOverhead     = 16 // bytes counted per op besides key and value
	watchRangeFrom = "\x00"
)

// Run captures into the existing, open chain chainID of store s until ctx
// ends (it returns ctx.Err()) or the chain cannot continue (it returns
// *Ended, see errors.As, after storing what it had received). It does not
// write end.json: the caller does, once it has started a new chain. It
// resumes at OpenChain's LastRevision+1, so a killed or retried Run never
// misses or repeats a revision. It returns other errors when the store
// keeps failing or the watch breaks its promises (a skipped or repeated
// revision); a new Run resumes from the store.
//
// Cluster ids are compared as changelog.FormatClusterID renders them.
// Unflushed changes are not stored when ctx ends: etcd keeps them, and the
// next Run reads them again. While a segment is being stored the etcd
// client buffers what the watch delivers (it has no flow control), so a
// store much slower than the change rate grows memory beyond MaxBytes.
//
// Only one Run may write a chain at a time. Two (an activity Temporal
// thought dead, and its retry) produce overlapping segments that
// changelog.ListChains resolves, but head.json may go back for a while.
func Run(ctx context.Context, cli *clientv3.Client, s backupstore.Store, chainID string, opts Options) error {
	st, err := changelog.OpenChain(ctx, s, chainID)
	if err != nil {
		return fmt.Errorf("capture: opening chain %s: %w", chainID, err)
	}
	if st.End != nil {
		return &Ended{Reason: st.End.Reason, LastRevision: st.End.LastRevision, Detail: "the chain already ended: " + st.End.Detail}
	}
	if st.ClusterID == "" {
		return fmt.Errorf("capture: chain %s records no etcd cluster id", chainID)
	}
	r := &runner{
		cli:      cli,
		store:    s,
		chain:    st.Chain,
		o:        opts.withDefaults(),
		durable:  st.LastRevision,
		received: st.LastRevision,
	}
	if st.Head != nil && st.Head.Revision == st.LastRevision {
		r.lastHead = *st.Head
	}
	r.log = r.o.Logger.With("chain", chainID)
	return r.run(ctx)
}

type runner struct {
	cli   *clientv3.Client
	store backupstore.Store
	chain changelog.Chain
	o     Options
	log   *slog.Logger

	durable  int64 // every revision up to it is stored
	received int64 // the newest revision the watch delivered (>= durable)

	pending      []changelog.Txn // durable+1 .. received
	pendingBytes int
	flushAt      time.Time // when the pending changes must be stored

	lastHead      changelog.Head
	lastHeadWrite time.Time // zero: write one as soon as possible
}

// retryable is a watch that ended in a way watching again fixes.
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

func (r *runner) run(ctx context.Context) error {
	wait := watchBackoff
	for {
		err := r.check(ctx)
		if err == nil {
			err = r.watch(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ended *Ended
		if errors.As(err, &ended) {
			// What was received before is still this chain's.
			if ferr := r.flush(ctx); ferr != nil {
				return ferr
			}
			ended.LastRevision = r.durable
			return ended
		}
		var again *retryable
		if !errors.As(err, &again) {
			return err
		}
		if errors.Is(err, errWatchHealthy) {
			wait = watchBackoff
		}
		r.log.Info("watching etcd again", "from", r.received+1, "pending", len(r.pending), "after", wait, "error", err)
		// A watch that breaks often must not hold pending changes forever.
		if len(r.pending) > 0 && !time.Now().Before(r.flushAt) {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWatchWait)
	}
}

// errWatchHealthy is a watch that delivered before it broke: watch again
// without a long wait.
var errWatchHealthy = &retryable{errors.New("watch ended after delivering")}

// check reads etcd's cluster id and revision linearizably, before watching:
// another cluster, or one whose revision is behind what this chain already
// received (restored from a backup under the same id), cannot continue the
// chain.
func (r *runner) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	resp, err := r.cli.Get(cctx, watchRangeFrom, clientv3.WithCountOnly())
	if err != nil {
		return &retryable{fmt.Errorf("reading etcd's cluster id and revision: %w", err)}
	}
	if err := r.checkCluster(resp.Header.GetClusterId()); err != nil {
		return err
	}
	if rev := resp.Header.GetRevision(); rev < r.received {
		return &Ended{Reason: changelog.EndClusterChanged,
			Detail: fmt.Sprintf("etcd cluster %s is at revision %d, behind revision %d the chain already holds: its data was restored or replaced", r.chain.ClusterID, rev, r.received)}
	}
	return nil
}

func (r *runner) checkCluster(id uint64) error {
	if id == 0 {
		return nil // a header without one: nothing to compare
	}
	if got := changelog.FormatClusterID(id); got != r.chain.ClusterID {
		return &Ended{Reason: changelog.EndClusterChanged,
			Detail: fmt.Sprintf("etcd answers as cluster %s, the chain was captured from cluster %s", got, r.chain.ClusterID)}
	}
	return nil
}

// watch watches everything after the last received revision until the
// watch ends, ctx ends, or the chain cannot continue.
func (r *runner) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := r.cli.Watch(wctx, watchRangeFrom, clientv3.WithFromKey(), clientv3.WithRev(r.received+1),
		clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())

	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	defer flushTimer.Stop()
	armFlush := func() {
		if len(r.pending) > 0 {
			flushTimer.Reset(time.Until(r.flushAt))
		} else {
			flushTimer.Stop()
		}
	}
	armFlush()
	tick := time.NewTicker(max(r.o.HeadEvery/4, 10*time.Millisecond))
	defer tick.Stop()
	delivered := false

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()

		case resp, ok := <-wch:
			if !ok {
				if delivered {
					return errWatchHealthy
				}
				return &retryable{errors.New("the watch closed")}
			}
			n := len(resp.Events)
			if err := r.handle(ctx, wctx, &resp); err != nil {
				if delivered {
					var again *retryable
					if errors.As(err, &again) {
						r.log.Info("watch ended", "error", err)
						return errWatchHealthy
					}
				}
				return err
			}
			delivered = delivered || n > 0
			if r.pendingBytes >= r.o.MaxBytes {
				if err := r.flush(ctx); err != nil {
					return err
				}
			}
			armFlush()

		case <-flushTimer.C:
			if err := r.flush(ctx); err != nil {
				return err
			}
			armFlush()

		case <-tick.C:
			if !r.headDue() {
				continue
			}
			if len(r.pending) > 0 {
				// Store them now; the head follows the segment.
				if err := r.flush(ctx); err != nil {
					return err
				}
				armFlush()
				continue
			}
			if err := r.idleHead(ctx); err != nil {
				return err
			}
		}
	}
}

// handle takes one watch response.
func (r *runner) handle(ctx, wctx context.Context, resp *clientv3.WatchResponse) error {
	if err := r.checkCluster(resp.Header.GetClusterId()); err != nil {
		return err
	}
	if resp.CompactRevision != 0 {
		return &Ended{Reason: changelog.EndCompacted,
			Detail: fmt.Sprintf("etcd compacted its history up to revision %d; the chain needs revision %d on", resp.CompactRevision, r.received+1)}
	}
	if resp.Canceled || resp.Err() != nil {
		err := resp.Err()
		if err == nil {
			err = errors.New("the watch was cancelled")
		}
		return &retryable{fmt.Errorf("watch cancelled: %w", err)}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if resp.Created {
		if r.headDue() && len(r.pending) == 0 {
			if err := r.cli.RequestProgress(wctx); err != nil && ctx.Err() == nil {
				r.log.Info("requesting watch progress", "error", err)
			}
		}
		return nil
	}
	if resp.IsProgressNotify() {
		rev := resp.Header.GetRevision()
		switch {
		case rev > r.received:
			// etcd says it sent everything up to rev, yet revisions are
			// missing. The next event would show the gap; claim nothing.
			r.log.Warn("watch progress ahead of the events received", "progress", rev, "received", r.received)
		case len(r.pending) == 0 && rev == r.durable && r.headDue():
			return r.writeHead(ctx, changelog.Head{Revision: rev, Observed: now})
		}
		return nil
	}
	var cur *changelog.Txn
	for _, ev := range resp.Events {
		kv := ev.Kv
		if kv == nil {
			return fmt.Errorf("capture: watch event without a key after revision %d", r.received)
		}
		if cur == nil || kv.ModRevision != cur.Revision {
			if kv.ModRevision != r.received+1 {
				return fmt.Errorf("capture: the watch delivered revision %d after revision %d: a revision would be skipped or repeated", kv.ModRevision, r.received)
			}
			if len(r.pending) == 0 {
				r.flushAt = now.Add(r.o.MaxInterval)
			}
			r.pending = append(r.pending, changelog.Txn{Revision: kv.ModRevision, Observed: now})
			r.received = kv.ModRevision
			cur = &r.pending[len(r.pending)-1]
		}
		op := changelog.Op{Key: kv.Key}
		switch ev.Type {
		case clientv3.EventTypeDelete:
			op.Delete = true
		case clientv3.EventTypePut:
			op.Value, op.Lease = kv.Value, kv.Lease
			if op.Value == nil {
				op.Value = []byte{}
			}
		default:
			return fmt.Errorf("capture: revision %d: unknown event type %v", kv.ModRevision, ev.Type)
		}
		cur.Ops = append(cur.Ops, op)
		r.pendingBytes += len(op.Key) + len(op.Value) + opOverhead
	}
	return nil
}

// idleHead writes the head while nothing is pending: a linearizable read
// of one key says which revision etcd is at. When that is the last
// durable one, nothing newer existed when the read was sent, so the head
// can claim it as observed then. (Watch progress notifications cannot
// serve here: etcd sends none to a watch that starts at a revision it has
// not reached yet, which is where a new chain's watch starts.) Anything
// newer is on its way through the watch, and the head waits for it.
func (r *runner) idleHead(ctx context.Context) error {
	asked := time.Now().UTC().Truncate(time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	resp, err := r.cli.Get(cctx, watchRangeFrom)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Info("reading etcd's revision for the head", "error", err)
		}
		return nil // the next tick asks again; the watch reports real trouble
	}
	if err := r.checkCluster(resp.Header.GetClusterId()); err != nil {
		return err
	}
	if resp.Header.GetRevision() != r.durable || len(r.pending) > 0 {
		return nil
	}
	return r.writeHead(ctx, changelog.Head{Revision: r.durable, Observed: asked})
}

func (r *runner) headDue() bool {
	return r.lastHeadWrite.IsZero() || time.Since(r.lastHeadWrite) >= r.o.HeadEvery
}

// flush stores the pending changes as one segment, retrying a failing
// store, then writes the head if it is due.
func (r *runner) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	var info changelog.SegmentInfo
	err := r.retry(ctx, "storing a segment", func() error {
		var err error
		info, err = changelog.PutSegment(ctx, r.store, r.chain.ID, r.pending)
		return err
	})
	if err != nil {
		return err
	}
	done := time.Now()
	minObs, maxObs := r.pending[0].Observed, r.pending[0].Observed
	for _, t := range r.pending {
		minObs, maxObs = minOf(minObs, t.Observed), maxOf(maxObs, t.Observed)
	}
	stats := SegmentStats{Segment: info, RawBytes: r.pendingBytes, Durable: done, MaxLag: done.Sub(minObs), MinLag: done.Sub(maxObs)}
	r.durable = info.Last
	r.pending, r.pendingBytes = nil, 0
	// The segment ends with a whole watch response: at LastObserved, Last
	// was the newest revision seen.
	h := changelog.Head{Revision: info.Last, Observed: info.LastObserved}
	r.o.Durable(h)
	r.o.OnSegment(stats)
	if r.headDue() {
		return r.writeHead(ctx, h)
	}
	return nil
}

func (r *runner) writeHead(ctx context.Context, h changelog.Head) error {
	if h.Revision < r.lastHead.Revision || (h.Revision == r.lastHead.Revision && !h.Observed.After(r.lastHead.Observed)) {
		return nil // nothing newer to say
	}
	err := r.retry(ctx, "writing the head", func() error {
		return changelog.PutHead(ctx, r.store, r.chain.ID, h)
	})
	if err != nil {
		return err
	}
	r.lastHead, r.lastHeadWrite = h, time.Now()
	r.o.Durable(h)
	return nil
}

// retry runs fn up to storeAttempts times with growing waits.
func (r *runner) retry(ctx context.Context, what string, fn func() error) error {
	wait := storeBackoff
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || ctx.Err() != nil {
			if err != nil {
				return ctx.Err()
			}
			return nil
		}
		if attempt == storeAttempts {
			return fmt.Errorf("capture: %s failed %d times: %w", what, attempt, err)
		}
		r.log.Warn("retrying", "what", what, "attempt", attempt, "after", wait, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func minOf(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
