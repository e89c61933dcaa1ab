// Package replay makes an ordinary etcd-manager backup of an etcd cluster
// at any revision that a full backup and the captured change log reach
// (point-in-time restore): it restores the full backup into a throwaway
// single-member etcd on loopback (internal/scratchetcd), writes the
// captured transactions after it into that etcd one by one up to the
// target revision, and streams a snapshot of the result exactly as a
// backup streams one from the live cluster (internal/snapshot), so that
// etcd-manager restores it like any other backup.
//
// The replayed store is the original at the target, revision for revision:
// every key has the value, create revision, mod revision, version and lease
// it had there, and the store's revision is the target. That matters
// because Kubernetes resourceVersions are etcd revisions.
//
// The snapshot is the scratch etcd's database, taken once it stopped
// and streamed as a live etcd streams one (snapshot.StreamFile). That etcd
// is the version kopsdr embeds (3.7), which raises the versions a database
// records (meta/storageVersion, cluster/clusterVersion) to its own; an
// older etcd refuses to start on such a database (3.6 on both). So before
// it streams, Make lowers both to the base's etcd version, the one
// etcd-manager restores the output with (minor version, never below 3.5,
// the oldest etcd's schema migration knows; left alone when the base's
// version is unknown or not older), with etcd's own migration code, as
// `etcdutl migrate --target-version` does. Result.OutputVersion says to
// what; lowerVersions says why that suffices, from etcd's sources.
//
// Not verifiable here: no etcd 3.5 or 3.6 runs on this machine, so that
// etcd-manager's restore and start with the base's version accept the
// output rests on reading those versions' sources (v3.5.33, v3.6.14), not
// on a test; tests check the marks, the keys and revisions, and that etcd
// 3.7 restores and serves the output. Beyond the marks, the database is
// written by etcd 3.7, whose schema records no other change since 3.5.
// Bases of etcd 3.4 and older are marked 3.5, which etcd 3.4 may or may
// not accept: untested, and outside what etcd's migration supports.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/datadir"
	"go.uber.org/zap"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

// ScratchPrefix starts the name of every scratch dir Make creates; pass it
// to scratchetcd.CleanStale to remove those a dead worker left.
const ScratchPrefix = "kopsdr-replay-"

const (
	memberName = "replay"
	// maxTxnOps lifts etcd's limit of 128 operations per transaction: one
	// captured revision is replayed as one transaction, and a lease revoke
	// (or a range delete) in the original deletes every key of the lease at
	// one revision, thousands of them for an events lease.
	maxTxnOps = 1 << 24
	// maxRequestBytes lifts etcd's 1.5 MiB request limit for the same
	// reason: the original made such a revision from one small request,
	// replay sends every deleted key. A revision bigger than this fails.
	maxRequestBytes = 64 << 20
	// replayReserve is scratch space on top of the restore's for what
	// replay writes: WAL files (etcd keeps up to five of 64 MiB) and the
	// history of the replayed revisions in the database.
	replayReserve = 4 * scratchetcd.WALReserve
	// progressEvery is the least time between Progress calls while replaying.
	progressEvery = time.Second
)

// Source yields the captured transactions with revision in (after, upTo],
// in revision order, each exactly once, calling fn for each from the
// caller's goroutine. It stops and returns fn's error when fn fails. It
// returns nil when it has no more, even if it ended before upTo.
type Source interface {
	Txns(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error
}

// Request says what to make.
type Request struct {
	Store  backupstore.Store // the backup store holding Base
	Base   string            // a full backup (etcd-manager format) at or below Target
	Source Source            // the changes after Base
	Target int64             // the revision to stop at, inclusive
	// TempDir holds the scratch dir (raw snapshot, etcd data dir). Default
	// os.TempDir().
	TempDir string
	// Progress, when set, is told the stage and how far it got, so an
	// activity can heartbeat: "download" (gzip bytes), "restore" and
	// "start" (0), "replay" (transactions applied), "downgrade" (0: the
	// scratch etcd stops and its database is marked for the base's etcd
	// version), "snapshot" (raw bytes streamed). It is called from Make's
	// goroutine.
	Progress func(stage string, n int64)
	// Logger gets the scratch etcd's logs; default none.
	Logger *zap.Logger
	// FreeSpace reports the bytes available in a dir; default statfs.
	// Tests replace it to simulate a full disk.
	FreeSpace func(dir string) (uint64, error)
}

// Timings are what each stage of Make took.
type Timings struct {
	DownloadSeconds float64 `json:"downloadSeconds"` // download and verify, one pass
	RestoreSeconds  float64 `json:"restoreSeconds"`
	StartSeconds    float64 `json:"startSeconds"`
	ReplaySeconds   float64 `json:"replaySeconds"`
	// DowngradeSeconds is stopping the scratch etcd and marking its
	// database for the base's etcd version.
	DowngradeSeconds float64 `json:"downgradeSeconds"`
	SnapshotSeconds  float64 `json:"snapshotSeconds"`
}

// Result describes what Make made.
type Result struct {
	Base string `json:"base"`
	// BaseRevision is the revision the restored base holds, read from the
	// restored store.
	BaseRevision int64 `json:"baseRevision"`
	// BaseEtcdVersion is the etcd version the base's meta names, the one
	// etcd-manager restored the original with and restores the output
	// with; Snapshot.EtcdVersion is the same (the scratch etcd's when the
	// meta names none).
	BaseEtcdVersion string `json:"baseEtcdVersion"`
	// OutputVersion is the etcd minor version ("3.5") the output's
	// database was marked for, its storage and cluster versions lowered
	// from the scratch etcd's to the base's (never below 3.5); empty when
	// they were left as the scratch etcd wrote them: the base's version is
	// unknown or not older than the scratch etcd's.
	OutputVersion string `json:"outputVersion,omitempty"`
	Revision      int64  `json:"revision"` // the target: the snapshot's revision
	// Observed is when capture observed the last replayed revision (zero
	// when nothing was replayed): the original cluster was in the state
	// the snapshot holds at that moment.
	Observed time.Time `json:"observed,omitzero"`
	Txns     int       `json:"txns"` // transactions replayed
	Ops      int64     `json:"ops"`  // keys put or deleted by them
	// LeasesGranted are the leases replay granted with GrantTTL because
	// captured puts named them; LeasesKept all it kept alive.
	LeasesGranted int `json:"leasesGranted"`
	LeasesKept    int `json:"leasesKept"`
	// Snapshot is the gzip written to w: sizes and hashes, as for a backup.
	Snapshot snapshot.Result `json:"snapshot"`
	Timings  Timings         `json:"timings"`
	// Counts are the keys per /registry/<resource>/ at Revision, for
	// kopsdr.json: a drill of the made backup compares with them.
	Counts *drill.Recorded `json:"counts,omitempty"`
}

// Make restores req.Base, replays req.Source's transactions in
// (BaseRevision, Target], one etcd transaction per captured revision, and
// streams a gzip snapshot of the result at level to w: the format
// snapshot.Stream writes for a backup, which etcd-manager restores, of a
// database marked for the base's etcd version. The scratch dir is removed
// before Make returns.
//
// A base that is missing or does not verify is a *scratchetcd.BackupError;
// a scratch dir that cannot hold the work wraps scratchetcd.ErrScratch.
// On error, w holds nothing usable (see snapshot.Stream) and the Result
// what was measured so far.
func Make(ctx context.Context, req Request, w io.Writer, level int) (Result, error) {
	req = withDefaults(req)
	res := Result{Base: req.Base, Revision: req.Target}
	if err := validate(req); err != nil {
		return res, err
	}
	base, err := openBase(ctx, req)
	if err != nil {
		return res, err
	}
	res.BaseEtcdVersion = base.meta.EtcdVersion
	// kopsdr's own backups say their revision; fail before downloading one
	// that is already too new. The restored store's revision decides below.
	if base.facts.Revision > req.Target {
		return res, tooNew(req, base.facts.Revision)
	}
	need := scratchetcd.Space{
		Bytes: scratchetcd.Need(base.facts.RawBytes, base.objectSize) + replayReserve,
		For:   "a replay of this backup",
		Why:   scratchetcd.NeedWhy + ", and room for the replayed changes",
	}
	if err := scratchetcd.CheckSpace(req.TempDir, need, req.FreeSpace); err != nil {
		return res, replayErr(req, err)
	}
	dir, err := scratchetcd.NewDir(req.TempDir, ScratchPrefix)
	if err != nil {
		return res, replayErr(req, err)
	}
	defer dir.Remove()
	err = run(ctx, req, base, dir, w, level, &res)
	return res, err
}

// run does Make's work in the scratch dir; everything it starts is
// stopped when it returns, before the dir is removed.
func run(ctx context.Context, req Request, base *baseInfo, dir *scratchetcd.Dir, w io.Writer, level int, res *Result) error {
	// Download, restore, start: the drill's stages.
	begin := time.Now()
	_, err := scratchetcd.Download(ctx, req.Store, req.Base, dir.RawSnapshotPath(), scratchetcd.DownloadOptions{
		RawSHA256: base.facts.RawSHA256,
		Progress:  func(n int64) { req.Progress("download", n) },
	})
	res.Timings.DownloadSeconds = time.Since(begin).Seconds()
	if err != nil {
		return replayErr(req, err)
	}

	req.Progress("restore", 0)
	begin = time.Now()
	opts := scratchetcd.Options{MemberName: memberName, Logger: req.Logger, MaxTxnOps: maxTxnOps, MaxRequestBytes: maxRequestBytes}
	if err := dir.Restore(dir.RawSnapshotPath(), opts); err != nil {
		return replayErr(req, &scratchetcd.BackupError{Reason: fmt.Sprintf("etcd restore: %v", err), Err: err})
	}
	// The data dir has its own copy; the raw file only costs space now.
	if err := os.Remove(dir.RawSnapshotPath()); err != nil {
		return replayErr(req, fmt.Errorf("%w: %v", scratchetcd.ErrScratch, err))
	}
	res.Timings.RestoreSeconds = time.Since(begin).Seconds()

	req.Progress("start", 0)
	begin = time.Now()
	// A keeper failure cancels everything with its reason.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	srv, err := dir.Start(ctx, opts)
	if err != nil {
		return replayErr(req, fmt.Errorf("starting etcd on the restored base: %w", err))
	}
	defer srv.Close()
	// Leases count down from the moment etcd started: keep them alive first.
	keep, err := startKeeper(ctx, srv.Client, cancel)
	if err != nil {
		return replayErr(req, cause(ctx, err))
	}
	defer keep.close()
	st, err := etcdconn.Status(ctx, srv.Client, srv.Endpoint)
	if err != nil {
		return replayErr(req, cause(ctx, fmt.Errorf("status of the restored base: %w", err)))
	}
	res.BaseRevision = st.Header.Revision
	res.Timings.StartSeconds = time.Since(begin).Seconds()
	if req.Target < res.BaseRevision {
		return tooNew(req, res.BaseRevision)
	}

	begin = time.Now()
	err = replay(ctx, req, srv.Client, keep, res)
	res.LeasesKept = keep.count()
	res.Timings.ReplaySeconds = time.Since(begin).Seconds()
	if err != nil {
		return replayErr(req, cause(ctx, err))
	}
	// Nothing but replay may have written: a stray revision (a lease that
	// expired after all) would make the snapshot another revision.
	if err := checkRevision(ctx, srv, req.Target, "after replay"); err != nil {
		return replayErr(req, cause(ctx, err))
	}
	// No lease was lost on the way (an expired lease without keys changes
	// no revision).
	gone, err := keep.missing(ctx)
	if err != nil {
		return replayErr(req, cause(ctx, fmt.Errorf("listing leases: %w", err)))
	}
	if len(gone) > 0 {
		return replayErr(req, fmt.Errorf("%d leases (%x ...) vanished from the scratch etcd during replay", len(gone), gone[0]))
	}
	// The key counts at exactly the target, as a backup records them, so
	// a drill of the made backup compares instead of only reporting.
	counts, err := drill.CountKeys(ctx, srv.Client, req.Target)
	if err != nil {
		return replayErr(req, cause(ctx, err))
	}
	res.Counts = &drill.Recorded{Revision: req.Target, Counts: counts, UpTo: req.Target}

	// Stop the scratch etcd: stopping commits everything it applied to
	// its database and closes it (EtcdServer.HardStop ends the run loop,
	// whose Cleanup closes the backend, which commits first). Its WAL is
	// not needed: only the database ships, as in any snapshot.
	req.Progress("downgrade", 0)
	begin = time.Now()
	keep.close()
	if err := keep.failed(); err != nil {
		return replayErr(req, err)
	}
	srv.Close()
	db := datadir.ToBackendFileName(dir.DataDir())
	// The stopped etcd's database holds the target, nothing more.
	rev, err := snapshot.DBRevision(db)
	if err != nil {
		return replayErr(req, err)
	}
	if rev != req.Target {
		return replayErr(req, fmt.Errorf("the scratch etcd's database is at revision %d when it stopped, not the target %d: something besides replay wrote to it (a lease expiring?)", rev, req.Target))
	}
	// Mark the database for the base's etcd, which etcd-manager restores
	// it with (see lowerVersions).
	etcdVersion := base.meta.EtcdVersion
	if etcdVersion == "" {
		etcdVersion = version.Version
	}
	if target, ok := targetVersion(base.meta.EtcdVersion); ok {
		if err := lowerVersions(req.Logger, db, target); err != nil {
			return replayErr(req, fmt.Errorf("marking the snapshot for etcd %s: %w", minor(target), err))
		}
		res.OutputVersion = minor(target)
	}
	res.Timings.DowngradeSeconds = time.Since(begin).Seconds()

	begin = time.Now()
	res.Snapshot, err = snapshot.StreamFile(ctx, db, etcdVersion, w, level, func(raw, _ int64) {
		req.Progress("snapshot", raw)
	})
	res.Timings.SnapshotSeconds = time.Since(begin).Seconds()
	if err != nil {
		return replayErr(req, cause(ctx, err))
	}
	return nil
}

// replay applies the source's transactions in (BaseRevision, Target].
func replay(ctx context.Context, req Request, cli *clientv3.Client, keep *keeper, res *Result) error {
	req.Progress("replay", 0)
	if req.Target == res.BaseRevision {
		return nil // the base is the target: snapshot it as it is
	}
	next := res.BaseRevision + 1
	lastReport := time.Now()
	var ops []clientv3.Op
	err := req.Source.Txns(ctx, res.BaseRevision, req.Target, func(txn changelog.Txn) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if txn.Revision != next {
			return sequenceErr(txn.Revision, next, res.BaseRevision, req.Target)
		}
		if len(txn.Ops) == 0 {
			return fmt.Errorf("revision %d has no changes in the change log: etcd made it by changing something", txn.Revision)
		}
		var err error
		if ops, err = txnOps(ctx, txn, keep, ops[:0], res); err != nil {
			return err
		}
		// One captured revision, one transaction: in a single-member etcd
		// that writes nothing else, it advances the store by exactly one
		// revision, which is the captured one. Checked, not assumed: a
		// delete of a key the store lacks, a lost revision or a stray write
		// would shift every later resourceVersion. Never retried: a retry
		// of a transaction that did apply would shift them too.
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("revision %d (%d changes): %w", txn.Revision, len(txn.Ops), err)
		}
		if got := resp.Header.Revision; got != txn.Revision {
			why := "the restored base and the change log disagree (it changed nothing: deletes of keys the base lacks?)"
			if got > txn.Revision {
				why = "something besides replay wrote to the scratch etcd (a lease expiring?)"
			}
			return fmt.Errorf("revision %d was replayed as revision %d: %s", txn.Revision, got, why)
		}
		next++
		res.Observed = txn.Observed
		res.Txns++
		res.Ops += int64(len(txn.Ops))
		if time.Since(lastReport) >= progressEvery {
			req.Progress("replay", int64(res.Txns))
			lastReport = time.Now()
		}
		return nil
	})
	if err != nil {
		return err
	}
	req.Progress("replay", int64(res.Txns))
	if next <= req.Target {
		return fmt.Errorf("the change log ends at revision %d, short of the target %d: it does not reach it", next-1, req.Target)
	}
	return nil
}

// txnOps turns a captured transaction into etcd operations, appended to
// ops: puts with their lease, granted first if the store lacks it, and
// deletes of exactly the key deleted (no range: the original's range or
// lease revoke deleted these keys and no others).
func txnOps(ctx context.Context, txn changelog.Txn, keep *keeper, ops []clientv3.Op, res *Result) ([]clientv3.Op, error) {
	for _, op := range txn.Ops {
		if op.Delete {
			ops = append(ops, clientv3.OpDelete(string(op.Key)))
			continue
		}
		if op.Lease == 0 {
			ops = append(ops, clientv3.OpPut(string(op.Key), string(op.Value)))
			continue
		}
		if !keep.has(op.Lease) {
			if err := keep.grant(ctx, op.Lease); err != nil {
				return ops, fmt.Errorf("revision %d puts %q with it: %w", txn.Revision, op.Key, err)
			}
			res.LeasesGranted++
		}
		ops = append(ops, clientv3.OpPut(string(op.Key), string(op.Value), clientv3.WithLease(clientv3.LeaseID(op.Lease))))
	}
	return ops, nil
}

// sequenceErr explains a transaction that is not the expected next one.
func sequenceErr(got, want, base, target int64) error {
	switch {
	case got <= base || got > target:
		return fmt.Errorf("the change log gave revision %d, outside the requested (%d, %d]", got, base, target)
	case got < want:
		return fmt.Errorf("the change log gave revision %d again or out of order, after %d", got, want-1)
	default:
		// Every revision is some change: a gap is a hole in the log.
		missing := fmt.Sprintf("revision %d", want)
		if got-1 > want {
			missing = fmt.Sprintf("revisions %d to %d", want, got-1)
		}
		return fmt.Errorf("the change log lacks %s: it jumps from %d to %d", missing, want-1, got)
	}
}

// checkRevision fails unless the server's store is at rev.
func checkRevision(ctx context.Context, srv *scratchetcd.Server, rev int64, when string) error {
	st, err := etcdconn.Status(ctx, srv.Client, srv.Endpoint)
	if err != nil {
		return fmt.Errorf("status %s: %w", when, err)
	}
	if got := st.Header.Revision; got != rev {
		return fmt.Errorf("the scratch etcd is at revision %d %s, not the target %d: something besides replay wrote to it (a lease expiring?)", got, when, rev)
	}
	return nil
}

// ErrBaseTooNew: the base backup holds a revision after the target, so a
// replay from it cannot reach the target; an older base can.
var ErrBaseTooNew = errors.New("the base backup is newer than the target")

func tooNew(req Request, baseRev int64) error {
	return fmt.Errorf("replay %s to revision %d: the base is at revision %d, after the target; use an older base: %w", req.Base, req.Target, baseRev, ErrBaseTooNew)
}

// replayErr names the replay in err.
func replayErr(req Request, err error) error {
	return fmt.Errorf("replay %s to revision %d: %w", req.Base, req.Target, err)
}

// cause prefers the reason ctx was cancelled (the caller's, or the lease
// keeper's failure) to the error it caused.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil {
			return c
		}
	}
	return err
}

func withDefaults(r Request) Request {
	if r.TempDir == "" {
		r.TempDir = os.TempDir()
	}
	if r.Progress == nil {
		r.Progress = func(string, int64) {}
	}
	if r.Logger == nil {
		r.Logger = zap.NewNop()
	}
	return r
}

func validate(r Request) error {
	switch {
	case r.Store == nil:
		return errors.New("replay: no store")
	case r.Base == "":
		return errors.New("replay: no base backup")
	case r.Source == nil:
		return errors.New("replay: no source")
	case r.Target <= 0:
		return fmt.Errorf("replay: target revision %d", r.Target)
	}
	return nil
}

// baseInfo is what Make learns of the base before downloading it.
type baseInfo struct {
	meta       etcdmanager.BackupInfo
	objectSize int64
	facts      baseFacts // zero for a backup without kopsdr.json
}

// baseFacts are the fields of kopsdr.json replay uses.
type baseFacts struct {
	RawBytes  int64  `json:"rawBytes"`
	RawSHA256 string `json:"rawSha256"`
	// Revision is the live store's revision just before the snapshot
	// started; the snapshot holds at least it.
	Revision int64 `json:"revision"`
}

// openBase reads the base's meta (no meta, no backup), size and facts.
func openBase(ctx context.Context, req Request) (*baseInfo, error) {
	meta, err := etcdmanager.ReadBackupInfo(ctx, req.Store, req.Base)
	if err != nil {
		return nil, replayErr(req, err)
	}
	b := &baseInfo{meta: meta}
	info, err := req.Store.Stat(ctx, req.Base+"/"+etcdmanager.DataFile)
	switch {
	case errors.Is(err, backupstore.ErrNotFound):
		return nil, replayErr(req, &scratchetcd.BackupError{Reason: "missing " + req.Base + "/" + etcdmanager.DataFile, Err: err})
	case err != nil:
		return nil, replayErr(req, err)
	}
	b.objectSize = info.Size
	data, err := etcdmanager.ReadSmall(ctx, req.Store, req.Base+"/"+etcdmanager.KopsdrFile)
	switch {
	case err == nil:
		_ = json.Unmarshal(data, &b.facts) // unreadable facts only cost the early checks
	case !errors.Is(err, backupstore.ErrNotFound):
		return nil, replayErr(req, err)
	}
	return b, nil
}
