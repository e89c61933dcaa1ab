package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/capture"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/replay"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// PITR holds the activities of point-in-time restore: capture every change
// to an etcd cluster into a change store, and make a backup at any point
// the captured changes reach.
type PITR struct {
	// TempDir holds make-backup's scratch etcd (default os.TempDir()).
	TempDir string
	// Metrics, when set, is told the capture's lag.
	Metrics LagRecorder
	// Logger gets capture's own log (re-watches, retries, ends); default
	// slog.Default().
	Logger *slog.Logger
}

// LagRecorder is what capture reports to (internal/metrics.Metrics).
type LagRecorder interface {
	CaptureDurable(cluster, etcd string, observed time.Time)
}

// OpenChainInput names the change store.
type OpenChainInput struct {
	ChangeStore string `json:"changeStore"`
}

// OpenChainResult is the chain capture continues, if any.
type OpenChainResult struct {
	Chain        string          `json:"chain,omitempty"` // empty: none open
	LastRevision int64           `json:"lastRevision,omitempty"`
	Head         *changelog.Head `json:"head,omitempty"`
	Chains       int             `json:"chains"`
	// LastChain and LastEnd describe the newest chain when it has ended:
	// the gap the next chain leaves starts there.
	LastChain *changelog.Chain `json:"lastChain,omitempty"`
	LastEnd   *changelog.End   `json:"lastEnd,omitempty"`
}

// OpenChain finds the chain capture should continue: the newest one, when
// it has not ended.
func (a *PITR) OpenChain(ctx context.Context, in OpenChainInput) (OpenChainResult, error) {
	store, err := openStore(ctx, in.ChangeStore)
	if err != nil {
		return OpenChainResult{}, err
	}
	chains, err := changelog.ListChains(ctx, store)
	if err != nil {
		return OpenChainResult{}, storeErr(in.ChangeStore, err)
	}
	res := OpenChainResult{Chains: len(chains)}
	if len(chains) == 0 {
		return res, nil
	}
	last := chains[len(chains)-1]
	res.LastChain = &last.Chain
	if last.End != nil {
		res.LastEnd = last.End
		return res, nil
	}
	res.Chain, res.LastRevision, res.Head = last.ID, last.LastRevision, last.Head
	return res, nil
}

// StartChainInput starts a chain after a full backup.
type StartChainInput struct {
	ChangeStore  string          `json:"changeStore"`
	Etcd         etcdconn.Config `json:"etcd"`
	EtcdCluster  string          `json:"etcdCluster"`
	BaseBackup   string          `json:"baseBackup"`
	BaseRevision int64           `json:"baseRevision"`
	Now          time.Time       `json:"now"` // workflow time: a retry writes the same chain
}

// StartChain writes a new chain that starts right after a full backup's
// revision. The backup's revision was read before its snapshot, so the
// snapshot holds that revision or a later one: the chain may hold a few
// revisions the backup does too, which replay skips, but never misses one.
func (a *PITR) StartChain(ctx context.Context, in StartChainInput) (string, error) {
	store, err := openStore(ctx, in.ChangeStore)
	if err != nil {
		return "", err
	}
	cli, err := etcdconn.New(ctx, in.Etcd)
	if err != nil {
		return "", etcdErr(in.Etcd, err)
	}
	defer cli.Close()
	members, err := cli.MemberList(ctx)
	if err != nil {
		return "", etcdErr(in.Etcd, err)
	}
	c := changelog.Chain{
		ID:            changelog.NewChainID(in.Now, in.BaseRevision+1),
		EtcdCluster:   in.EtcdCluster,
		ClusterID:     changelog.FormatClusterID(members.Header.ClusterId),
		StartRevision: in.BaseRevision + 1,
		BaseBackup:    in.BaseBackup,
		BaseRevision:  in.BaseRevision,
		Started:       in.Now.UTC(),
	}
	if err := changelog.StartChain(ctx, store, c); err != nil {
		return "", storeErr(in.ChangeStore, err)
	}
	return c.ID, nil
}

// CaptureInput runs capture into one chain for a while.
type CaptureInput struct {
	ChangeStore string          `json:"changeStore"`
	Chain       string          `json:"chain"`
	Etcd        etcdconn.Config `json:"etcd"`
	Cluster     string          `json:"cluster"`
	EtcdCluster string          `json:"etcdCluster"`
	Interval    time.Duration   `json:"interval"`
	// RunFor ends the activity normally after this long, so the workflow
	// gets a turn (retention, continue-as-new) and history stays small.
	RunFor time.Duration `json:"runFor"`
}

// CaptureResult is where capture stood when it returned.
type CaptureResult struct {
	Head  changelog.Head `json:"head"`
	Ended *changelog.End `json:"ended,omitempty"` // the chain cannot go on
}

// Capture watches the etcd cluster and writes its changes to the chain
// until RunFor passes or the chain cannot go on. It resumes after the last
// durable revision in the store, whatever an earlier attempt heartbeated,
// so a killed worker loses and repeats nothing. The heartbeat carries the
// last durable revision.
func (a *PITR) Capture(ctx context.Context, in CaptureInput) (CaptureResult, error) {
	store, err := openStore(ctx, in.ChangeStore)
	if err != nil {
		return CaptureResult{}, err
	}
	cli, err := etcdconn.New(ctx, in.Etcd)
	if err != nil {
		return CaptureResult{}, etcdErr(in.Etcd, err)
	}
	defer cli.Close()

	var head atomic.Pointer[changelog.Head]
	head.Store(&changelog.Head{})
	stop := heartbeatEvery(ctx, 5*time.Second, func() any { return *head.Load() })
	defer stop()

	runCtx, cancel := context.WithTimeout(ctx, in.RunFor)
	defer cancel()
	lg := a.Logger
	if lg == nil {
		lg = slog.Default()
	}
	err = capture.Run(runCtx, cli, store, in.Chain, capture.Options{
		MaxInterval: in.Interval,
		Logger:      lg.With("cluster", in.Cluster, "etcd", in.EtcdCluster, "chain", in.Chain),
		Durable: func(h changelog.Head) {
			head.Store(&h)
			if a.Metrics != nil {
				a.Metrics.CaptureDurable(in.Cluster, in.EtcdCluster, h.Observed)
			}
		},
	})
	res := CaptureResult{Head: *head.Load()}
	var ended *capture.Ended
	switch {
	case errors.As(err, &ended):
		res.Ended = &changelog.End{Reason: ended.Reason, LastRevision: ended.LastRevision, At: time.Now().UTC(), Detail: ended.Detail}
		return res, nil
	case ctx.Err() != nil:
		return res, ctx.Err() // cancelled or timed out by Temporal
	case runCtx.Err() != nil:
		return res, nil // RunFor passed: a normal turn
	case err != nil:
		return res, etcdErr(in.Etcd, err)
	}
	return res, nil
}

// EndChainInput ends a chain.
type EndChainInput struct {
	ChangeStore string        `json:"changeStore"`
	Chain       string        `json:"chain"`
	End         changelog.End `json:"end"`
}

// EndChain records why a chain ended; the next one starts after a new
// full backup, and the revisions between are a recorded gap.
func (a *PITR) EndChain(ctx context.Context, in EndChainInput) error {
	store, err := openStore(ctx, in.ChangeStore)
	if err != nil {
		return err
	}
	return storeErr(in.ChangeStore, changelog.EndChain(ctx, store, in.Chain, in.End))
}

// PruneChangesInput applies the change log's retention.
type PruneChangesInput struct {
	ChangeStore string        `json:"changeStore"`
	BackupStore string        `json:"backupStore"`
	Window      time.Duration `json:"window"`
	Now         time.Time     `json:"now"`
	DryRun      bool          `json:"dryRun,omitempty"`
}

// PruneChanges removes the changes no point inside the window needs. It
// never removes what a kept full backup needs to reach such a point.
func (a *PITR) PruneChanges(ctx context.Context, in PruneChangesInput) (changelog.RetentionPlan, error) {
	backups, changes, err := openBoth(ctx, in.BackupStore, in.ChangeStore)
	if err != nil {
		return changelog.RetentionPlan{}, err
	}
	chains, err := changelog.ListChains(ctx, changes)
	if err != nil {
		return changelog.RetentionPlan{}, storeErr(in.ChangeStore, err)
	}
	if len(chains) == 0 {
		return changelog.RetentionPlan{}, nil
	}
	bases, err := listBases(ctx, backups, chains[0].Started.Add(-time.Hour))
	if err != nil {
		return changelog.RetentionPlan{}, storeErr(in.BackupStore, err)
	}
	plan := changelog.PlanRetention(chains, bases, in.Window, in.Now)
	if in.DryRun {
		return plan, nil
	}
	return plan, storeErr(in.ChangeStore, plan.Apply(ctx, changes))
}

// ResolvePointInput is a point to restore to, a time or a revision.
type ResolvePointInput struct {
	BackupStore string    `json:"backupStore"`
	ChangeStore string    `json:"changeStore"`
	At          time.Time `json:"at,omitzero"`
	Revision    int64     `json:"revision,omitempty"`
	Now         time.Time `json:"now"`
}

// ResolvePoint checks the point against the change log and plans how to
// make it. A point the log cannot reach is refused, not retried, naming
// the nearest points it can.
func (a *PITR) ResolvePoint(ctx context.Context, in ResolvePointInput) (api.PointPlan, error) {
	backups, changes, err := openBoth(ctx, in.BackupStore, in.ChangeStore)
	if err != nil {
		return api.PointPlan{}, err
	}
	chains, p, err := resolve(ctx, changes, in)
	var nr *changelog.NotRestorable
	switch {
	case errors.As(err, &nr):
		return api.PointPlan{}, temporal.NewNonRetryableApplicationError(nr.Error(), api.ErrTypePointNotRestorable, err, nr.Nearest)
	case errors.Is(err, changelog.ErrNothingCaptured):
		return api.PointPlan{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s holds no captured changes: enable capture first (kopsdr pitr enable)", in.ChangeStore), api.ErrTypeNothingCaptured, err)
	case err != nil:
		return api.PointPlan{}, storeErr(in.ChangeStore, err)
	}
	var chain changelog.ChainState
	for _, c := range chains {
		if c.ID == p.Chain {
			chain = c
		}
	}
	// Only full backups of the cluster the chain was captured from can
	// start its replay: none taken before the chain that ended when the
	// cluster changed (a restore) had ended.
	oldest := chain.Started.Add(-time.Hour)
	if _, _, since := changelog.CurrentCluster(chains); since.After(oldest) {
		oldest = since
	}
	bases, err := listBases(ctx, backups, oldest)
	if err != nil {
		return api.PointPlan{}, storeErr(in.BackupStore, err)
	}
	plan := api.PointPlan{Chain: p.Chain, Revision: p.Revision, Observed: p.Observed}
	for _, b := range changelog.ChooseBases(chain, p.Revision, bases) {
		plan.Bases = append(plan.Bases, api.PlannedBase{Backup: b.Backup, Revision: b.Revision, UpTo: b.UpTo})
	}
	if len(plan.Bases) == 0 {
		return api.PointPlan{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no full backup in %s can start a replay to %s: chain %s needs one at revision %d or later, and its own base backup is gone",
				in.BackupStore, p, chain.ID, chain.StartRevision-1), api.ErrTypePointNotRestorable, nil)
	}
	plan.ReplayFrom = plan.Bases[0].Revision + 1
	plan.Description = fmt.Sprintf("restore full backup %s (revision %d) and replay revisions %d to %d from chain %s",
		plan.Bases[0].Backup, plan.Bases[0].Revision, plan.ReplayFrom, p.Revision, p.Chain)
	if !p.Observed.IsZero() {
		plan.Description += fmt.Sprintf(", the last revision kopsdr observed by %s", p.Observed.UTC().Format(time.RFC3339))
	}
	return plan, nil
}

// waitAhead is how long ResolvePoint waits for capture to reach a point it
// has not observed yet: a segment every 5 s and a head every 10 s put a
// point a few seconds old just past what the store shows.
const waitAhead = time.Minute

// resolve reads the change log and resolves the point in it; a point just
// ahead of an open chain is waited for, up to waitAhead after the point.
func resolve(ctx context.Context, changes backupstore.Store, in ResolvePointInput) ([]changelog.ChainState, changelog.Point, error) {
	for {
		all, err := changelog.ListChains(ctx, changes)
		if err != nil {
			return nil, changelog.Point{}, err
		}
		chains, dropped, _ := changelog.CurrentCluster(all)
		var p changelog.Point
		if in.Revision != 0 {
			p, err = changelog.ResolveRevision(ctx, changes, chains, in.Revision)
		} else {
			p, err = changelog.ResolveTime(ctx, changes, chains, in.At, in.Now)
		}
		var nr *changelog.NotRestorable
		if errors.As(err, &nr) && dropped > 0 {
			nr.Reason += fmt.Sprintf(" (%d older chains were captured from etcd before it was restored into a new cluster; "+
				"their revisions were numbered by that cluster, so kopsdr does not offer points in them)", dropped)
		}
		if !errors.As(err, &nr) || !nr.Ahead || !waitable(in) {
			return all, p, err
		}
		activity.RecordHeartbeat(ctx, "waiting for capture to reach "+nr.Value)
		select {
		case <-ctx.Done():
			return nil, changelog.Point{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// waitable: a time within waitAhead of now, which capture is seconds from
// observing. A revision ahead of capture is refused at once, naming the
// newest captured one: nothing says how far ahead of etcd it is.
func waitable(in ResolvePointInput) bool {
	return in.Revision == 0 && time.Since(in.At) < waitAhead
}

// openBoth opens the backup store and the change store.
func openBoth(ctx context.Context, backupStore, changeStore string) (backups, changes backupstore.Store, err error) {
	if backups, err = openStore(ctx, backupStore); err != nil {
		return nil, nil, err
	}
	if changes, err = openStore(ctx, changeStore); err != nil {
		return nil, nil, err
	}
	return backups, changes, nil
}

// listBases reads the revision of every kopsdr backup taken since a time
// (names are times; etcd-manager's own backups record no revision).
func listBases(ctx context.Context, store backupstore.Store, since time.Time) ([]changelog.Base, error) {
	names, err := etcdmanager.ListBackups(ctx, store)
	if err != nil {
		return nil, err
	}
	var bases []changelog.Base
	for _, n := range names {
		t, _, ok := etcdmanager.ParseBackupName(n)
		if !ok || t.Before(since) {
			continue
		}
		data, err := etcdmanager.ReadSmall(ctx, store, n+"/"+etcdmanager.KopsdrFile)
		if errors.Is(err, backupstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var f Facts
		if json.Unmarshal(data, &f) != nil || f.Revision <= 0 {
			continue
		}
		b := changelog.Base{Backup: n, Revision: f.Revision, Taken: t}
		switch {
		case f.PointInTime != nil:
			b.UpTo = f.Revision // made by replay: exactly this revision
		case f.Counts != nil:
			b.UpTo = f.Counts.UpTo
		}
		bases = append(bases, b)
	}
	return bases, nil
}

// MakeSnapshotInput makes the snapshot of a point into a reserved backup
// name; FinalizeBackup then checks it and writes the meta.
type MakeSnapshotInput struct {
	BackupStore string        `json:"backupStore"`
	ChangeStore string        `json:"changeStore"`
	Name        string        `json:"name"`
	Plan        api.PointPlan `json:"plan"`
	SSEKMSKeyID string        `json:"sseKmsKeyId,omitempty"`
}

// MakeSnapshotResult is the upload, as a backup's, and how it was made.
type MakeSnapshotResult struct {
	Upload       UploadResult `json:"upload"`
	BaseBackup   string       `json:"baseBackup"`
	BaseRevision int64        `json:"baseRevision"`
	Txns         int          `json:"txns"`
	// LoweredTo is the etcd version the made database was marked down to
	// (the base's), so the base's etcd restores it; empty when unchanged.
	LoweredTo string `json:"loweredTo,omitempty"`
}

// MakeProgress is the heartbeat detail of MakeSnapshot.
type MakeProgress struct {
	Base  string `json:"base"`
	Stage string `json:"stage"`
	N     int64  `json:"n"`
}

// MakeSnapshot restores the plan's best base into a scratch etcd, replays
// the chain up to the point and streams the result's snapshot into
// <name>/etcd.backup.gz. A base whose snapshot turns out newer than the
// point is skipped for the next. A retry starts over under the same name.
func (a *PITR) MakeSnapshot(ctx context.Context, in MakeSnapshotInput) (MakeSnapshotResult, error) {
	backups, changes, err := openBoth(ctx, in.BackupStore, in.ChangeStore)
	if err != nil {
		return MakeSnapshotResult{}, err
	}
	chain, err := changelog.OpenChain(ctx, changes, in.Plan.Chain)
	if err != nil {
		return MakeSnapshotResult{}, storeErr(in.ChangeStore, err)
	}
	prog := newProgress(MakeProgress{Stage: "start"})
	stop := heartbeatProgress(ctx, 5*time.Second, prog)
	defer stop()
	// What replays of a worker killed mid-way left behind.
	if removed, err := scratchetcd.CleanStale(scratchRoot(a.TempDir), replay.ScratchPrefix, staleScratchAge); len(removed) > 0 || err != nil {
		logger(ctx).Info("make-backup: removed stale scratch dirs", "removed", removed, "error", err)
	}

	var tooNew []string
	for _, base := range in.Plan.Bases {
		res, err := a.makeFrom(ctx, backups, changes, chain, base.Backup, in, prog)
		if errors.Is(err, replay.ErrBaseTooNew) {
			tooNew = append(tooNew, fmt.Sprintf("%s (%v)", base.Backup, err))
			continue
		}
		return res, err
	}
	return MakeSnapshotResult{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("no base backup is at or below revision %d: %v", in.Plan.Revision, tooNew), api.ErrTypePointNotRestorable, nil)
}

func (a *PITR) makeFrom(ctx context.Context, backups, changes backupstore.Store, chain changelog.ChainState, base string, in MakeSnapshotInput, prog *progress) (MakeSnapshotResult, error) {
	key := in.Name + "/" + etcdmanager.DataFile
	// The made backup restores with the base's etcd version and member
	// count, not the scratch etcd's: etcd-manager picks its etcd binary by
	// the meta's version.
	meta, err := etcdmanager.ReadBackupInfo(ctx, backups, base)
	if err != nil {
		return MakeSnapshotResult{}, storeErr(in.BackupStore, err)
	}
	if _, err := backups.AbortIncompleteUploads(ctx, in.Name+"/"); err != nil {
		return MakeSnapshotResult{}, storeErr(in.BackupStore, err)
	}
	pr, pw := io.Pipe()
	putDone := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = backups.Put(ctx, key, pr, backupstore.PutOptions{SSEKMSKeyID: in.SSEKMSKeyID, ContentType: "application/gzip"})
		pr.CloseWithError(err)
		putDone <- err
	}()
	res, err := replay.Make(ctx, replay.Request{
		Store:   backups,
		Base:    base,
		Source:  ChainSource{Store: changes, Chain: chain},
		Target:  in.Plan.Revision,
		TempDir: scratchRoot(a.TempDir),
		Progress: func(stage string, n int64) {
			prog.set(MakeProgress{Base: base, Stage: stage, N: n})
		},
	}, pw, gzip.DefaultCompression)
	pw.CloseWithError(err)
	putErr := <-putDone
	if err != nil {
		if putErr == nil {
			_ = backups.Delete(ctx, key) // a whole but wrong object: never leave it
		}
		return MakeSnapshotResult{}, err
	}
	if putErr != nil {
		return MakeSnapshotResult{}, storeErr(in.BackupStore, putErr)
	}
	if n != res.Snapshot.GzipBytes {
		return MakeSnapshotResult{}, fmt.Errorf("store took %d bytes of %d", n, res.Snapshot.GzipBytes)
	}
	up := UploadResult{Result: res.Snapshot, Endpoint: "replay of " + chain.ID, MemberCount: 1, Counts: res.Counts}
	up.Revision, up.EtcdVersion = res.Revision, meta.EtcdVersion
	if meta.ClusterSpec != nil && meta.ClusterSpec.MemberCount > 0 {
		up.MemberCount = meta.ClusterSpec.MemberCount
	}
	return MakeSnapshotResult{Upload: up, BaseBackup: base, BaseRevision: res.BaseRevision, Txns: res.Txns, LoweredTo: res.OutputVersion}, nil
}

// ChainSource feeds replay the txns of one chain, reading only the
// segments that hold the wanted revisions.
type ChainSource struct {
	Store backupstore.Store
	Chain changelog.ChainState
}

// Txns yields the chain's txns in (after, upTo], in order.
func (c ChainSource) Txns(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
	if after+1 < max(c.Chain.FirstRevision, c.Chain.StartRevision) {
		return fmt.Errorf("chain %s holds revisions from %d; it cannot replay from %d", c.Chain.ID, max(c.Chain.FirstRevision, c.Chain.StartRevision), after+1)
	}
	next := after + 1
	for _, seg := range c.Chain.Segments {
		if seg.Last < next {
			continue
		}
		if seg.First > upTo {
			break
		}
		_, err := changelog.ReadSegment(ctx, c.Store, seg.Key, func(tx changelog.Txn) error {
			if tx.Revision < next || tx.Revision > upTo {
				return nil
			}
			if tx.Revision != next {
				return fmt.Errorf("chain %s: revision %d follows %d", c.Chain.ID, tx.Revision, next-1)
			}
			next++
			return fn(tx)
		})
		if err != nil {
			return err
		}
	}
	if next <= upTo {
		return fmt.Errorf("chain %s reaches revision %d, not %d", c.Chain.ID, next-1, upTo)
	}
	return nil
}
