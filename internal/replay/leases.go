package replay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// GrantTTL is the TTL, in seconds, of a lease replay grants because a
// captured put names a lease the scratch store lacks (lease grants are not
// in the watch stream, so the original TTL is unknown). An hour is what
// Kubernetes gives events, the keys that carry most leases; the only other
// leased keys, API servers' master leases, are rewritten within seconds by
// the live API servers after a restore, and kopsdr cleans stale ones.
const GrantTTL = 3600

// minRenewEvery is the shortest interval between renewals of one lease.
const minRenewEvery = 250 * time.Millisecond

// keeper keeps every lease of the scratch etcd alive while replay runs.
//
// Why: a lease that expires in the scratch etcd deletes its keys at a
// revision the original cluster never had, and every later revision would
// then be off by one (Kubernetes resourceVersions are etcd revisions).
// Expiry in the ORIGINAL cluster needs nothing: its deletes are in the
// captured stream and replay as ordinary deletes.
//
// etcd has no setting to stop a single member's lessor from expiring
// leases (it is always the leader, hence the primary lessor; embed.Config
// offers only the checkpoint options), so the keeper renews every lease,
// the restored base's and the ones replay grants, over one LeaseKeepAlive
// stream, each a quarter of its TTL after the last renewal answered, as
// etcd's own client does at a third. One stream and a timer heap rather
// than clientv3.Lease.KeepAlive: that wants a goroutine draining a channel
// per lease, and an events cluster can hold very many leases.
//
// It fails (and cancels the replay through fail) when the stream breaks or
// a renewal finds its lease gone: that lease expired despite it, and the
// replay is not trustworthy. Make checks the revision after every
// transaction and at the end besides, so an expiry that slipped through
// cannot go unnoticed either.
type keeper struct {
	lc     pb.LeaseClient
	stream pb.Lease_LeaseKeepAliveClient
	fail   context.CancelCauseFunc

	mu    sync.Mutex
	known map[int64]bool
	due   dueHeap
	err   error
	wake  chan struct{}
	wg    sync.WaitGroup
	stop  context.CancelFunc
}

// startKeeper renews every lease the server holds now, and from then on
// those added. fail is called, once, with the reason the keeper failed.
func startKeeper(ctx context.Context, cli *clientv3.Client, fail context.CancelCauseFunc) (*keeper, error) {
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	ctx, stop := context.WithCancel(ctx)
	stream, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("lease keepalive stream: %w", err)
	}
	k := &keeper{lc: lc, stream: stream, fail: fail, known: map[int64]bool{}, wake: make(chan struct{}, 1), stop: stop}
	resp, err := lc.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil {
		stop()
		return nil, fmt.Errorf("listing the restored leases: %w", err)
	}
	for _, l := range resp.Leases {
		k.add(l.ID)
	}
	k.wg.Add(2)
	go k.send(ctx)
	go k.receive(ctx)
	return k, nil
}

// close stops renewing. The server's leases then expire in their time,
// which no longer matters once the snapshot is taken.
func (k *keeper) close() {
	k.stop()
	k.wg.Wait()
}

// has says the lease exists in the scratch store (restored or granted).
func (k *keeper) has(id int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.known[id]
}

// count is the number of leases kept.
func (k *keeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.known)
}

// failed is the keeper's failure, nil while it is fine.
func (k *keeper) failed() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// add starts renewing lease id, first right away.
func (k *keeper) add(id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.known[id] {
		return
	}
	k.known[id] = true
	heap.Push(&k.due, renewal{at: time.Now(), id: id})
	k.poke()
}

// grant creates lease id with GrantTTL, as the captured put needs it,
// and keeps it alive. clientv3.Lease.Grant cannot ask for an ID; the raw
// request can.
func (k *keeper) grant(ctx context.Context, id int64) error {
	resp, err := k.lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: GrantTTL})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("granting lease %x: %w", id, err)
	}
	k.add(id)
	return nil
}

func (k *keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keeper) setErr(err error) {
	k.mu.Lock()
	first := k.err == nil
	if first {
		k.err = err
	}
	k.mu.Unlock()
	if first {
		k.fail(err)
	}
}

// send renews the leases that are due, sleeping until the next one is.
func (k *keeper) send(ctx context.Context) {
	defer k.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ids []int64
	for {
		ids = ids[:0]
		wait := time.Hour
		k.mu.Lock()
		now := time.Now()
		for k.due.Len() > 0 {
			if d := k.due[0].at.Sub(now); d > 0 {
				wait = d
				break
			}
			ids = append(ids, heap.Pop(&k.due).(renewal).id)
		}
		k.mu.Unlock()
		for _, id := range ids {
			if err := k.stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				if ctx.Err() == nil {
					k.setErr(fmt.Errorf("lease keepalive: %w", err))
				}
				return
			}
		}
		if len(ids) > 0 {
			continue // more may have come due while sending
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-k.wake:
		case <-timer.C:
		}
	}
}

// receive schedules each lease's next renewal from the answer to the last.
func (k *keeper) receive(ctx context.Context) {
	defer k.wg.Done()
	for {
		resp, err := k.stream.Recv()
		if err != nil {
			if ctx.Err() == nil {
				k.setErr(fmt.Errorf("lease keepalive: %w", err))
			}
			return
		}
		if resp.TTL <= 0 {
			k.setErr(fmt.Errorf("lease %x expired in the scratch etcd during replay: its keys were deleted at a revision the original cluster never had", resp.ID))
			return
		}
		every := max(time.Duration(resp.TTL)*time.Second/4, minRenewEvery)
		k.mu.Lock()
		heap.Push(&k.due, renewal{at: time.Now().Add(every), id: resp.ID})
		k.mu.Unlock()
		k.poke()
	}
}

// missing lists the kept leases the server no longer has.
func (k *keeper) missing(ctx context.Context) ([]int64, error) {
	resp, err := k.lc.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil {
		return nil, err
	}
	have := make(map[int64]bool, len(resp.Leases))
	for _, l := range resp.Leases {
		have[l.ID] = true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var gone []int64
	for id := range k.known {
		if !have[id] {
			gone = append(gone, id)
		}
	}
	return gone, nil
}

type renewal struct {
	at time.Time
	id int64
}

// dueHeap orders renewals by time, earliest first.
type dueHeap []renewal

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(renewal)) }
func (h *dueHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}
