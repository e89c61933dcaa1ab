package workflows

import (
	"go.temporal.io/sdk/workflow"
)

// ClusterBackup runs EtcdBackup for main and events in parallel as children
// (ids <this id>/main and <this id>/events) and waits for both. One failing
// does not stop the other: a backup of events is still worth keeping.
func ClusterBackup(ctx workflow.Context, in ClusterBackupInput) (*ClusterBackupResult, error) {
	status := &BackupStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (BackupStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	// Validate both halves before starting either, so bad input starts nothing.
	if err := in.Validate(); err != nil {
		return nil, fail(status, invalidInput(err))
	}
	newSearchAttrs(ctx).set(ctx, in.Cluster, "", "")
	status.Step = "backup"
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	futures := map[string]workflow.ChildWorkflowFuture{}
	for _, ec := range EtcdClusters {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "/" + ec})
		futures[ec] = workflow.ExecuteChildWorkflow(cctx, EtcdBackup, in.ForEtcd(ec))
	}
	res := &ClusterBackupResult{}
	var firstErr error
	for _, ec := range EtcdClusters {
		var r EtcdBackupResult
		if err := futures[ec].Get(ctx, &r); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if ec == "main" {
			res.Main = &r
		} else {
			res.Events = &r
		}
	}
	if firstErr != nil {
		return res, fail(status, firstErr)
	}
	status.Step = "done"
	return res, nil
}
