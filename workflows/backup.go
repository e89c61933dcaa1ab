package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// EtcdBackup takes one etcd-manager-format backup: reserve a name, stream the
// snapshot into <name>/etcd.backup.gz, read it back and verify it, write
// kopsdr.json and finally _etcd_backup.meta, then prune. If it fails after
// the upload started, what it wrote is removed so no half backup remains.
func EtcdBackup(ctx workflow.Context, in EtcdBackupInput) (*EtcdBackupResult, error) {
	status := &BackupStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (BackupStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	store, retention, err := resolveBackup(in)
	if err != nil {
		return nil, invalidInput(err)
	}
	sa := newSearchAttrs(ctx)
	sa.set(ctx, in.Cluster, in.EtcdCluster, "")
	var a *activities.Backup
	ctx = workflow.WithActivityOptions(ctx, backupActivityOptions(in.MaxAttempts))
	now := workflow.Now(ctx).UTC()
	res := &EtcdBackupResult{Cluster: in.Cluster, EtcdCluster: in.EtcdCluster, Store: store, PruneDryRun: in.PruneDryRun}

	// Runs started before this version take each step as its own activity;
	// newer ones prepare and read the spec in one, and read the retention
	// and prune in one: 36 history events instead of 48 (backupsteps.go).
	combined := workflow.GetVersion(ctx, "backupCombinedSteps", workflow.DefaultVersion, 1) >= 1

	status.Step = "prepare"
	var prep activities.PrepareResult
	var spec activities.ClusterSpecInfo
	if combined {
		var pb activities.PreparedBackup
		if err := workflow.ExecuteActivity(ctx, a.PrepareBackupAndReadSpec, prepareInput(in, store, now)).Get(ctx, &pb); err != nil {
			return nil, fail(status, err)
		}
		prep.Name, spec.Spec = pb.Name, pb.Spec
	}
	if !combined {
		if err := workflow.ExecuteActivity(ctx, a.PrepareBackup, prepareInput(in, store, now)).Get(ctx, &prep); err != nil {
			return nil, fail(status, err)
		}
	}
	res.Backup, status.Backup = prep.Name, prep.Name
	sa.set(ctx, "", "", prep.Name)
	if !combined {
		if err := workflow.ExecuteActivity(ctx, a.ReadClusterSpec, activities.SpecInput{Store: store}).Get(ctx, &spec); err != nil {
			return nil, fail(status, err)
		}
	}

	status.Step = "upload"
	var up activities.UploadResult
	uploadCtx := workflow.WithActivityOptions(ctx, uploadActivityOptions(in.MaxAttempts))
	err = workflow.ExecuteActivity(uploadCtx, a.UploadSnapshot, activities.UploadInput{
		Store: store, Name: prep.Name, Etcd: backupEtcdConfig(in), SSEKMSKeyID: in.SSEKMSKeyID,
		GzipLevel: in.CompressionLevel,
	}).Get(ctx, &up)
	if err == nil {
		status.Step = "verify"
		var facts activities.Facts
		err = workflow.ExecuteActivity(uploadCtx, a.FinalizeBackup, activities.FinalizeInput{
			Store: store, Name: prep.Name, Upload: up, ClusterSpec: spec.Spec, MemberCount: up.MemberCount,
			WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, SSEKMSKeyID: in.SSEKMSKeyID, Timestamp: now,
		}).Get(ctx, &facts)
	}
	if err != nil {
		discardIncomplete(ctx, store, prep.Name)
		return nil, fail(status, err)
	}
	res.Bytes, res.SHA256, res.RawBytes, res.RawSHA256 = up.GzipBytes, up.GzipSHA256, up.RawBytes, up.RawSHA256
	res.Revision, res.EtcdVersion, res.Endpoint = up.Revision, up.EtcdVersion, up.Endpoint

	res.Pruned = []string{}
	if !in.NoPrune {
		status.Step = "prune"
		var err error
		prune := activities.PruneInput{Store: store, Now: now, Retention: retention, DryRun: in.PruneDryRun}
		if combined {
			var readDaily *activities.RetentionInput
			if res.RetentionRule = inputRetentionRule(in, &retention); res.RetentionRule == "" {
				readDaily = &activities.RetentionInput{StateStore: in.StateStore, Cluster: in.Cluster, EtcdCluster: in.EtcdCluster}
			}
			var pr activities.RetainAndPruneResult
			err = workflow.ExecuteActivity(ctx, a.RetainAndPrune, activities.RetainAndPruneInput{
				PruneInput: prune, ReadDaily: readDaily,
			}).Get(ctx, &pr)
			if err == nil {
				if pr.Rule != "" {
					res.RetentionRule = pr.Rule
				}
				if pr.Pruned != nil {
					res.Pruned = pr.Pruned
				}
				res.Abandoned = pr.Abandoned
			}
		} else {
			res.RetentionRule, err = dailyRetention(ctx, in, &retention)
			if err == nil {
				prune.Retention = retention
				err = workflow.ExecuteActivity(ctx, a.PruneBackups, prune).Get(ctx, &res.Pruned)
			}
		}
		if err != nil {
			// The backup itself is done and listed; a failed prune must not
			// hide that. It is reported and retried by the next backup.
			status.LastError = "prune: " + err.Error()
			workflow.GetLogger(ctx).Warn("prune failed", "error", err)
		}
	}
	status.Step = "done"
	return res, nil
}

// discardIncomplete removes a folder that never got its meta, in a context
// that survives the workflow's own failure or cancellation.
func discardIncomplete(ctx workflow.Context, store, name string) {
	var a *activities.Backup
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	_ = workflow.ExecuteActivity(dctx, a.DiscardIncomplete, activities.DiscardInput{Store: store, Name: name}).Get(dctx, nil)
}

func backupEtcdConfig(in EtcdBackupInput) etcdconn.Config {
	return etcdconn.Config{Endpoints: in.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key}
}

// resolveBackup validates the input (api's checks: nothing here touches a
// file or a store) and derives the store and the pruning policy.
func resolveBackup(in EtcdBackupInput) (string, etcdmanager.RetentionPolicy, error) {
	if err := in.Validate(); err != nil {
		return "", etcdmanager.RetentionPolicy{}, err
	}
	store, err := in.Store()
	if err != nil {
		return "", etcdmanager.RetentionPolicy{}, err
	}
	var p etcdmanager.RetentionPolicy
	p.KeepAllFor, p.HourlyFor, p.DailyFor, err = in.Retention.Durations()
	return store, p, err
}

// dailyRetention fills in the daily retention the input leaves open from
// the kops cluster spec (etcdClusters[].manager.backupRetentionDays), when
// the state store is known, and says which rule applied. Workflows started
// before this existed replay without the lookup (GetVersion).
func dailyRetention(ctx workflow.Context, in EtcdBackupInput, p *etcdmanager.RetentionPolicy) (string, error) {
	if rule := inputRetentionRule(in, p); rule != "" {
		return rule, nil
	}
	if workflow.GetVersion(ctx, "dailyRetentionFromClusterSpec", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return "", nil
	}
	var a *activities.Backup
	var r activities.RetentionResult
	if err := workflow.ExecuteActivity(ctx, a.ReadDailyRetention, activities.RetentionInput{
		StateStore: in.StateStore, Cluster: in.Cluster, EtcdCluster: in.EtcdCluster,
	}).Get(ctx, &r); err != nil {
		return "", err
	}
	p.DailyFor = time.Duration(r.Days) * 24 * time.Hour
	return r.Rule, nil
}

// inputRetentionRule is the daily retention rule when the input settles it
// (retention.dailyFor given, or no state store to read the spec from), or
// "" when the cluster spec is to be read.
func inputRetentionRule(in EtcdBackupInput, p *etcdmanager.RetentionPolicy) string {
	days := func(d time.Duration) string { return fmt.Sprintf("%g days", d.Hours()/24) }
	if in.Retention != nil && in.Retention.DailyFor != "" {
		return "daily retention " + days(p.DailyFor) + " from the input (retention.dailyFor)"
	}
	if in.StateStore == "" {
		return "daily retention " + days(p.DailyFor) + ", kops's default (no state store to read the cluster spec from)"
	}
	return ""
}

func backupActivityOptions(maxAttempts int32) workflow.ActivityOptions {
	if maxAttempts <= 0 {
		maxAttempts = 8
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts:        maxAttempts,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied},
		},
	}
}

// uploadActivityOptions: a snapshot of a large etcd can take long, so the
// limit is generous, and the heartbeat timeout is what notices a dead worker.
func uploadActivityOptions(maxAttempts int32) workflow.ActivityOptions {
	o := backupActivityOptions(maxAttempts)
	o.StartToCloseTimeout = 2 * time.Hour
	o.HeartbeatTimeout = 20 * time.Second
	return o
}

func fail(status *BackupStatus, err error) error {
	status.LastError, status.Step = err.Error(), "failed"
	return err
}

// prepareInput names the store the operator gave, so the worker can refuse
// a file:// store planted by a typo.
func prepareInput(in EtcdBackupInput, store string, now time.Time) activities.PrepareInput {
	p := activities.PrepareInput{Store: store, Now: now, Root: in.StateStore, RootField: "stateStore", SSEKMSKeyID: in.SSEKMSKeyID}
	if in.BackupStore != "" {
		p.Root, p.RootField = in.BackupStore, "backupStore"
	}
	return p
}
