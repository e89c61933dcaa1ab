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
	r.RegisterWorkflow(workflows.EtcdBackup)
	r.RegisterWorkflow(workflows.ClusterBackup)
	r.RegisterActivity(&activities.Backup{})

	r.RegisterWorkflow(workflows.EtcdManagerRestore)
	r.RegisterActivity(&activities.Restore{Restarter: restart.NewDocker()})

	RegisterVolumes(r)
}
