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
	both, firstErr := forBoth[EtcdBackupInput, EtcdBackupResult](ctx, EtcdBackup, in.ForEtcd)
	res := &ClusterBackupResult{Main: both["main"], Events: both["events"]}
	if firstErr != nil {
		return res, fail(status, firstErr)
	}
	status.Step = "done"
	return res, nil
}
