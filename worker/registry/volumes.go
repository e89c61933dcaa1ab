package registry

import (
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/workflows"
)

// RegisterVolumes registers the legacy EBS path: the VolumeSnapshot and
// VolumeRestore workflows and their EC2 activities (all named EBS...).
func RegisterVolumes(r worker.Registry) {
	r.RegisterWorkflow(workflows.VolumeSnapshot)
	r.RegisterWorkflow(workflows.VolumeRestore)
	r.RegisterActivity(&activities.Volumes{})
}
