package activities

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// MetricsRecorder is what the metrics interceptor reports to
// (internal/metrics.Metrics in the worker).
type MetricsRecorder interface {
	BackupSucceeded(cluster, etcd string, at time.Time, took time.Duration, bytes int64)
	BackupFailed(cluster, etcd string)
	RestoreStep(cluster, etcd, step string, took time.Duration)
	RestoreFailed(cluster, etcd string)
}

// NewMetricsInterceptor records kopsdr's backup and restore metrics as the
// worker runs activities. It is a worker interceptor rather than code in the
// workflows because workflow code must replay unchanged, and rather than
// calls inside each activity because it sees, for every activity alike, the
// attempt's outcome, its retry policy and its workflow's id.
func NewMetricsInterceptor(rec MetricsRecorder) interceptor.WorkerInterceptor {
	return &metricsWorker{rec: rec}
}

type metricsWorker struct {
	interceptor.WorkerInterceptorBase
	rec MetricsRecorder
}

func (w *metricsWorker) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &metricsActivity{rec: w.rec}
	i.Next = next
	return i
}

type metricsActivity struct {
	interceptor.ActivityInboundInterceptorBase
	rec MetricsRecorder
}

// Activities of the backup workflow, and of the restore with the step names
// its status shows. PendingCommands (a diagnosis after a failure) and the
// legacy EBS path are not counted.
var (
	backupActivities = []string{"PrepareBackup", "ReadClusterSpec", "PrepareBackupAndReadSpec", "UploadSnapshot", "FinalizeBackup"}
	restoreSteps     = map[string]string{
		"DiscoverMasters": "discover masters", "Preflight": "preflight",
		"WriteRestoreCommand": "write restore commands", "RecordBaseline": "record etcd-manager baseline",
		"RestartEtcdManagers": "restart etcd-manager", "WaitRestored": "wait for etcd-manager",
		"CleanMasterLeases": "clean master leases",
	}
)

func (a *metricsActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	out, err := a.Next.ExecuteActivity(ctx, in)
	var arg any
	if len(in.Args) > 0 {
		arg = in.Args[0]
	}
	record(a.rec, info, arg, err, time.Now())
	return out, err
}

// record reports one finished attempt; it is apart from the interceptor so
// tests can give it any activity info.
func record(rec MetricsRecorder, info activity.Info, arg any, err error, now time.Time) {
	typ, wfID := info.ActivityType.Name, info.WorkflowExecution.ID
	switch {
	case slices.Contains(backupActivities, typ):
		cluster, etcd := backupTarget(wfID, storeOf(arg))
		if err != nil {
			if lastAttempt(info, err) {
				rec.BackupFailed(cluster, etcd)
			}
			return
		}
		if f, ok := arg.(FinalizeInput); ok {
			// The meta is written: the backup is listed. It is named for,
			// and its duration counts from, the workflow's start.
			rec.BackupSucceeded(cluster, etcd, f.Timestamp, now.Sub(f.Timestamp), f.Upload.GzipBytes)
		}
	case restoreSteps[typ] != "":
		cluster, ok := strings.CutPrefix(wfID, api.RestoreWorkflowID(""))
		if !ok {
			return
		}
		etcd := restoreEtcd(arg)
		if err != nil {
			if lastAttempt(info, err) {
				rec.RestoreFailed(cluster, etcd)
			}
			return
		}
		rec.RestoreStep(cluster, etcd, restoreSteps[typ], now.Sub(info.StartedTime))
	}
}

// lastAttempt says whether Temporal gives up after this failed attempt: a
// non-retryable error, an error type the policy excludes, or the policy's
// last attempt. A timeout (a killed worker) is never seen here.
func lastAttempt(info activity.Info, err error) bool {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.NonRetryable() {
		return true
	}
	p := info.RetryPolicy
	if p == nil {
		return false
	}
	if ae != nil && slices.Contains(p.NonRetryableErrorTypes, ae.Type()) {
		return true
	}
	return p.MaximumAttempts > 0 && info.Attempt >= p.MaximumAttempts
}

// storeOf is the backup store a backup activity works on.
func storeOf(arg any) string {
	switch in := arg.(type) {
	case PrepareInput:
		return in.Store
	case SpecInput:
		return in.Store
	case UploadInput:
		return in.Store
	case FinalizeInput:
		return in.Store
	}
	return ""
}

// restoreEtcd is the etcd cluster a restore step works on, or "" for a step
// over both.
func restoreEtcd(arg any) string {
	switch in := arg.(type) {
	case WaitInput:
		return in.EtcdCluster
	case CommandInput:
		_, etcd := storeTarget(in.Store)
		return etcd
	}
	return ""
}

// scheduledSuffix is what a Temporal Schedule appends to the workflow id of
// each run: "-" and the scheduled time.
var scheduledSuffix = regexp.MustCompile(`-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// backupTarget names the kops cluster and etcd cluster of a backup: from
// the store when it has kops's layout (<stateStore>/<cluster>/backups/etcd/
// <etcd>), else from the workflow id, whose shapes api defines:
// backup/<cluster>/<etcd>/<time> (one-off), <schedule run or cluster
// backup>/<etcd> (ClusterBackup's children) and
// restore/<cluster>/safety-backup/<etcd>.
func backupTarget(workflowID, store string) (cluster, etcd string) {
	if c, e := storeTarget(store); c != "" {
		return c, e
	}
	p := strings.Split(workflowID, "/")
	switch {
	case len(p) == 4 && p[0] == "restore" && p[2] == "safety-backup":
		return p[1], p[3]
	case len(p) == 4 && p[0] == "backup":
		return p[1], p[2]
	case len(p) == 3 && p[0] == "backup":
		return scheduledSuffix.ReplaceAllString(p[1], ""), p[2]
	}
	return "unknown", "unknown"
}

// storeTarget reads <cluster> and <etcd> from a store in kops's layout.
func storeTarget(store string) (cluster, etcd string) {
	p := strings.Split(strings.TrimRight(store, "/"), "/")
	if n := len(p); n >= 4 && p[n-3] == "backups" && p[n-2] == "etcd" && slices.Contains(api.EtcdClusters, p[n-1]) {
		return p[n-4], p[n-1]
	}
	return "", ""
}
