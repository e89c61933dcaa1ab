package drill

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Recorded are the counts a backup recorded of the live cluster, in a form
// that gives the exact counts at whatever revision the snapshot holds.
//
// etcd does not say which revision a snapshot holds (the stream's header is
// empty), and the cluster goes on being written while it streams. So the
// backup counts at a revision just before the snapshot starts, watches
// every change until just after it ends, and keeps the changes that add or
// remove a key. A drill learns the snapshot's revision from the restored
// store and asks At for the counts there.
type Recorded struct {
	Revision int64  `json:"revision"` // Counts are at this revision
	Counts   Counts `json:"counts"`
	// UpTo is the last revision Changes cover; At answers for
	// Revision..UpTo.
	UpTo    int64    `json:"upTo"`
	Changes []Change `json:"changes,omitempty"`
}

// Change is one key added (+1) or removed (-1) at a revision, under a
// /registry/<resource>/ prefix or none ("").
type Change struct {
	Rev    int64  `json:"r"`
	Prefix string `json:"p,omitempty"`
	Delta  int64  `json:"d"`
}

// At gives the counts at rev, false when rev is outside what was recorded.
func (r Recorded) At(rev int64) (Counts, bool) {
	if rev < r.Revision || rev > r.UpTo {
		return Counts{}, false
	}
	c := Counts{Total: r.Counts.Total, ByPrefix: map[string]int64{}}
	for p, n := range r.Counts.ByPrefix {
		c.ByPrefix[p] = n
	}
	for _, ch := range r.Changes {
		if ch.Rev > rev {
			break // in revision order
		}
		c.Total += ch.Delta
		if ch.Prefix != "" {
			if c.ByPrefix[ch.Prefix] += ch.Delta; c.ByPrefix[ch.Prefix] == 0 {
				delete(c.ByPrefix, ch.Prefix)
			}
		}
	}
	return c, true
}

// MaxChanges bounds what a backup keeps (and sends through Temporal): a
// cluster that adds or removes more keys than this while the snapshot
// streams gets no counts recorded, rather than an unbounded list.
const MaxChanges = 2000

// errTooBusy ends a recording that passed MaxChanges.
var errTooBusy = errors.New("more keys added or removed during the snapshot than kopsdr records")

// Recorder watches the live cluster while a snapshot streams. Start it
// before the snapshot and Finish it after; Stop releases it either way.
type Recorder struct {
	cli      *clientv3.Client
	closeCli bool
	stopOnce sync.Once
	cancel   context.CancelFunc
	rec      Recorded

	mu      sync.Mutex
	seen    int64 // newest revision the watch delivered
	changes []Change
	err     error
	update  chan struct{} // closed and replaced on every delivery
}

// StartRecorder counts the keys at the newest revision and starts watching
// everything after it. Counting first, before the snapshot, means the
// counted revision cannot have been compacted by the time it is read.
func StartRecorder(ctx context.Context, cli *clientv3.Client) (*Recorder, error) {
	counts, rev, err := countNewest(ctx, cli)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	r := &Recorder{cli: cli, cancel: cancel, rec: Recorded{Revision: rev, Counts: counts}, seen: rev, update: make(chan struct{})}
	wch := cli.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev+1))
	go r.watch(wch)
	return r, nil
}

// countNewest is CountKeys at the newest revision, and that revision.
func countNewest(ctx context.Context, cli *clientv3.Client) (Counts, int64, error) {
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return Counts{}, 0, fmt.Errorf("reading the revision to count at: %w", err)
	}
	rev := resp.Header.Revision
	c, err := CountKeys(ctx, cli, rev)
	return c, rev, err
}

func (r *Recorder) watch(wch clientv3.WatchChan) {
	for resp := range wch {
		r.mu.Lock()
		if err := resp.Err(); err != nil {
			r.err = err
		}
		for _, ev := range resp.Events {
			d := int64(0)
			switch {
			case ev.Type == clientv3.EventTypeDelete:
				d = -1
			case ev.Kv.Version == 1: // the key's first version: it was created
				d = 1
			}
			if d != 0 && r.err == nil {
				if len(r.changes) == MaxChanges {
					r.err = errTooBusy
				} else {
					r.changes = append(r.changes, Change{Rev: ev.Kv.ModRevision, Prefix: prefixOf(ev.Kv.Key), Delta: d})
				}
			}
			r.seen = max(r.seen, ev.Kv.ModRevision)
		}
		close(r.update)
		r.update = make(chan struct{})
		failed := r.err != nil
		r.mu.Unlock()
		if failed {
			r.cancel()
			return
		}
	}
	// The channel closes without an error when the watch is cancelled or
	// the client closes; Finish must not wait for events that never come.
	r.mu.Lock()
	if r.err == nil {
		r.err = errors.New("the watch ended")
	}
	close(r.update)
	r.update = make(chan struct{})
	r.mu.Unlock()
}

// Finish waits until the watch has delivered every revision up to the
// newest one now, after the snapshot ended, and returns the recording.
// Every revision is made by a write, so the newest one comes with an event.
func (r *Recorder) Finish(ctx context.Context) (Recorded, error) {
	defer r.Stop()
	resp, err := r.cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return Recorded{}, fmt.Errorf("reading the revision after the snapshot: %w", err)
	}
	upTo := resp.Header.Revision
	for {
		r.mu.Lock()
		seen, err, update := r.seen, r.err, r.update
		r.mu.Unlock()
		if err != nil {
			return Recorded{}, fmt.Errorf("watching changes during the snapshot: %w", err)
		}
		if seen >= upTo {
			break
		}
		select {
		case <-update:
		case <-ctx.Done():
			return Recorded{}, fmt.Errorf("watching changes during the snapshot: up to revision %d of %d: %w", seen, upTo, ctx.Err())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	rec.UpTo = upTo
	for _, ch := range r.changes {
		if ch.Rev <= upTo {
			rec.Changes = append(rec.Changes, ch)
		}
	}
	return rec, nil
}

// Stop ends the watch (and closes the client, see ClosingClient); Finish
// calls it, and callers defer it for the error paths. It may run twice.
func (r *Recorder) Stop() {
	r.cancel()
	if r.closeCli {
		r.stopOnce.Do(func() { _ = r.cli.Close() })
	}
}

// ClosingClient makes Stop close the recorder's client too, for a client
// made for it alone.
func (r *Recorder) ClosingClient() *Recorder {
	r.closeCli = true
	return r
}
