package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// DefaultMaxConcurrentBackups is how many snapshot uploads one worker runs
// at once unless told otherwise. Each upload holds its gzip blocks (about
// 2 x 2*GOMAXPROCS x 1 MiB) and the S3 upload's part buffers (8 MiB parts,
// up to 3 in flight plus the one being filled), roughly 40 MiB on two
// cores: 8 uploads stay near 320 MiB however many schedules fire at once,
// and more would not finish sooner on a small worker, since gzip already
// keeps every core busy.
const DefaultMaxConcurrentBackups = 8

// backupSlots bounds the worker's concurrent uploads (UploadSnapshot). It is
// process-wide, not per activity struct: the bound is about the process's
// memory. nil means no bound.
var (
	slotsMu     sync.Mutex
	backupSlots chan struct{}
)

// SetMaxConcurrentBackups sets how many uploads this process runs at once;
// n <= 0 removes the bound. The worker calls it once, before it starts; an
// upload already holding a slot of an earlier setting keeps it.
func SetMaxConcurrentBackups(n int) {
	slotsMu.Lock()
	defer slotsMu.Unlock()
	if n <= 0 {
		backupSlots = nil
		return
	}
	backupSlots = make(chan struct{}, n)
}

// backupSlotWait is the heartbeat detail of an upload waiting for a slot, so
// `kopsdr backup --wait` and `temporal workflow describe` show why it has
// not begun (a text: the CLI prints texts as they are).
const backupSlotWait = "waiting for a backup slot (the worker's --max-concurrent-backups)"

// acquireBackupSlot waits for one of the worker's upload slots and returns
// the func that frees it. It heartbeats while it waits: a burst of
// schedules queues its uploads on the worker instead of holding them all
// in memory, and a queued upload must neither time out on its heartbeat
// nor be taken for a dead worker's. The wait ends with the activity's
// context (cancelled, or the worker stopping).
func acquireBackupSlot(ctx context.Context) (release func(), err error) {
	slotsMu.Lock()
	slots := backupSlots
	slotsMu.Unlock()
	if slots == nil {
		return func() {}, nil
	}
	release = func() { <-slots }
	select {
	case slots <- struct{}{}:
		return release, nil
	default:
	}
	if activity.IsActivity(ctx) {
		// Beat at once, then every few seconds: the heartbeat timeout
		// (20 s for uploads) runs from the activity's start.
		activity.RecordHeartbeat(ctx, backupSlotWait)
	}
	stop := heartbeatEvery(ctx, 5*time.Second, func() any { return backupSlotWait })
	defer stop()
	select {
	case slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// backupSlotsInUse is for tests: how many slots are taken now.
func backupSlotsInUse() int {
	slotsMu.Lock()
	defer slotsMu.Unlock()
	return len(backupSlots)
}
