package testenv_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/test/testenv"
)

// TestDockerStartSlotBounds: however many ask at once, no more than
// DockerStartSlots hold one, and every one gets one in the end.
func TestDockerStartSlotBounds(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	var inFlight, most, done atomic.Int32
	var wg sync.WaitGroup
	for range 4 * testenv.DockerStartSlots {
		wg.Go(func() {
			release, err := testenv.DockerStartSlot(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			inFlight.Add(-1)
			release()
			done.Add(1)
		})
	}
	wg.Wait()
	if m := most.Load(); m > testenv.DockerStartSlots {
		t.Fatalf("%d held a slot at once, want at most %d", m, testenv.DockerStartSlots)
	}
	if d := done.Load(); d != 4*testenv.DockerStartSlots {
		t.Fatalf("%d of %d got a slot", d, 4*testenv.DockerStartSlots)
	}
}

// TestDockerStartSlotGivesUp: with every slot held, a wait ends with its
// context, saying so.
func TestDockerStartSlotGivesUp(t *testing.T) {
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	for range testenv.DockerStartSlots {
		r, err := testenv.DockerStartSlot(testenv.Context(t, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := testenv.DockerStartSlot(ctx); err == nil {
		t.Fatal("got a slot while all were held")
	}
}
