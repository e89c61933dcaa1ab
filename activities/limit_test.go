package activities

import (
	"context"
	"testing"
	"time"
)

// The bound queues the third upload until one of two ends, lets a waiter
// give up with its context, and is off with 0.
func TestBackupSlots(t *testing.T) {
	t.Cleanup(func() { SetMaxConcurrentBackups(0) })
	SetMaxConcurrentBackups(2)
	ctx := context.Background()
	r1, err := acquireBackupSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := acquireBackupSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		r, err := acquireBackupSlot(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("a third upload started while two held both slots")
	case <-time.After(50 * time.Millisecond):
	}
	r1()
	r3 := <-got
	if n := backupSlotsInUse(); n != 2 {
		t.Fatalf("%d slots in use, want 2", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := acquireBackupSlot(cctx); err == nil {
		t.Fatal("a cancelled wait got a slot")
	}
	r2()
	r3()
	if n := backupSlotsInUse(); n != 0 {
		t.Fatalf("%d slots in use after all released", n)
	}

	SetMaxConcurrentBackups(0)
	for range 10 {
		if _, err := acquireBackupSlot(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
