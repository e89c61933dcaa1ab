package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// RestoreDrill proves backups of one etcd cluster restorable: it chooses
// them (latest, a name, latest-before, or every one not yet drilled), and
// drills each in turn on the worker: download and verify, restore into a
// throwaway etcd, read every key back, check the keys Kubernetes needs and
// the counts the backup recorded. Each result is stored beside its backup.
// The run fails with DrillFailed when a backup fails a check, so schedules,
// alerts and `kopsdr runs --failed` see it. Nothing touches the cluster the
// backups came from.
func RestoreDrill(ctx workflow.Context, in api.RestoreDrillInput) (*api.RestoreDrillResult, error) {
	status := &api.DrillStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (api.DrillStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, drillFail(status, invalidInput(err))
	}
	store, _ := in.Store()
	etcd := in.EtcdClusterOrDefault()
	sa := newSearchAttrs(ctx)
	sa.set(ctx, in.Cluster, etcd, "")
	res := &api.RestoreDrillResult{Cluster: in.Cluster, EtcdCluster: etcd, Store: store, Drills: []api.DrillOutcome{}}

	var a *activities.Drill
	status.Step = "select"
	var names []string
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, backupActivityOptions(0)), a.SelectDrills,
		activities.SelectDrillsInput{Store: store, Selection: in.Selection(), Max: in.MaxBackups}).Get(ctx, &names)
	if err != nil {
		return nil, drillFail(status, err)
	}
	status.Step, status.Pending = "drill", names
	dctx := workflow.WithActivityOptions(ctx, drillActivityOptions())
	var failed []string
	for len(status.Pending) > 0 {
		name := status.Pending[0]
		status.Backup = name
		sa.set(ctx, "", "", name)
		var o api.DrillOutcome
		if err := workflow.ExecuteActivity(dctx, a.RunDrill, activities.RunDrillInput{
			Cluster: in.Cluster, EtcdCluster: etcd, Store: store, Backup: name,
		}).Get(ctx, &o); err != nil {
			return nil, drillFail(status, err)
		}
		res.Drills = append(res.Drills, o)
		status.Done, status.Pending, status.Backup = res.Drills, status.Pending[1:], ""
		if !o.Passed {
			failed = append(failed, fmt.Sprintf("%s (%s)", name, failureSummary(o.Failures)))
		}
	}
	if len(failed) > 0 {
		return nil, drillFail(status, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s: %d of %d backups failed the drill: %s", in.Cluster, etcd, len(failed), len(res.Drills), strings.Join(failed, "; ")),
			api.ErrTypeDrillFailed, nil, res))
	}
	status.Step = "done"
	return res, nil
}

// ClusterDrill drills main and events of one kops cluster as children (ids
// <this id>/main and <this id>/events), like ClusterBackup, and fails if
// either fails; one failing does not stop the other.
func ClusterDrill(ctx workflow.Context, in api.ClusterDrillInput) (*api.ClusterDrillResult, error) {
	status := &api.DrillStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (api.DrillStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, drillFail(status, invalidInput(err))
	}
	newSearchAttrs(ctx).set(ctx, in.Cluster, "", "")
	status.Step = "drill"
	both, firstErr := forBoth[api.RestoreDrillInput, api.RestoreDrillResult](ctx, RestoreDrill, in.ForEtcd)
	res := &api.ClusterDrillResult{Main: both["main"], Events: both["events"]}
	for _, ec := range EtcdClusters {
		if r := both[ec]; r != nil {
			status.Done = append(status.Done, r.Drills...)
		}
	}
	if firstErr != nil {
		return res, drillFail(status, firstErr)
	}
	status.Step = "done"
	return res, nil
}

func failureSummary(fs []api.DrillFailure) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Check + ": " + f.Reason
	}
	return strings.Join(parts, ", ")
}

func drillFail(status *api.DrillStatus, err error) error {
	status.LastError, status.Step = err.Error(), "failed"
	return err
}

// drillActivityOptions: a drill downloads and restores a whole backup, so
// the limit is generous and the heartbeat notices a dead worker. A retry
// starts the drill over; three attempts ride out a store's bad minute.
func drillActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied, activities.ErrTypeDrillScratch},
		},
	}
}
