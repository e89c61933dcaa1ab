// Package registry is the single list of what a kopsdr worker runs (the
// worker's composition root: it alone imports workflows and activities), shared by
// the worker binary and the tests so they can never drift apart.
package registry

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/workflows"
)

// Register registers every kopsdr workflow and activity with the default
// options.
func Register(r worker.Registry) { RegisterWith(r, Options{}) }

// Options are the worker's settings its activities need.
type Options struct {
	// DrillTempDir holds the drills' scratch dirs (default os.TempDir()).
	DrillTempDir string
	// DrillMetrics, when set, is told every drill's outcome.
	DrillMetrics activities.DrillRecorder
	// CaptureMetrics, when set, is told change capture's progress.
	CaptureMetrics activities.LagRecorder
	// Logger gets the log of long-running activities that keep their own
	// (change capture); default slog.Default().
	Logger *slog.Logger
}

// RegisterWith registers every kopsdr workflow and activity.
func RegisterWith(r worker.Registry, o Options) {
	RegisterWorkflows(r)
	r.RegisterActivity(&activities.Backup{})
	r.RegisterActivity(&activities.Restore{Restarter: Restarters()})
	r.RegisterActivity(&activities.Volumes{})
	r.RegisterActivity(&activities.Drill{TempDir: o.DrillTempDir, Metrics: o.DrillMetrics})
	// make-backup's scratch etcd shares the drills' temp dir.
	r.RegisterActivity(&activities.PITR{TempDir: o.DrillTempDir, Metrics: o.CaptureMetrics, Logger: o.Logger})
}

// Restarters restart etcd-manager through each master's runtime: Docker,
// containerd (over SSH), or a reboot through EC2 with the worker's own AWS
// credentials.
func Restarters() restart.Runtimes {
	return restart.Runtimes{
		Docker:     restart.NewDocker(),
		Containerd: restart.NewContainerd(restart.DialContainerd),
		Reboot: restart.NewReboot(func(ctx context.Context, region string) (*ec2.Client, error) {
			return kops.NewEC2Client(ctx, region, "")
		}),
	}
}

// WorkflowRegistry is what registers workflows alone: a worker, or the
// replayer of the replay tests.
type WorkflowRegistry interface{ RegisterWorkflow(w interface{}) }

// RegisterWorkflows registers every kopsdr workflow and no activity.
func RegisterWorkflows(r WorkflowRegistry) {
	for _, w := range []any{workflows.EtcdBackup, workflows.ClusterBackup, workflows.EtcdManagerRestore,
		workflows.VolumeSnapshot, workflows.VolumeRestore, workflows.RestoreDrill, workflows.ClusterDrill,
		workflows.ChangeCapture, workflows.MakeBackup} {
		r.RegisterWorkflow(w)
	}
}
