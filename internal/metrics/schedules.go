package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// maxSchedules bounds what one refresh describes.
const maxSchedules = 100

// ScheduleTargets learns the backup stores from the backup schedules kopsdr
// creates (ids api.BackupScheduleID, "backup/<cluster>", whose action starts
// ClusterBackup with a ClusterBackupInput) and records each schedule's
// interval in kopsdr_backup_interval_seconds on the way. A schedule it
// cannot read is skipped and named in the returned error; the others are
// still returned.
func (m *Metrics) ScheduleTargets(sc client.ScheduleClient) func(ctx context.Context) ([]Target, error) {
	return func(ctx context.Context) ([]Target, error) {
		it, err := sc.List(ctx, client.ScheduleListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		var targets []Target
		var errs []error
		for n := 0; it.HasNext() && n < maxSchedules; {
			e, err := it.Next()
			if err != nil {
				return targets, errors.Join(append(errs, fmt.Errorf("list schedules: %w", err))...)
			}
			if !strings.HasPrefix(e.ID, api.BackupScheduleID("")) {
				continue
			}
			n++
			d, err := sc.GetHandle(ctx, e.ID).Describe(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("schedule %s: %w", e.ID, err))
				continue
			}
			in, err := clusterBackupInput(d.Schedule.Action)
			if err != nil {
				errs = append(errs, fmt.Errorf("schedule %s: %w", e.ID, err))
				continue
			}
			if every := interval(d); every > 0 {
				m.SetBackupInterval(in.Cluster, every)
			}
			for _, ec := range api.EtcdClusters {
				store, err := in.ForEtcd(ec).Store()
				if err != nil {
					errs = append(errs, fmt.Errorf("schedule %s: %w", e.ID, err))
					continue
				}
				targets = append(targets, Target{Cluster: in.Cluster, Etcd: ec, Store: store})
			}
		}
		return targets, errors.Join(errs...)
	}
}

// clusterBackupInput decodes the input a schedule's action starts with.
func clusterBackupInput(a client.ScheduleAction) (api.ClusterBackupInput, error) {
	var in api.ClusterBackupInput
	act, ok := a.(*client.ScheduleWorkflowAction)
	if !ok || len(act.Args) != 1 {
		return in, errors.New("its action does not start a workflow with one input")
	}
	p, ok := act.Args[0].(*commonpb.Payload)
	if !ok {
		return in, fmt.Errorf("its input is a %T, not a payload", act.Args[0])
	}
	if err := converter.GetDefaultDataConverter().FromPayload(p, &in); err != nil {
		return in, fmt.Errorf("its input is not a ClusterBackupInput: %w", err)
	}
	return in, nil
}

// interval is the gap between the schedule's next two runs, which covers
// cron expressions as well as --every; failing that the first interval.
func interval(d *client.ScheduleDescription) time.Duration {
	if next := d.Info.NextActionTimes; len(next) >= 2 {
		return next[1].Sub(next[0])
	}
	if iv := d.Schedule.Spec.Intervals; len(iv) > 0 {
		return iv[0].Every
	}
	return 0
}
