package workflows

import (
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/ebs"
)

// VolumeSnapshotWorkflowID is the id of a cluster's volume snapshot run
// (and of its schedule): one at a time per cluster.
func VolumeSnapshotWorkflowID(cluster string) string { return "volume-snapshots/" + cluster }

// VolumeSnapshotInput snapshots every etcd volume (main and events, every
// member) of one kops cluster at once. Plain JSON; credentials never travel
// here: the worker's AWS environment provides them.
type VolumeSnapshotInput struct {
	Cluster      string           `json:"cluster"`
	Region       string           `json:"region"`
	EtcdClusters []string         `json:"etcdClusters,omitempty"` // default ["main", "events"]
	Retention    *VolumeRetention `json:"retention,omitempty"`
	NoPrune      bool             `json:"noPrune,omitempty"`
	PruneDryRun  bool             `json:"pruneDryRun,omitempty"`
	// WaitTimeout bounds how long the snapshots may take to complete
	// (a Go duration, default "6h").
	WaitTimeout string `json:"waitTimeout,omitempty"`
	// MaxAttempts bounds how often a failing EC2 step is retried. Default 10.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// VolumeRetention is the snapshot sets' retention, durations as Go
// durations. Unset fields take ebs.DefaultRetention's values (keep the last
// 3 sets, the first of each hour for 168h, the first of each day for 2160h).
// The newest completed set is always kept.
type VolumeRetention struct {
	KeepLast  int    `json:"keepLast,omitempty"`
	HourlyFor string `json:"hourlyFor,omitempty"`
	DailyFor  string `json:"dailyFor,omitempty"`
}

// VolumeSnapshotResult is the set that was taken and what retention did.
type VolumeSnapshotResult struct {
	Cluster     string              `json:"cluster"`
	Region      string              `json:"region"`
	Set         string              `json:"set"`
	Snapshots   []VolumeSnapshotRef `json:"snapshots"`
	Retention   *ebs.RetentionPlan  `json:"retention,omitempty"`
	PruneDryRun bool                `json:"pruneDryRun,omitempty"`
}

// VolumeSnapshotRef is one snapshot of the set.
type VolumeSnapshotRef struct {
	ID               string `json:"id"`
	VolumeID         string `json:"volumeId"`
	EtcdCluster      string `json:"etcdCluster"`
	Member           string `json:"member"`
	AvailabilityZone string `json:"availabilityZone"`
	State            string `json:"state"`
	Encrypted        bool   `json:"encrypted"`
	KMSKeyID         string `json:"kmsKeyId,omitempty"`
}

// VolumeSnapshotStatus is what the "status" query returns.
type VolumeSnapshotStatus struct {
	Step      string              `json:"step"`
	Set       string              `json:"set,omitempty"`
	Snapshots []VolumeSnapshotRef `json:"snapshots,omitempty"`
	LastError string              `json:"lastError,omitempty"`
}

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
	etcdClusters, policy, waitTimeout, err := in.resolve()
	if err != nil {
		return nil, fail(invalidInput(err))
	}
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

// resolve validates the input (pure checks; EC2 is asked by activities).
func (in VolumeSnapshotInput) resolve() ([]string, ebs.RetentionPolicy, time.Duration, error) {
	p := ebs.DefaultRetention()
	if err := checkCluster(in.Cluster); err != nil {
		return nil, p, 0, err
	}
	if err := checkEC2Region(in.Region); err != nil {
		return nil, p, 0, err
	}
	ecs, err := volumeEtcdClusters(in.EtcdClusters)
	if err != nil {
		return nil, p, 0, err
	}
	if r := in.Retention; r != nil {
		if r.KeepLast < 0 {
			return nil, p, 0, invalid("retention.keepLast", strconv.Itoa(r.KeepLast), "give how many of the newest sets to keep, e.g. 3")
		}
		if r.KeepLast > 0 {
			p.KeepLast = r.KeepLast
		}
		if err := setDuration("retention.hourlyFor", r.HourlyFor, &p.HourlyFor); err != nil {
			return nil, p, 0, err
		}
		if err := setDuration("retention.dailyFor", r.DailyFor, &p.DailyFor); err != nil {
			return nil, p, 0, err
		}
	}
	wait := 6 * time.Hour
	if err := setDuration("waitTimeout", in.WaitTimeout, &wait); err != nil {
		return nil, p, 0, err
	}
	return ecs, p, wait, nil
}

// AWS region names: us-east-1, eu-central-1, us-gov-west-1, cn-north-1.
var ec2RegionName = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

func checkEC2Region(region string) error {
	if !ec2RegionName.MatchString(region) {
		return invalid("region", region, "give the AWS region of the cluster's masters, e.g. us-east-1")
	}
	return nil
}

// volumeEtcdClusters validates a list of etcd cluster names, defaulting to both.
func volumeEtcdClusters(ecs []string) ([]string, error) {
	if len(ecs) == 0 {
		return slices.Clone(EtcdClusters), nil
	}
	seen := map[string]bool{}
	for _, ec := range ecs {
		if err := checkEtcdCluster("etcdClusters", ec); err != nil {
			return nil, err
		}
		if seen[ec] {
			return nil, invalid("etcdClusters", ec, "name each etcd cluster once")
		}
		seen[ec] = true
	}
	return ecs, nil
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
