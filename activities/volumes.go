package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
)

// Volumes holds the EC2 activities of the legacy etcd volume path:
// snapshots of the etcd volumes and their restore. Each one finds out what
// an earlier attempt already did before it acts, so a retry after a lost
// answer or a killed worker never does a step twice. What EC2 and kops look
// like lives in internal/ebs (volumes, snapshots, the calls and the plan)
// and internal/kops (tags, masters, the client); these activities sequence
// those calls, heartbeat, and turn failures into Temporal errors. The EC2
// region comes with the input; credentials and endpoint come from the
// worker's environment (AWS default chain, AWS_ENDPOINT_URL_EC2).
type Volumes struct{}

// Error types of the volume path, beside the common ones.
const (
	ErrTypePreflightRefused   = api.ErrTypePreflightRefused
	ErrTypeSnapshotFailed     = api.ErrTypeSnapshotFailed
	ErrTypeVolumeFailed       = api.ErrTypeVolumeFailed
	ErrTypeEncryptionMismatch = api.ErrTypeEncryptionMismatch
	ErrTypeAlreadyReplaced    = api.ErrTypeAlreadyReplaced
	ErrTypeEC2Refused         = api.ErrTypeEC2Refused
)

// ec2Permissions is the fix for a denied EC2 call.
const ec2Permissions = "give the worker's AWS identity ec2:DescribeVolumes, ec2:DescribeSnapshots, ec2:DescribeInstances, " +
	"ec2:CreateSnapshot, ec2:DeleteSnapshot, ec2:CreateVolume, ec2:CreateTags, ec2:DeleteTags, ec2:DetachVolume, ec2:DeleteVolume, " +
	"ec2:RebootInstances, ec2:StopInstances, ec2:StartInstances, and kms:CreateGrant, kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext, " +
	"kms:ReEncrypt* on the etcd volumes' KMS keys"

// FindVolumesInput names the cluster whose etcd volumes are wanted.
type FindVolumesInput struct {
	Region       string   `json:"region"`
	Cluster      string   `json:"cluster"`
	EtcdClusters []string `json:"etcdClusters"`
}

// EBSFindEtcdVolumes finds the volumes protokube mounts for the cluster's
// etcd clusters. Finding none is final: the name or region is wrong.
func (a *Volumes) EBSFindEtcdVolumes(ctx context.Context, in FindVolumesInput) ([]ebs.EtcdVolume, error) {
	_, stop := ebsHeartbeat(ctx, "describing volumes")
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return nil, err
	}
	vols, err := ebs.FindEtcdVolumes(ctx, c, in.Cluster, in.EtcdClusters)
	if err != nil {
		if ebs.ErrorCode(err) != "" {
			return nil, ec2Err("find etcd volumes", err)
		}
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	}
	if len(vols) == 0 {
		return nil, nonRetryable(inputerr.New("cluster", in.Cluster, fmt.Sprintf(
			"no volume in region %s is tagged %s=%s (or %s%s=owned) and %s%s: check the cluster name and region",
			in.Region, ebs.TagKubernetesCluster, in.Cluster, ebs.TagClusterPrefix, in.Cluster, ebs.TagEtcdPrefix, strings.Join(in.EtcdClusters, " or "+ebs.TagEtcdPrefix))))
	}
	return vols, nil
}

// SnapshotVolumeInput is one volume to snapshot as part of a set.
type SnapshotVolumeInput struct {
	Region     string         `json:"region"`
	Volume     ebs.EtcdVolume `json:"volume"`
	Set        string         `json:"set"`
	SetSize    int            `json:"setSize"`
	WorkflowID string         `json:"workflowId"`
}

// EBSSnapshotVolume starts the snapshot of one etcd volume, tagged so kopsdr
// finds it again. CreateSnapshot has no idempotency token, so it first looks
// for a snapshot of this volume already tagged with this set: a retry after
// a lost answer finds it instead of taking a second one.
func (a *Volumes) EBSSnapshotVolume(ctx context.Context, in SnapshotVolumeInput) (ebs.Snapshot, error) {
	_, stop := ebsHeartbeat(ctx, "snapshotting "+in.Volume.ID)
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return ebs.Snapshot{}, err
	}
	have, found, err := ebs.SetSnapshotOf(ctx, c, in.Set, in.Volume.ID)
	if err != nil {
		return ebs.Snapshot{}, ec2Err("look for an earlier snapshot", err)
	}
	if found {
		return have, nil
	}
	sn, err := ebs.CreateSnapshot(ctx, c, in.Volume, in.Set, in.SetSize, in.WorkflowID)
	return sn, ec2Err("create snapshot of "+in.Volume.ID, err)
}

// WaitSnapshotsInput lists the snapshots to wait for.
type WaitSnapshotsInput struct {
	Region      string   `json:"region"`
	SnapshotIDs []string `json:"snapshotIds"`
}

// EBSWaitSnapshots waits until every snapshot is completed, ebsHeartbeat
// their progress. A snapshot in error, or gone, fails for good: the set
// cannot be completed any more.
func (a *Volumes) EBSWaitSnapshots(ctx context.Context, in WaitSnapshotsInput) ([]ebs.Snapshot, error) {
	hb, stop := ebsHeartbeat(ctx, "describing snapshots")
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return nil, err
	}
	var snaps []ebs.Snapshot
	err = ebsPoll(ctx, func() (bool, error) {
		got, err := ebs.DescribeSnapshots(ctx, c, ebs.Filter("snapshot-id", in.SnapshotIDs...))
		if err != nil {
			return false, ec2Err("describe snapshots", err)
		}
		byID := map[string]ebs.Snapshot{}
		progress := map[string]string{}
		for _, s := range got {
			byID[s.ID] = s
			progress[s.ID] = s.State + " " + s.Progress
		}
		hb.set(fmt.Sprint(progress))
		snaps = snaps[:0]
		done := true
		for _, id := range in.SnapshotIDs {
			s, ok := byID[id]
			switch {
			case !ok:
				return false, temporal.NewNonRetryableApplicationError("snapshot "+id+" disappeared while kopsdr waited for it", ErrTypeSnapshotFailed, nil)
			case s.State == ebs.SnapshotError:
				return false, temporal.NewNonRetryableApplicationError("snapshot "+id+" of volume "+s.VolumeID+" failed (state error)", ErrTypeSnapshotFailed, nil)
			case s.State != ebs.SnapshotCompleted:
				done = false
			}
			snaps = append(snaps, s)
		}
		return done, nil
	})
	return snaps, err
}

// PruneSnapshotsInput is the retention run after a snapshot set completed.
type PruneSnapshotsInput struct {
	Region  string              `json:"region"`
	Cluster string              `json:"cluster"`
	Now     time.Time           `json:"now"`
	Policy  ebs.RetentionPolicy `json:"policy"`
	DryRun  bool                `json:"dryRun"`
}

// EBSPruneSnapshots deletes the cluster's snapshot sets the policy does not
// keep (only kopsdr's: snapshots without kopsdr's set tag are never
// touched). A snapshot already gone counts as deleted, so a retry finishes
// what an earlier attempt started.
func (a *Volumes) EBSPruneSnapshots(ctx context.Context, in PruneSnapshotsInput) (ebs.RetentionPlan, error) {
	hb, stop := ebsHeartbeat(ctx, "listing snapshots")
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return ebs.RetentionPlan{}, err
	}
	snaps, err := ebs.ClusterSnapshots(ctx, c, in.Cluster)
	if err != nil {
		return ebs.RetentionPlan{}, ec2Err("list the cluster's snapshots", err)
	}
	plan := ebs.PlanRetention(ebs.Sets(snaps), in.Now, in.Policy)
	if in.DryRun {
		return plan, nil
	}
	deleted := 0
	var errs []error
	for _, d := range plan.Delete {
		for _, id := range d.Snapshots {
			if err := ebs.DeleteSnapshot(ctx, c, id); err != nil {
				errs = append(errs, ec2Err("delete snapshot "+id+" of set "+d.Set, err))
				continue
			}
			deleted++
			hb.setf("%d snapshots deleted", deleted)
		}
	}
	return plan, errors.Join(errs...)
}

// ec2Client builds the client for one call (kops.NewEC2Client: the one
// EC2 client, which never asks the metadata service in tests or dev mode).
func ec2Client(ctx context.Context, region string) (*ec2.Client, error) {
	c, err := kops.NewEC2Client(ctx, region, "")
	if err != nil {
		if _, ok := inputerr.As(err); ok {
			return nil, nonRetryable(err)
		}
		return nil, nonRetryable(inputerr.Wrap(err, "region", region,
			"give the worker AWS credentials (environment, shared files or instance role) and the cluster's region"))
	}
	return c, nil
}

// ec2Err classifies an EC2 failure. Throttling and 5xx were already retried
// by the SDK and are retried again by Temporal with a longer backoff; denied
// access and malformed requests are final, since no retry fixes them.
func ec2Err(what string, err error) error {
	if err == nil {
		return nil
	}
	msg := what + ": " + err.Error()
	code := ebs.ErrorCode(err)
	switch {
	case code == "UnauthorizedOperation" || code == "AuthFailure" || code == "Blocked" || code == "OptInRequired" ||
		code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || code == "UnrecognizedClientException":
		ie := inputerr.Wrap(err, "region", "", ec2Permissions)
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeAccessDenied, err,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	case code == "IdempotentParameterMismatch" || code == "MissingParameter" || code == "InvalidAction" ||
		code == "InvalidZone.NotFound" || strings.HasPrefix(code, "InvalidParameter") || strings.HasSuffix(code, ".Malformed"):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeEC2Refused, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ebsHeartbeatInterval is 2 s: EC2 activities have a 10 s heartbeat timeout
// so a killed worker's work is retried quickly. Tests shorten it.
var ebsHeartbeatInterval = 2 * time.Second

// ebsHeartbeat heartbeats a progress value, starting at initial, that the
// activity's body updates with set; stop ends the heartbeats.
func ebsHeartbeat(ctx context.Context, initial any) (p *progress, stop func()) {
	p = newProgress(initial)
	return p, heartbeatProgress(ctx, ebsHeartbeatInterval, p)
}

// ebsPoll calls check until it reports done, waiting from 250 ms up to 5 s
// between calls, until ctx ends.
func ebsPoll(ctx context.Context, check func() (bool, error)) error {
	wait := 250 * time.Millisecond
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
