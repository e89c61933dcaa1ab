package scratchetcd

import (
	"fmt"
	"os"
	"syscall"
)

const (
	// gzipFactor guesses the raw size from the object when the backup does
	// not say: etcd snapshots compress 4-8x typically, more when the
	// database has many free pages, so 10x rather over- than underestimates.
	gzipFactor = 10
	// WALReserve is what etcd preallocates for its first WAL segment.
	WALReserve = 64 << 20
)

// Need is the scratch space a restore of a snapshot takes: the raw file,
// etcd's copy of it in the data dir (the restore copies, it does not move),
// and a WAL segment, plus 10% for bolt's growth when etcd opens it.
// rawBytes is the raw snapshot's size when known (kopsdr.json records it),
// else 0 and gzipBytes, the stored object's size, gives an estimate.
func Need(rawBytes, gzipBytes int64) uint64 {
	if rawBytes <= 0 {
		rawBytes = gzipBytes * gzipFactor
	}
	return uint64(float64(2*rawBytes)*1.1) + WALReserve
}

// FreeSpace reports the bytes available to unprivileged users in dir's
// file system (statfs).
func FreeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// NeedWhy says how Need adds up, for a Space's Why.
const NeedWhy = "twice the snapshot plus a WAL segment"

// Space is what some work needs in the temp dir, for CheckSpace and its
// message.
type Space struct {
	Bytes uint64
	For   string // who needs it: "a drill of this backup"
	Why   string // how Bytes adds up, e.g. NeedWhy
}

// CheckSpace makes tempDir if needed and refuses, with an error wrapping
// ErrScratch, to go on when it has less than need.Bytes free: a full disk
// hurts the worker's other work, and the work would fail anyway. free is
// FreeSpace unless a test simulates a full disk.
func CheckSpace(tempDir string, need Space, free func(dir string) (uint64, error)) error {
	if free == nil {
		free = FreeSpace
	}
	if err := os.MkdirAll(tempDir, 0o700); err != nil {
		return scratchErr("%v", err)
	}
	n, err := free(tempDir)
	if err != nil {
		return scratchErr("free space of %s: %v", tempDir, err)
	}
	if n < need.Bytes {
		return fmt.Errorf("%w: %s has %d MiB free, %s needs %d MiB (%s); free some or set a larger temp dir",
			ErrScratch, tempDir, n>>20, need.For, need.Bytes>>20, need.Why)
	}
	return nil
}
