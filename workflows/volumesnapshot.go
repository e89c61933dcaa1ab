package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// VolumeSnapshot finds the cluster's etcd volumes by their protokube tags,
// starts a snapshot of each at once (tagged with the cluster, set, etcd
// cluster, member, zone, the volume's tags and this workflow's id), waits
// until all are completed, then applies retention to the cluster's sets.
func VolumeSnapshot(ctx workflow.Context, in VolumeSnapshotInput) (*VolumeSnapshotResult, error) {
	st := &VolumeSnapshotStatus{Step: "validate"}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (VolumeSnapshotStatus, error) { return *st, nil }); err != nil {
		return nil, err
	}
	fail := func(err error) error {
		st.Step, st.LastError = "failed", err.Error()
		return err
	}
	etcdClusters, policy, waitTimeout, err := resolveVolumeSnapshot(in)
	if err != nil {
		return nil, fail(invalidInput(err))
	}
	newSearchAttrs(ctx).set(ctx, in.Cluster, onlyOne(etcdClusters), "")
	info := workflow.GetInfo(ctx)
	set := ebs.SetID(info.WorkflowStartTime, info.WorkflowExecution.RunID)
	st.Set = set
	res := &VolumeSnapshotResult{Cluster: in.Cluster, Region: in.Region, Set: set, PruneDryRun: in.PruneDryRun}
	var a *activities.Volumes
	actx := workflow.WithActivityOptions(ctx, ec2ActivityOptions(in.MaxAttempts))

	st.Step = "find volumes"
	var vols []ebs.EtcdVolume
	if err := workflow.ExecuteActivity(actx, a.EBSFindEtcdVolumes, activities.FindVolumesInput{
		Region: in.Region, Cluster: in.Cluster, EtcdClusters: etcdClusters,
	}).Get(ctx, &vols); err != nil {
		return nil, fail(err)
	}

	// Start every snapshot before waiting for any: the set is as close to
	// one point in time as EC2 allows.
	st.Step = "snapshot"
	futures := make([]workflow.Future, len(vols))
	for i, v := range vols {
		futures[i] = workflow.ExecuteActivity(actx, a.EBSSnapshotVolume, activities.SnapshotVolumeInput{
			Region: in.Region, Volume: v, Set: set, SetSize: len(vols), WorkflowID: info.WorkflowExecution.ID,
		})
	}
	var ids []string
	var firstErr error
	for i, f := range futures {
		var sn ebs.Snapshot
		if err := f.Get(ctx, &sn); err != nil {
			firstErr = volumeFirstErr(firstErr, err)
			continue
		}
		ids = append(ids, sn.ID)
		st.Snapshots = append(st.Snapshots, volumeSnapshotRef(vols[i], sn))
	}
	if firstErr != nil {
		// The snapshots that did start complete on their own; the set is
		// incomplete and retention will treat it as failed.
		return nil, fail(firstErr)
	}

	st.Step = "wait"
	var done []ebs.Snapshot
	wctx := workflow.WithActivityOptions(ctx, ec2WaitActivityOptions(in.MaxAttempts, waitTimeout))
	if err := workflow.ExecuteActivity(wctx, a.EBSWaitSnapshots, activities.WaitSnapshotsInput{
		Region: in.Region, SnapshotIDs: ids,
	}).Get(ctx, &done); err != nil {
		return nil, fail(err)
	}
	for i, sn := range done {
		st.Snapshots[i] = volumeSnapshotRef(vols[i], sn)
	}
	res.Snapshots = st.Snapshots

	if !in.NoPrune {
		st.Step = "prune"
		var plan ebs.RetentionPlan
		if err := workflow.ExecuteActivity(actx, a.EBSPruneSnapshots, activities.PruneSnapshotsInput{
			Region: in.Region, Cluster: in.Cluster, Now: workflow.Now(ctx).UTC(), Policy: policy, DryRun: in.PruneDryRun,
		}).Get(ctx, &plan); err != nil {
			// The set itself is done and findable; a failed prune is
			// reported and retried by the next run.
			st.LastError = "prune: " + err.Error()
			workflow.GetLogger(ctx).Warn("prune failed", "error", err)
		} else {
			res.Retention = &plan
		}
	}
	st.Step = "done"
	return res, nil
}

func volumeSnapshotRef(v ebs.EtcdVolume, sn ebs.Snapshot) VolumeSnapshotRef {
	return VolumeSnapshotRef{ID: sn.ID, VolumeID: v.ID, EtcdCluster: v.EtcdCluster, Member: v.Etcd.Member,
		AvailabilityZone: v.AvailabilityZone, State: sn.State, Encrypted: sn.Encrypted, KMSKeyID: sn.KMSKeyID}
}

func volumeFirstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// resolveVolumeSnapshot validates the input (api's checks; EC2 is asked by
// activities) and derives the etcd clusters, the retention and the wait.
func resolveVolumeSnapshot(in VolumeSnapshotInput) ([]string, ebs.RetentionPolicy, time.Duration, error) {
	p := ebs.DefaultRetention()
	if err := in.Validate(); err != nil {
		return nil, p, 0, err
	}
	ecs, _ := api.EtcdClusterList("etcdClusters", in.EtcdClusters)
	if r := in.Retention; r != nil {
		if r.KeepLast > 0 {
			p.KeepLast = r.KeepLast
		}
		p.HourlyFor, _ = api.DurationOrOff("retention.hourlyFor", r.HourlyFor, p.HourlyFor)
		p.DailyFor, _ = api.DurationOrOff("retention.dailyFor", r.DailyFor, p.DailyFor)
	}
	wait, _ := api.Duration("waitTimeout", in.WaitTimeout, api.DefaultSnapshotWait)
	return ecs, p, wait, nil
}

// ec2ActivityOptions: EC2 calls are short, and every activity heartbeats, so
// a killed worker is noticed within seconds and its work retried elsewhere.
func ec2ActivityOptions(maxAttempts int32) workflow.ActivityOptions {
	if maxAttempts <= 0 {
		maxAttempts = 10
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: maxAttempts,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied,
				activities.ErrTypePreflightRefused, activities.ErrTypeEC2Refused, activities.ErrTypeSnapshotFailed,
				activities.ErrTypeVolumeFailed, activities.ErrTypeEncryptionMismatch, activities.ErrTypeAlreadyReplaced},
		},
	}
}

// ec2WaitActivityOptions are for activities that wait (snapshots to
// complete, volumes to become available, masters to stop, etcd to answer):
// they poll by themselves and heartbeat, so timeout bounds the whole wait,
// retries after a lost worker included.
func ec2WaitActivityOptions(maxAttempts int32, timeout time.Duration) workflow.ActivityOptions {
	o := ec2ActivityOptions(maxAttempts)
	o.StartToCloseTimeout, o.ScheduleToCloseTimeout = timeout, timeout
	return o
}
