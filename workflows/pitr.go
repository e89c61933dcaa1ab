package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/workflows/api"
)

const (
	// captureTurn is how long one Capture activity runs before the
	// workflow gets a turn (retention, continue-as-new).
	captureTurn = 30 * time.Minute
	// captureTurnsPerRun: a run continues as new after a day of turns, so
	// its history stays a few hundred events.
	captureTurnsPerRun = 48
	// pruneEvery is how often retention of the change log runs.
	pruneEvery = time.Hour
	// chainRetryWait is the pause before a failed chain start (its full
	// backup already retried a few times) is tried again.
	chainRetryWait = time.Minute
)

// isFinal says an error will not go away by waiting: bad input or denied
// access, which an operator has to fix.
func isFinal(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	switch appErr.Type() {
	case activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied:
		return true
	}
	return false
}

// ChangeCapture records every change to one etcd cluster in the change
// store, so that a backup can later be made at any revision or second:
// a full backup, a chain of change segments from the revision after it,
// and, when the chain cannot go on (etcd compacted past where capture must
// resume, or the cluster was replaced), a new full backup and a new chain,
// with the gap between them recorded. It runs until cancelled (`kopsdr
// pitr disable`), which ends the chain.
func ChangeCapture(ctx workflow.Context, in api.ChangeCaptureInput) error {
	status := &api.CaptureStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (api.CaptureStatus, error) { return *status, nil }); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return invalidInput(err)
	}
	stores, _ := in.Stores()
	status.ChangeStore = stores.Change
	etcd := in.Etcd()
	sa := newSearchAttrs(ctx)
	sa.set(ctx, in.Cluster, etcd, "")
	c := &captureRun{in: in, stores: stores, status: status,
		conn: etcdconn.Config{Endpoints: in.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key}}
	c.window, c.interval = in.Durations()

	err := c.run(ctx)
	if temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
		c.end(ctx)
		status.Step = "stopped"
		return err
	}
	if err != nil {
		status.LastError = err.Error()
	}
	return err
}

type captureRun struct {
	in       api.ChangeCaptureInput
	stores   api.PITRStores
	conn     etcdconn.Config
	status   *api.CaptureStatus
	window   time.Duration
	interval time.Duration
	chain    string
}

func (c *captureRun) run(ctx workflow.Context) error {
	var a *activities.PITR
	actx := workflow.WithActivityOptions(ctx, backupActivityOptions(0))
	cctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: captureTurn + 5*time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		// Wait for a cancelled capture to stop, so the chain's end is
		// written after its last segment.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			// An unreachable etcd or store is retried for as long as it takes:
			// capture resumes where the store says, and a gap is recorded if
			// etcd compacted meanwhile.
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied},
		},
	})
	var lastPrune time.Time
	for turn := 0; turn < captureTurnsPerRun; turn++ {
		var open activities.OpenChainResult
		if err := workflow.ExecuteActivity(actx, a.OpenChain, activities.OpenChainInput{ChangeStore: c.stores.Change}).Get(ctx, &open); err != nil {
			return err
		}
		c.chain = open.Chain
		if c.chain == "" {
			if err := c.startChain(ctx, open); err != nil {
				if isFinal(err) {
					return err
				}
				// etcd or the store is down: capture must not end for that.
				// The status says why; the next turn tries again.
				c.status.LastError = err.Error()
				workflow.GetLogger(ctx).Warn("starting a change chain failed; trying again", "error", err, "in", chainRetryWait)
				if err := workflow.Sleep(ctx, chainRetryWait); err != nil {
					return err
				}
				continue
			}
			c.status.LastError = ""
		} else if turn == 0 && workflow.GetInfo(ctx).ContinuedExecutionRunID != "" {
			c.dailyBase(ctx)
		}
		c.status.Step, c.status.Chain = "capture", c.chain
		var res activities.CaptureResult
		if err := workflow.ExecuteActivity(cctx, a.Capture, activities.CaptureInput{
			ChangeStore: c.stores.Change, Chain: c.chain, Etcd: c.conn, Cluster: c.in.Cluster, EtcdCluster: c.in.Etcd(),
			Interval: c.interval, RunFor: captureTurn,
		}).Get(ctx, &res); err != nil {
			return err
		}
		if res.Head.Revision > 0 {
			c.status.Revision, c.status.Observed = res.Head.Revision, res.Head.Observed
		}
		if res.Ended != nil {
			workflow.GetLogger(ctx).Warn("change chain ended", "chain", c.chain, "reason", res.Ended.Reason, "detail", res.Ended.Detail)
			if err := workflow.ExecuteActivity(actx, a.EndChain, activities.EndChainInput{
				ChangeStore: c.stores.Change, Chain: c.chain, End: *res.Ended,
			}).Get(ctx, nil); err != nil {
				return err
			}
			continue // a full backup and a new chain at once
		}
		if now := workflow.Now(ctx); now.Sub(lastPrune) >= pruneEvery {
			c.status.Step = "retention"
			var plan changelog.RetentionPlan
			err := workflow.ExecuteActivity(actx, a.PruneChanges, activities.PruneChangesInput{
				ChangeStore: c.stores.Change, BackupStore: c.stores.Backup, Window: c.window, Now: now, DryRun: c.in.RetentionDryRun,
			}).Get(ctx, &plan)
			if err != nil {
				// Capture matters more than clean-up; the next turn retries.
				c.status.LastError = "retention: " + err.Error()
			}
			lastPrune = now
		}
	}
	return workflow.NewContinueAsNewError(ctx, ChangeCapture, c.in)
}

// startChain takes a full backup and starts a chain right after it. When
// an earlier chain ended, the revisions between are the gap.
func (c *captureRun) startChain(ctx workflow.Context, open activities.OpenChainResult) error {
	c.status.Step = "backup"
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	now := workflow.Now(ctx).UTC()
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: id + "/backup/" + now.Format("20060102T150405Z"),
	})
	var b api.EtcdBackupResult
	err := workflow.ExecuteChildWorkflow(cctx, EtcdBackup, c.backupInput()).Get(ctx, &b)
	if err != nil {
		return fmt.Errorf("full backup to start a change chain: %w", err)
	}
	var a *activities.PITR
	actx := workflow.WithActivityOptions(ctx, backupActivityOptions(0))
	if err := workflow.ExecuteActivity(actx, a.StartChain, activities.StartChainInput{
		ChangeStore: c.stores.Change, Etcd: c.conn, EtcdCluster: c.in.Etcd(), BaseBackup: b.Backup, BaseRevision: b.Revision, Now: now,
	}).Get(ctx, &c.chain); err != nil {
		return err
	}
	if open.LastEnd != nil && open.LastChain != nil {
		c.status.Gaps = append(c.status.Gaps, api.Gap{
			After: open.LastChain.ID, Reason: open.LastEnd.Reason, FromRev: open.LastEnd.LastRevision + 1, ToRev: b.Revision,
			FromTime: open.LastEnd.At, ToTime: now, NextChain: c.chain,
		})
	}
	return nil
}

// dailyBase takes a full backup at the start of each continued run, that
// is once a day, while the chain goes on: a base near every point, so a
// make-backup replays at most about a day of changes, and retention can
// drop the changes before it (etcd-manager's own backups record no
// revision and cannot serve). A failure only costs that; capture goes on.
func (c *captureRun) dailyBase(ctx workflow.Context) {
	if workflow.GetVersion(ctx, "dailyBase", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	c.status.Step = "backup"
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: id + "/backup/" + workflow.Now(ctx).UTC().Format("20060102T150405Z"),
	})
	err := workflow.ExecuteChildWorkflow(cctx, EtcdBackup, c.backupInput()).Get(ctx, nil)
	if err != nil {
		c.status.LastError = "daily full backup: " + err.Error()
		workflow.GetLogger(ctx).Warn("daily full backup failed; capture goes on", "error", err)
	}
}

// backupInput is the full backup a chain starts from, or a daily base.
func (c *captureRun) backupInput() api.EtcdBackupInput {
	return api.EtcdBackupInput{
		Cluster: c.in.Cluster, EtcdCluster: c.in.Etcd(), StateStore: c.in.StateStore, BackupStore: c.in.BackupStore,
		Endpoints: c.in.Endpoints,
		BackupOptions: api.BackupOptions{CACert: c.in.CACert, Cert: c.in.Cert, Key: c.in.Key, SSEKMSKeyID: c.in.SSEKMSKeyID,
			NoPrune: true}, // etcd-manager and the backup schedule prune; a capture restart must not
	}
}

// end records that capture was disabled, in a context that survives the
// cancellation. The next enable starts after a new full backup.
func (c *captureRun) end(ctx workflow.Context) {
	if c.chain == "" {
		return
	}
	var a *activities.PITR
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	_ = workflow.ExecuteActivity(dctx, a.EndChain, activities.EndChainInput{
		ChangeStore: c.stores.Change, Chain: c.chain,
		End: changelog.End{Reason: changelog.EndDisabled, At: workflow.Now(ctx).UTC(), Detail: "capture disabled"},
	}).Get(dctx, nil)
}

// MakeBackup makes an ordinary etcd-manager backup of one etcd cluster at
// a point the change log reaches: the newest usable full backup restored
// into a scratch etcd on the worker, the captured changes after it replayed
// one transaction per revision up to the point, and the result streamed
// into the backup store under a new backup name, checked, with kopsdr.json
// naming its base and revision. etcd-manager-ctl and `kopsdr restore` then
// restore it like any other backup.
func MakeBackup(ctx workflow.Context, in api.MakeBackupInput) (*api.MakeBackupResult, error) {
	status := &api.MakeBackupStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (api.MakeBackupStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, makeFail(status, invalidInput(err))
	}
	stores, _ := in.Stores()
	at, _ := api.CheckPoint("at", in.At, "revision", in.Revision)
	sa := newSearchAttrs(ctx)
	sa.set(ctx, in.Cluster, in.Etcd(), "")
	begin := workflow.Now(ctx)

	var a *activities.PITR
	actx := workflow.WithActivityOptions(ctx, backupActivityOptions(0))
	status.Step = "resolve"
	var plan api.PointPlan
	if err := workflow.ExecuteActivity(actx, a.ResolvePoint, activities.ResolvePointInput{
		BackupStore: stores.Backup, ChangeStore: stores.Change, At: at, Revision: in.Revision, Now: begin,
	}).Get(ctx, &plan); err != nil {
		return nil, makeFail(status, err)
	}
	status.Plan = &plan
	res, err := makeBackup(ctx, in.Cluster, in.Etcd(), stores, plan, in.SSEKMSKeyID, status, sa)
	if err != nil {
		return nil, makeFail(status, err)
	}
	res.Seconds = workflow.Now(ctx).Sub(begin).Seconds()
	status.Step = "done"
	return res, nil
}

// makeBackup makes the backup a resolved plan describes; the restore runs
// it after approval, MakeBackup right away.
func makeBackup(ctx workflow.Context, cluster, etcd string, stores api.PITRStores, plan api.PointPlan, sse string,
	status *api.MakeBackupStatus, sa *searchAttrs) (*api.MakeBackupResult, error) {
	var b *activities.Backup
	var a *activities.PITR
	actx := workflow.WithActivityOptions(ctx, backupActivityOptions(0))
	now := workflow.Now(ctx).UTC()

	status.Step = "prepare"
	var prep activities.PrepareResult
	if err := workflow.ExecuteActivity(actx, b.PrepareBackup, activities.PrepareInput{Store: stores.Backup, Now: now, SSEKMSKeyID: sse}).Get(ctx, &prep); err != nil {
		return nil, err
	}
	status.Backup = prep.Name
	sa.set(ctx, "", "", prep.Name)
	var spec activities.ClusterSpecInfo
	if err := workflow.ExecuteActivity(actx, b.ReadClusterSpec, activities.SpecInput{Store: stores.Backup}).Get(ctx, &spec); err != nil {
		// The name is reserved by now (an object in its folder). Runs that
		// failed here before this version left it; GetVersion only on this
		// path, so that no other run's history changes.
		if workflow.GetVersion(ctx, "makeBackupDiscardsReservation", workflow.DefaultVersion, 1) >= 1 {
			discardIncomplete(ctx, stores.Backup, prep.Name)
		}
		return nil, err
	}

	status.Step = "replay"
	mctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{
			activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied, api.ErrTypePointNotRestorable, activities.ErrTypeCorruptBackup}},
	})
	var made activities.MakeSnapshotResult
	err := workflow.ExecuteActivity(mctx, a.MakeSnapshot, activities.MakeSnapshotInput{
		BackupStore: stores.Backup, ChangeStore: stores.Change, Name: prep.Name, Plan: plan, SSEKMSKeyID: sse,
	}).Get(ctx, &made)
	if err == nil {
		status.Step = "verify"
		err = workflow.ExecuteActivity(mctx, b.FinalizeBackup, activities.FinalizeInput{
			Store: stores.Backup, Name: prep.Name, Upload: made.Upload, ClusterSpec: spec.Spec, MemberCount: made.Upload.MemberCount,
			WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, SSEKMSKeyID: sse, Timestamp: now,
			PointInTime: &activities.PointInTimeFacts{
				BaseBackup: made.BaseBackup, BaseRevision: made.BaseRevision, Chain: plan.Chain,
				Revision: plan.Revision, Observed: plan.Observed, Txns: made.Txns, LoweredTo: made.LoweredTo,
			},
		}).Get(ctx, nil)
	}
	if err != nil {
		discardIncomplete(ctx, stores.Backup, prep.Name)
		return nil, err
	}
	return &api.MakeBackupResult{
		Cluster: cluster, EtcdCluster: etcd, Store: stores.Backup, Backup: prep.Name, Plan: plan,
		BaseBackup: made.BaseBackup, BaseRevision: made.BaseRevision, Revision: plan.Revision,
		Txns: made.Txns, Bytes: made.Upload.GzipBytes,
	}, nil
}

func makeFail(status *api.MakeBackupStatus, err error) error {
	status.LastError, status.Step = err.Error(), "failed"
	return err
}
