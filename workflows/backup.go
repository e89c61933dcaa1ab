package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// EtcdBackupInput backs up one etcd cluster (main or events) of one kops
// cluster. Only file paths on the worker travel here, never key material.
type EtcdBackupInput struct {
	Cluster     string   `json:"cluster"`
	EtcdCluster string   `json:"etcdCluster"`           // main | events
	StateStore  string   `json:"stateStore,omitempty"`  // kops state store; the backup store is <stateStore>/<cluster>/backups/etcd/<etcdCluster>
	BackupStore string   `json:"backupStore,omitempty"` // or the backup store itself
	Endpoints   []string `json:"endpoints"`
	BackupOptions
}

// BackupOptions are the settings a backup of main and one of events share.
// Embedded, their fields stay at the top level of the JSON input.
type BackupOptions struct {
	CACert      string     `json:"cacert,omitempty"`
	Cert        string     `json:"cert,omitempty"`
	Key         string     `json:"key,omitempty"`
	SSEKMSKeyID string     `json:"sseKmsKeyId,omitempty"`
	Retention   *Retention `json:"retention,omitempty"`
	NoPrune     bool       `json:"noPrune,omitempty"`
	PruneDryRun bool       `json:"pruneDryRun,omitempty"`
	// MaxAttempts bounds how often an unreachable etcd or store is retried
	// (with exponential backoff from 2 s) before the backup fails. Default 8.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// Retention is etcd-manager's pruning policy, as Go durations ("1h", "168h").
type Retention struct {
	KeepAllFor string `json:"keepAllFor,omitempty"` // default 1h
	HourlyFor  string `json:"hourlyFor,omitempty"`  // default 168h (7 days)
	DailyFor   string `json:"dailyFor,omitempty"`   // default 2160h (90 days)
}

// EtcdBackupResult describes the backup that was written.
type EtcdBackupResult struct {
	Cluster     string   `json:"cluster"`
	EtcdCluster string   `json:"etcdCluster"`
	Store       string   `json:"store"`
	Backup      string   `json:"backup"`
	Bytes       int64    `json:"bytes"`  // size of etcd.backup.gz
	SHA256      string   `json:"sha256"` // of etcd.backup.gz
	RawBytes    int64    `json:"rawBytes"`
	RawSHA256   string   `json:"rawSha256"`
	Revision    int64    `json:"revision"`
	EtcdVersion string   `json:"etcdVersion"`
	Endpoint    string   `json:"endpoint"`
	Pruned      []string `json:"pruned"`
	PruneDryRun bool     `json:"pruneDryRun,omitempty"`
	// RetentionRule says where the daily retention of the prune came from:
	// the input, the kops cluster spec, or kops's default.
	RetentionRule string `json:"retentionRule,omitempty"`
}

// BackupStatus is what the "status" query returns.
type BackupStatus struct {
	Step      string `json:"step"`
	Backup    string `json:"backup,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// QueryStatus is the query name every kopsdr workflow answers.
const QueryStatus = "status"

// EtcdBackup takes one etcd-manager-format backup: reserve a name, stream the
// snapshot into <name>/etcd.backup.gz, read it back and verify it, write
// kopsdr.json and finally _etcd_backup.meta, then prune. If it fails after
// the upload started, what it wrote is removed so no half backup remains.
func EtcdBackup(ctx workflow.Context, in EtcdBackupInput) (*EtcdBackupResult, error) {
	status := &BackupStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (BackupStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	store, retention, err := in.resolve()
	if err != nil {
		return nil, invalidInput(err)
	}
	var a *activities.Backup
	ctx = workflow.WithActivityOptions(ctx, backupActivityOptions(in.MaxAttempts))
	now := workflow.Now(ctx).UTC()
	res := &EtcdBackupResult{Cluster: in.Cluster, EtcdCluster: in.EtcdCluster, Store: store, PruneDryRun: in.PruneDryRun}

	status.Step = "prepare"
	var prep activities.PrepareResult
	if err := workflow.ExecuteActivity(ctx, a.PrepareBackup, activities.PrepareInput{Store: store, Now: now}).Get(ctx, &prep); err != nil {
		return nil, fail(status, err)
	}
	res.Backup, status.Backup = prep.Name, prep.Name
	var spec activities.ClusterSpecInfo
	if err := workflow.ExecuteActivity(ctx, a.ReadClusterSpec, activities.SpecInput{Store: store}).Get(ctx, &spec); err != nil {
		return nil, fail(status, err)
	}

	status.Step = "upload"
	var up activities.UploadResult
	uploadCtx := workflow.WithActivityOptions(ctx, uploadActivityOptions(in.MaxAttempts))
	err = workflow.ExecuteActivity(uploadCtx, a.UploadSnapshot, activities.UploadInput{
		Store: store, Name: prep.Name, Etcd: in.etcdConfig(), SSEKMSKeyID: in.SSEKMSKeyID,
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
		res.RetentionRule, err = in.dailyRetention(ctx, &retention)
		if err == nil {
			err = workflow.ExecuteActivity(ctx, a.PruneBackups, activities.PruneInput{
				Store: store, Now: now, Retention: retention, DryRun: in.PruneDryRun,
			}).Get(ctx, &res.Pruned)
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

func (in EtcdBackupInput) etcdConfig() etcdconn.Config {
	return etcdconn.Config{Endpoints: in.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key}
}

// resolve validates the input (pure checks only: files and stores are
// checked by activities on the worker) and derives the store and policy.
func (in EtcdBackupInput) resolve() (string, etcdmanager.RetentionPolicy, error) {
	if err := checkCluster(in.Cluster); err != nil {
		return "", etcdmanager.RetentionPolicy{}, err
	}
	if err := checkEtcdCluster("etcdCluster", in.EtcdCluster); err != nil {
		return "", etcdmanager.RetentionPolicy{}, err
	}
	if len(in.Endpoints) == 0 {
		return "", etcdmanager.RetentionPolicy{}, invalid("endpoints", "", `list the etcd client URLs, e.g. ["https://127.0.0.1:4001"] for main or :4002 for events`)
	}
	store, err := BackupStoreFor(in.StateStore, in.BackupStore, in.Cluster, in.EtcdCluster)
	if err != nil {
		return "", etcdmanager.RetentionPolicy{}, err
	}
	policy, err := in.Retention.policy()
	return store, policy, err
}

// dailyRetention fills in the daily retention the input leaves open from
// the kops cluster spec (etcdClusters[].manager.backupRetentionDays), when
// the state store is known, and says which rule applied. Workflows started
// before this existed replay without the lookup (GetVersion).
func (in EtcdBackupInput) dailyRetention(ctx workflow.Context, p *etcdmanager.RetentionPolicy) (string, error) {
	days := func(d time.Duration) string { return fmt.Sprintf("%g days", d.Hours()/24) }
	if in.Retention != nil && in.Retention.DailyFor != "" {
		return "daily retention " + days(p.DailyFor) + " from the input (retention.dailyFor)", nil
	}
	if in.StateStore == "" {
		return "daily retention " + days(p.DailyFor) + ", kops's default (no state store to read the cluster spec from)", nil
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

func (r *Retention) policy() (etcdmanager.RetentionPolicy, error) {
	p := etcdmanager.DefaultRetention()
	if r == nil {
		return p, nil
	}
	for _, err := range []error{
		setDuration("retention.keepAllFor", r.KeepAllFor, &p.KeepAllFor),
		setDuration("retention.hourlyFor", r.HourlyFor, &p.HourlyFor),
		setDuration("retention.dailyFor", r.DailyFor, &p.DailyFor),
	} {
		if err != nil {
			return p, err
		}
	}
	return p, nil
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

// BackupStoreFor derives the backup store of one etcd cluster the way kops
// lays it out: <stateStore>/<cluster>/backups/etcd/<etcdCluster>.
func BackupStoreFor(stateStore, backupStore, cluster, etcdCluster string) (string, error) {
	if backupStore != "" {
		return backupStore, nil
	}
	if stateStore == "" {
		return "", invalid("stateStore", "", "give the kops state store (as in KOPS_STATE_STORE, e.g. s3://my.clusters) or backupStore (e.g. s3://my.clusters/test.my.clusters/backups/etcd/main)")
	}
	return fmt.Sprintf("%s/%s/backups/etcd/%s", strings.TrimRight(stateStore, "/"), cluster, etcdCluster), nil
}
