// Package drill proves a backup restorable by restoring it: it streams one
// backup from the store, verifies it while writing the raw snapshot to a
// scratch dir, restores that with etcd's own restore code, starts a
// throwaway single-member etcd on loopback and reads every key back,
// checking that the keys a Kubernetes cluster cannot start without are
// there. A backup that merely verifies can still be useless (an empty or
// wrong database); one that passes a drill has been restored once already.
//
// Run is the whole drill; a worker wraps it in an activity. It never
// touches the cluster the backup came from.
package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
)

// Options tunes one drill. The zero value is fine.
type Options struct {
	// TempDir holds the scratch dir (raw snapshot and etcd data dir), which
	// needs about twice the snapshot's size. Default os.TempDir().
	TempDir string
	// Expected are counts recorded when the backup was taken; each
	// disagreement is a failure. Nil takes those kopsdr.json holds; a
	// backup without them (etcd-manager's own) has its counts reported,
	// not compared.
	Expected *Recorded
	// Progress, when set, is told the stage ("download", "restore",
	// "start", "check") and the bytes done in it, so an activity can
	// heartbeat. It is called from Run's goroutine only.
	Progress func(stage string, bytes int64)
	// FreeSpace reports the bytes available to us in dir; default statfs.
	// Tests replace it to simulate a full disk.
	FreeSpace func(dir string) (uint64, error)
	// Events says the backup is of etcd events, where kops's API servers
	// keep only /registry/events/: the keys main must hold (namespaces,
	// service IPs, master leases) are not looked for.
	Events bool
	// Logger gets the scratch etcd's logs; default none.
	Logger *zap.Logger
}

// Failure is one failed check: which, and why in words an operator can act on.
type Failure struct {
	Check  string `json:"check"` // verify, restore, start, read, required, count
	Reason string `json:"reason"`
}

// Timings are what a restore of this backup costs; RTO is their sum.
type Timings struct {
	DownloadSeconds float64 `json:"downloadSeconds"` // download and verify, one pass
	RestoreSeconds  float64 `json:"restoreSeconds"`
	StartSeconds    float64 `json:"startSeconds"`
	CheckSeconds    float64 `json:"checkSeconds"` // reading every key back; not part of RTO
	RTOSeconds      float64 `json:"rtoSeconds"`   // 0 when the backup did not restore and start
}

// Result is a drill's outcome, small enough to store beside the backup
// (WriteResult): no per-key data.
type Result struct {
	Backup   string    `json:"backup"`
	Passed   bool      `json:"passed"`
	Failures []Failure `json:"failures,omitempty"`
	Counts   Counts    `json:"counts"`
	// CountsCompared says Counts were checked against those the backup
	// recorded; false for a backup that recorded none.
	CountsCompared bool `json:"countsCompared"`
	// Revision is the restored store's revision: the snapshot's.
	Revision int64 `json:"revision,omitempty"`
	// BackupEtcdVersion is the etcd version the meta names (what
	// etcd-manager restores with); the others are the scratch etcd's.
	BackupEtcdVersion string `json:"backupEtcdVersion,omitempty"`
	EtcdVersion       string `json:"etcdVersion,omitempty"`
	ClusterVersion    string `json:"clusterVersion,omitempty"`
	// StorageVersion is what the scratch etcd reported right after start;
	// etcd raises it to the cluster version soon after, so it may lag.
	StorageVersion  string    `json:"storageVersion,omitempty"`
	DownloadedBytes int64     `json:"downloadedBytes"`
	SnapshotBytes   int64     `json:"snapshotBytes"`
	Timings         Timings   `json:"timings"`
	At              time.Time `json:"at"`
	KopsdrVersion   string    `json:"kopsdrVersion,omitempty"`
}

// fail records a failed check; Run sets Passed from the list at the end.
func (r *Result) fail(check, format string, args ...any) {
	r.Failures = append(r.Failures, Failure{Check: check, Reason: fmt.Sprintf(format, args...)})
}

// Run drills backup from store. A backup that fails a check is a Result
// with Passed false and a nil error; an error means the drill itself could
// not run (store unreachable, no such backup, not enough scratch space, a
// cancelled context) and says nothing about the backup. The scratch dir is
// removed before Run returns, whatever happens.
func Run(ctx context.Context, store backupstore.Store, backup string, opts Options) (Result, error) {
	opts = withDefaults(opts)
	res := Result{Backup: backup, At: time.Now().UTC(), KopsdrVersion: kopsdrVersion()}

	src, err := openBackup(ctx, store, backup)
	if err != nil {
		return Result{}, err
	}
	res.BackupEtcdVersion = src.meta.EtcdVersion
	if opts.Expected == nil {
		opts.Expected = src.facts.Counts
	}
	if err := scratchetcd.CheckSpace(opts.TempDir, src.need(), opts.FreeSpace); err != nil {
		return Result{}, drillScratch(err)
	}
	dir, err := scratchetcd.NewDir(opts.TempDir, ScratchPrefix)
	if err != nil {
		return Result{}, drillScratch(err)
	}
	defer dir.Remove()

	if err := drill(ctx, src, dir, opts, &res); err != nil {
		return Result{}, err
	}
	res.Passed = len(res.Failures) == 0
	return res, nil
}

// drill runs the stages in order and stops at the first one that fails;
// only operational trouble comes back as an error.
func drill(ctx context.Context, src *source, dir *scratchetcd.Dir, opts Options, res *Result) error {
	begin := time.Now()
	snap, ok, err := download(ctx, src, dir, opts, res)
	res.Timings.DownloadSeconds = time.Since(begin).Seconds()
	if err != nil || !ok {
		return err
	}

	opts.Progress("restore", 0)
	srv, err := restoreAndStart(ctx, snap, dir, opts, res)
	if err != nil || srv == nil {
		return err
	}
	defer srv.Close()
	// A restore is done once etcd serves; only a drill that got this far
	// has measured what a real restore would take.
	t := &res.Timings
	t.RTOSeconds = t.DownloadSeconds + t.RestoreSeconds + t.StartSeconds

	begin = time.Now()
	err = check(ctx, srv, opts, res)
	res.Timings.CheckSeconds = time.Since(begin).Seconds()
	return err
}

func withDefaults(o Options) Options {
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	if o.Progress == nil {
		o.Progress = func(string, int64) {}
	}
	if o.FreeSpace == nil {
		o.FreeSpace = scratchetcd.FreeSpace
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// kopsdrVersion is the main module's version as the Go toolchain stamped
// it: a tag for released builds, "(devel)" for local ones. kopsdr has no
// version variable of its own.
func kopsdrVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}

// IsScratch says err is the worker's scratch dir's trouble (no space, no
// permission), which retrying on the same worker will not mend. Such
// errors read "drill scratch space: ...".
func IsScratch(err error) bool { return errors.Is(err, scratchetcd.ErrScratch) }
