package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DockerStartSlots bounds how many containers the tests' stand-ins create
// and start at once on this machine's one Docker engine, across every test
// process (the e2e shards and the test packages run at once).
//
// Why: the engine does container starts nearly one after another (which
// of its steps serializes them was not looked into; here each start also
// mounts a fuse-overlayfs root, joins a bridge network and publishes a
// port). Measured here with 24 started at once: 1-3 s for one alone, 32-37
// s for the last of the 24 with the CPU busy; anything else that
// touches a container being started (an inspect, a kill, kopsdr's own
// start) waits behind them. One CI run, with four lanes' kubelet
// stand-ins restarting six pods each at once while the rest compiled, saw
// every Docker call of four lanes time out after a minute, for minutes.
// Waiting for a slot in the test process instead keeps the engine's own
// queue short, so the calls of kopsdr under test answer in seconds; the
// engine's throughput is the same either way.
const DockerStartSlots = 3

// slotDir holds the slots' lock files. Fixed rather than os.TempDir():
// tests set TMPDIR to their own folders, and every process must share it.
const slotDir = "/tmp"

// DockerStartSlot waits for one of the machine's DockerStartSlots and
// returns the function that gives it back. A slot is an flock on a file,
// so the kernel gives it back if the process dies holding it, and two
// goroutines of one process exclude each other as two processes do.
func DockerStartSlot(ctx context.Context) (release func(), err error) {
	for {
		for _, i := range rand.Perm(DockerStartSlots) {
			f, err := os.OpenFile(filepath.Join(slotDir, fmt.Sprintf("kopsdr-docker-start-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o666)
			if err != nil {
				return nil, fmt.Errorf("docker start slot: %w", err)
			}
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
				return func() { _ = f.Close() }, nil // closing the file drops the lock
			}
			_ = f.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a docker start slot: %w", ctx.Err())
		case <-time.After(time.Duration(20+rand.IntN(60)) * time.Millisecond):
		}
	}
}
