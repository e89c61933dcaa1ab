// Package registry is the single list of what a kopsdr worker runs (the
// worker's composition root: it alone imports workflows and activities), shared by
// the worker binary and the tests so they can never drift apart.
package registry

import (
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/workflows"
)

// Register registers every kopsdr workflow and activity.
func Register(r worker.Registry) {
	RegisterWorkflows(r)
	r.RegisterActivity(&activities.Backup{})
	r.RegisterActivity(&activities.Restore{Restarter: restart.NewDocker()})
	r.RegisterActivity(&activities.Volumes{})
}

// WorkflowRegistry is what registers workflows alone: a worker, or the
// replayer of the replay tests.
type WorkflowRegistry interface{ RegisterWorkflow(w interface{}) }

// RegisterWorkflows registers every kopsdr workflow and no activity.
func RegisterWorkflows(r WorkflowRegistry) {
	for _, w := range []any{workflows.EtcdBackup, workflows.ClusterBackup, workflows.EtcdManagerRestore,
		workflows.VolumeSnapshot, workflows.VolumeRestore} {
		r.RegisterWorkflow(w)
	}
}
