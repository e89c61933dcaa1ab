package workflows

import (
	"go.temporal.io/sdk/workflow"
)

// ClusterBackupInput backs up main and events of one kops cluster. It is the
// input the backup schedule uses.
type ClusterBackupInput struct {
	Cluster    string     `json:"cluster"`
	StateStore string     `json:"stateStore,omitempty"`
	Main       EtcdTarget `json:"main"`
	Events     EtcdTarget `json:"events"`
	BackupOptions
}

// EtcdTarget is where one etcd cluster answers and, optionally, its store.
type EtcdTarget struct {
	Endpoints   []string `json:"endpoints"`
	BackupStore string   `json:"backupStore,omitempty"`
}

// ClusterBackupResult has one result per etcd cluster.
type ClusterBackupResult struct {
	Main   *EtcdBackupResult `json:"main"`
	Events *EtcdBackupResult `json:"events"`
}

// ForEtcd is the child input for one etcd cluster.
func (in ClusterBackupInput) ForEtcd(etcdCluster string) EtcdBackupInput {
	t := in.Main
	if etcdCluster == "events" {
		t = in.Events
	}
	return EtcdBackupInput{
		Cluster: in.Cluster, EtcdCluster: etcdCluster, StateStore: in.StateStore, BackupStore: t.BackupStore,
		Endpoints: t.Endpoints, BackupOptions: in.BackupOptions,
	}
}

// ClusterBackup runs EtcdBackup for main and events in parallel as children
// (ids <this id>/main and <this id>/events) and waits for both. One failing
// does not stop the other: a backup of events is still worth keeping.
func ClusterBackup(ctx workflow.Context, in ClusterBackupInput) (*ClusterBackupResult, error) {
	status := &BackupStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (BackupStatus, error) { return *status, nil }); err != nil {
		return nil, err
	}
	// Validate both halves before starting either, so bad input starts nothing.
	for _, ec := range EtcdClusters {
		if _, _, err := in.ForEtcd(ec).resolve(); err != nil {
			return nil, fail(status, invalidInput(prefixField(err, ec)))
		}
	}
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
