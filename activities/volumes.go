package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/kopsspec"
)

// Error types of the volume path, beside the common ones.
const (
	ErrTypePreflightRefused   = "PreflightRefused"
	ErrTypeSnapshotFailed     = "SnapshotFailed"
	ErrTypeVolumeFailed       = "VolumeFailed"
	ErrTypeEncryptionMismatch = "EncryptionMismatch"
	ErrTypeAlreadyReplaced    = "AlreadyReplaced"
	ErrTypeEC2Refused         = "EC2Refused"
)

// ec2Permissions is the fix for a denied EC2 call.
const ec2Permissions = "give the worker's AWS identity ec2:DescribeVolumes, ec2:DescribeSnapshots, ec2:DescribeInstances, " +
	"ec2:CreateSnapshot, ec2:DeleteSnapshot, ec2:CreateVolume, ec2:CreateTags, ec2:DeleteTags, ec2:DetachVolume, ec2:DeleteVolume, " +
	"ec2:RebootInstances, ec2:StopInstances, ec2:StartInstances, and kms:CreateGrant, kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext, " +
	"kms:ReEncrypt* on the etcd volumes' KMS keys"

// Volumes holds the EC2 activities of the legacy etcd volume path:
// snapshots of the etcd volumes and their restore. Each one finds out what
// an earlier attempt already did before it acts, so a retry after a lost
// answer or a killed worker never does a step twice. The EC2 region comes
// with the input; credentials and endpoint come from the worker's
// environment (AWS default chain, AWS_ENDPOINT_URL_EC2).
type Volumes struct{}

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
			"no volume in region %s is tagged %s=%s (or %s%s) and %s%s: check the cluster name and region",
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
	have, err := ebs.DescribeSnapshots(ctx, c, ebs.Filter("tag:"+ebs.TagSet, in.Set), ebs.Filter("tag:"+ebs.TagVolumeID, in.Volume.ID))
	if err != nil {
		return ebs.Snapshot{}, ec2Err("look for an earlier snapshot", err)
	}
	if len(have) > 0 {
		return have[0], nil
	}
	out, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId:    aws.String(in.Volume.ID),
		Description: aws.String(ebs.SnapshotDescription(in.Volume, in.Set)),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeSnapshot,
			Tags:         ebs.Tags(ebs.SnapshotTags(in.Volume, in.Set, in.SetSize, in.WorkflowID)),
		}},
	}, func(o *ec2.Options) {
		// No SDK retry: a retried CreateSnapshot after a lost answer would
		// take a second snapshot. Temporal retries the activity instead,
		// which looks for the first one before acting.
		o.RetryMaxAttempts = 1
	})
	if err != nil {
		return ebs.Snapshot{}, ec2Err("create snapshot of "+in.Volume.ID, err)
	}
	return ebs.SnapshotFrom(types.Snapshot{
		SnapshotId: out.SnapshotId, VolumeId: out.VolumeId, VolumeSize: out.VolumeSize, State: out.State,
		Progress: out.Progress, StartTime: out.StartTime, Encrypted: out.Encrypted, KmsKeyId: out.KmsKeyId,
		Description: out.Description, Tags: out.Tags,
	}), nil
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
			_, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
			if err != nil && !ebs.IsNotFound(err) {
				errs = append(errs, ec2Err("delete snapshot "+id+" of set "+d.Set, err))
				continue
			}
			deleted++
			hb.setf("%d snapshots deleted", deleted)
		}
	}
	return plan, errors.Join(errs...)
}

// PlanRestoreInput is a restore's choices, for pre-flight.
type PlanRestoreInput struct {
	Region       string        `json:"region"`
	Cluster      string        `json:"cluster"`
	StateStore   string        `json:"stateStore"`
	EtcdClusters []string      `json:"etcdClusters"`
	Members      []string      `json:"members,omitempty"`
	Select       ebs.Selection `json:"select"`
	Restart      string        `json:"restart"`
	OldVolumes   string        `json:"oldVolumes"`
	WorkflowID   string        `json:"workflowId"`
	RunID        string        `json:"runId"`
	// Again and AllowMixedTimes lift the plan's guards (ebs.PlanInput).
	Again           bool `json:"again,omitempty"`
	AllowMixedTimes bool `json:"allowMixedTimes,omitempty"`
}

// EBSPlanRestore is the pre-flight: it reads the cluster spec, the etcd
// volumes, the snapshots and the masters, changes nothing, and returns the
// plan, or every reason the restore must not run (final).
func (a *Volumes) EBSPlanRestore(ctx context.Context, in PlanRestoreInput) (ebs.RestorePlan, error) {
	hb, stop := ebsHeartbeat(ctx, "reading the cluster spec")
	defer stop()
	spec, err := readKopsSpec(ctx, in.StateStore, in.Cluster)
	if err != nil {
		return ebs.RestorePlan{}, err
	}
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return ebs.RestorePlan{}, err
	}
	hb.set("describing volumes, snapshots and masters")
	vols, err := ebs.FindEtcdVolumes(ctx, c, in.Cluster, in.EtcdClusters)
	if err != nil {
		if ebs.ErrorCode(err) != "" {
			return ebs.RestorePlan{}, ec2Err("find etcd volumes", err)
		}
		return ebs.RestorePlan{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypePreflightRefused, err)
	}
	snaps, err := ebs.ClusterSnapshots(ctx, c, in.Cluster)
	if err != nil {
		return ebs.RestorePlan{}, ec2Err("list the cluster's snapshots", err)
	}
	if len(in.Select.SnapshotIDs) > 0 {
		// By filter, so a missing id is simply absent (and reported by the
		// plan) instead of failing the whole call.
		named, err := ebs.DescribeSnapshots(ctx, c, ebs.Filter("snapshot-id", in.Select.SnapshotIDs...))
		if err != nil {
			return ebs.RestorePlan{}, ec2Err("describe the named snapshots", err)
		}
		snaps = append(snaps, named...)
	}
	masters, err := kops.FindMasters(ctx, c, in.Cluster, kops.NotTerminated)
	if err != nil {
		return ebs.RestorePlan{}, ec2Err("find the cluster's masters", err)
	}
	enc := map[string]ebs.MemberEncryption{}
	for _, ec := range spec.EtcdClusters {
		for _, m := range ec.Members {
			enc[ec.Name+"/"+m.Name] = ebs.MemberEncryption{InSpec: true, Encrypted: m.EncryptedVolume, KMSKeyID: m.KMSKeyID}
		}
	}
	plan, problems := ebs.PlanRestore(ebs.PlanInput{
		Cluster: in.Cluster, Region: in.Region, EtcdClusters: in.EtcdClusters, Members: in.Members, Select: in.Select,
		Restart: in.Restart, OldVolumes: in.OldVolumes, WorkflowID: in.WorkflowID, RunID: in.RunID,
		Again: in.Again, AllowMixedTimes: in.AllowMixedTimes, Volumes: vols, Snapshots: snaps, Instances: masters, Encryption: enc,
	})
	if len(problems) > 0 {
		return ebs.RestorePlan{}, preflightRefused(problems)
	}
	return plan, nil
}

// preflightRefused is the final error of a pre-flight that found problems: all of
// them, each with its field, value and fix.
func preflightRefused(problems []*inputerr.Error) error {
	msgs := make([]string, len(problems))
	details := make([]map[string]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
		details[i] = map[string]string{"field": p.Field, "value": p.Value, "fix": p.Fix}
	}
	return temporal.NewNonRetryableApplicationError("pre-flight refused the restore, nothing was changed: "+strings.Join(msgs, "; "),
		ErrTypePreflightRefused, nil, details)
}

// readKopsSpec reads the kops cluster spec from the state store.
func readKopsSpec(ctx context.Context, stateStore, cluster string) (kopsspec.Spec, error) {
	store, err := backupstore.Open(ctx, stateStore, backupstore.Options{})
	if err != nil {
		if ie, ok := inputerr.As(err); ok {
			ie2 := *ie
			ie2.Field = "stateStore"
			return kopsspec.Spec{}, nonRetryable(&ie2)
		}
		return kopsspec.Spec{}, storeErr(stateStore, err)
	}
	spec, err := kopsspec.Read(ctx, store, cluster)
	switch {
	case errors.Is(err, kopsspec.ErrNoSpec):
		return spec, nonRetryable(inputerr.Wrap(err, "stateStore", stateStore,
			"give the kops state store (KOPS_STATE_STORE) that holds "+kopsspec.Key(cluster)))
	case errors.Is(err, backupstore.ErrAccessDenied):
		ie := inputerr.Wrap(err, "stateStore", stateStore, "give the worker's credentials s3:GetObject on "+kopsspec.Key(cluster)+" in the state store")
		return spec, temporal.NewNonRetryableApplicationError(ie.Error(), ErrTypeAccessDenied, err,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	case errors.Is(err, kopsspec.ErrBadSpec):
		return spec, nonRetryable(inputerr.Wrap(err, "stateStore", stateStore, "give the state store of this cluster, or fix its spec with kops edit cluster"))
	}
	return spec, storeErr(stateStore, err)
}

// CreateVolumeInput is one member's new volume.
type CreateVolumeInput struct {
	Region string         `json:"region"`
	Member ebs.MemberPlan `json:"member"`
}

// EBSCreateVolume creates one member's volume from its snapshot, in its
// zone, with the old volume's type, size, iops and throughput and the
// planned encryption. The ClientToken makes EC2 answer a repeated request
// with the first volume; looking for the token's tag first covers a token
// EC2 no longer remembers.
func (a *Volumes) EBSCreateVolume(ctx context.Context, in CreateVolumeInput) (string, error) {
	m := in.Member
	_, stop := ebsHeartbeat(ctx, "creating the volume of "+m.Key())
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return "", err
	}
	have, err := ebs.DescribeVolumes(ctx, c, ebs.Filter("tag:"+ebs.TagClientToken, m.New.ClientToken))
	if err != nil {
		return "", ec2Err("look for an earlier volume", err)
	}
	if len(have) > 0 {
		return have[0].ID, nil
	}
	typ, size, iops, throughput := m.New.Spec.CreateParams()
	req := &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(m.AvailabilityZone),
		SnapshotId:       aws.String(m.Snapshot.ID),
		VolumeType:       typ, Size: size, Iops: iops, Throughput: throughput,
		ClientToken: aws.String(m.New.ClientToken),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeVolume, Tags: ebs.Tags(m.New.CreateTags),
		}},
	}
	if m.New.Encrypted {
		req.Encrypted = aws.Bool(true)
		if m.New.KMSKeyID != "" {
			req.KmsKeyId = aws.String(m.New.KMSKeyID)
		}
	}
	out, err := c.CreateVolume(ctx, req)
	if err != nil {
		return "", ec2Err("create the volume of "+m.Key()+" from "+m.Snapshot.ID, err)
	}
	return aws.ToString(out.VolumeId), nil
}

// WaitVolumeInput names a new volume and what it must be.
type WaitVolumeInput struct {
	Region   string        `json:"region"`
	VolumeID string        `json:"volumeId"`
	New      ebs.NewVolume `json:"new"`
}

// EBSWaitVolume waits until the new volume is available and checks it is
// encrypted as planned: a volume that would leave a member unencrypted, or
// under another key, is never tagged for protokube.
func (a *Volumes) EBSWaitVolume(ctx context.Context, in WaitVolumeInput) (ebs.Volume, error) {
	hb, stop := ebsHeartbeat(ctx, in.VolumeID+" unknown")
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return ebs.Volume{}, err
	}
	var v ebs.Volume
	err = ebsPoll(ctx, func() (bool, error) {
		// Just after CreateVolume EC2 may not list the volume yet (eventual
		// consistency): absent means "not yet", and the activity's timeout
		// bounds the wait.
		got, ok, err := ebs.GetVolume(ctx, c, in.VolumeID)
		if err != nil || !ok {
			return false, ec2Err("describe volume "+in.VolumeID, err)
		}
		v = got
		hb.set(in.VolumeID + " " + got.State)
		switch got.State {
		case "available", "in-use":
			return true, nil
		case "error", "deleting", "deleted":
			return false, temporal.NewNonRetryableApplicationError("volume "+in.VolumeID+" went to state "+got.State, ErrTypeVolumeFailed, nil)
		}
		return false, nil
	})
	if err != nil {
		return v, err
	}
	if err := ebs.CheckEncryption(in.New, v); err != nil {
		return v, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeEncryptionMismatch, err)
	}
	return v, nil
}

// SwapTagsInput moves one member's protokube tags to its new volume.
type SwapTagsInput struct {
	Region      string         `json:"region"`
	Member      ebs.MemberPlan `json:"member"`
	NewVolumeID string         `json:"newVolumeId"`
}

// SwapResult records what the old volume lost.
type SwapResult struct {
	OldTags map[string]string `json:"oldTags"`
}

// EBSSwapTags takes the kops tags off the old volume, recording them on it
// (prefixed, invisible to protokube) with what replaced it, then puts the
// planned tag set on the new volume. Each part checks the volume first: the
// record is written before the tags are removed, so an attempt killed
// between the two leaves both and the retry finishes the job.
func (a *Volumes) EBSSwapTags(ctx context.Context, in SwapTagsInput) (SwapResult, error) {
	m := in.Member
	_, stop := ebsHeartbeat(ctx, "moving the tags of "+m.Key())
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return SwapResult{}, err
	}
	res := SwapResult{OldTags: map[string]string{}}
	if m.OldVolume != nil {
		old, ok, err := ebs.GetVolume(ctx, c, m.OldVolume.ID)
		if err != nil {
			return res, ec2Err("describe old volume "+m.OldVolume.ID, err)
		}
		if ok {
			if by := old.Tags[ebs.TagReplacedBy]; by != "" && by != in.NewVolumeID {
				return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"volume %s was already replaced by %s (another restore?): not touching it", old.ID, by), ErrTypeAlreadyReplaced, nil)
			}
			kops := ebs.KopsTags(old.Tags)
			if len(kops) == 0 {
				kops = ebs.Uncopied(old.Tags) // removed by an earlier attempt
			} else {
				record := ebs.Copied(kops)
				record[ebs.TagReplacedBy] = in.NewVolumeID
				if err := ec2CreateTags(ctx, c, old.ID, record); err != nil {
					return res, err
				}
				if err := ec2DeleteTags(ctx, c, old.ID, ebs.SortedKeys(ebs.KopsTags(old.Tags))); err != nil {
					return res, err
				}
			}
			res.OldTags = kops
		}
	}
	return res, ec2CreateTags(ctx, c, in.NewVolumeID, m.New.Tags)
}

// RollBackTagsInput undoes one member's tag swap.
type RollBackTagsInput struct {
	Region      string            `json:"region"`
	Member      ebs.MemberPlan    `json:"member"`
	NewVolumeID string            `json:"newVolumeId,omitempty"`
	OldTags     map[string]string `json:"oldTags,omitempty"` // from EBSSwapTags, if it returned
}

// EBSRollBackTags is the compensation of a restore that failed after tags
// moved: the old volume gets its kops tags back first, then the new volume
// loses them, so protokube always finds one volume per member. The new
// volume is kept (marked rolled back) for the operator to inspect or delete.
func (a *Volumes) EBSRollBackTags(ctx context.Context, in RollBackTagsInput) error {
	m := in.Member
	_, stop := ebsHeartbeat(ctx, "rolling back the tags of "+m.Key())
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return err
	}
	if m.OldVolume != nil {
		old, ok, err := ebs.GetVolume(ctx, c, m.OldVolume.ID)
		if err != nil {
			return ec2Err("describe old volume "+m.OldVolume.ID, err)
		}
		if ok {
			// The record on the volume is the most exact; then what the swap
			// returned; then what pre-flight saw.
			tags := ebs.Uncopied(old.Tags)
			if len(tags) == 0 {
				tags = in.OldTags
			}
			if len(tags) == 0 {
				tags = ebs.KopsTags(m.OldVolume.Tags)
			}
			if len(tags) > 0 {
				if err := ec2CreateTags(ctx, c, old.ID, tags); err != nil {
					return err
				}
			}
			var bookkeeping []string
			for k := range old.Tags {
				if k == ebs.TagReplacedBy || strings.HasPrefix(k, ebs.TagCopyPrefix) {
					bookkeeping = append(bookkeeping, k)
				}
			}
			if err := ec2DeleteTags(ctx, c, old.ID, bookkeeping); err != nil {
				return err
			}
		}
	}
	if in.NewVolumeID == "" {
		return nil
	}
	nv, ok, err := ebs.GetVolume(ctx, c, in.NewVolumeID)
	if err != nil || !ok {
		return ec2Err("describe new volume "+in.NewVolumeID, err)
	}
	if err := ec2DeleteTags(ctx, c, nv.ID, ebs.SortedKeys(ebs.KopsTags(nv.Tags))); err != nil {
		return err
	}
	return ec2CreateTags(ctx, c, nv.ID, map[string]string{ebs.TagRolledBack: "true"})
}

func ec2CreateTags(ctx context.Context, c *ec2.Client, id string, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	_, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ebs.Tags(tags)})
	return ec2Err("tag "+id, err)
}

// ec2DeleteTags removes keys whatever their values (a tag with only a key).
func ec2DeleteTags(ctx context.Context, c *ec2.Client, id string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	tags := make([]types.Tag, len(keys))
	for i, k := range keys {
		tags[i] = types.Tag{Key: aws.String(k)}
	}
	_, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: tags})
	return ec2Err("untag "+id, err)
}

// InstancesInput names the masters to restart.
type InstancesInput struct {
	Region      string   `json:"region"`
	InstanceIDs []string `json:"instanceIds"`
}

// EBSRebootInstances reboots running masters and starts stopped ones, so
// that each comes up with protokube looking for its volumes again. EC2
// shows no trace of a reboot, so a retry after a lost answer reboots again:
// harmless, the master only restarts once more.
func (a *Volumes) EBSRebootInstances(ctx context.Context, in InstancesInput) error {
	_, stop := ebsHeartbeat(ctx, "rebooting "+strings.Join(in.InstanceIDs, ","))
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return err
	}
	states, err := ec2InstanceStates(ctx, c, in.InstanceIDs)
	if err != nil {
		return err
	}
	var running, stopped []string
	for _, id := range in.InstanceIDs {
		switch states[id] {
		case "running":
			running = append(running, id)
		case "stopped":
			stopped = append(stopped, id)
		default:
			return fmt.Errorf("master %s is %s: waiting for it to settle", id, states[id])
		}
	}
	if len(running) > 0 {
		if _, err := c.RebootInstances(ctx, &ec2.RebootInstancesInput{InstanceIds: running}); err != nil {
			return ec2Err("reboot "+strings.Join(running, ","), err)
		}
	}
	if len(stopped) > 0 {
		if _, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: stopped}); err != nil {
			return ec2Err("start "+strings.Join(stopped, ","), err)
		}
	}
	return nil
}

// EBSStopInstances stops the masters and waits until they are stopped.
// Stopping a stopped instance changes nothing, so a retry is safe.
func (a *Volumes) EBSStopInstances(ctx context.Context, in InstancesInput) error {
	return a.changeInstances(ctx, in, "stopped", func(c *ec2.Client) error {
		_, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: in.InstanceIDs})
		return err
	})
}

// EBSStartInstances starts the masters and waits until they run.
func (a *Volumes) EBSStartInstances(ctx context.Context, in InstancesInput) error {
	return a.changeInstances(ctx, in, "running", func(c *ec2.Client) error {
		_, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: in.InstanceIDs})
		return err
	})
}

func (a *Volumes) changeInstances(ctx context.Context, in InstancesInput, want string, act func(*ec2.Client) error) error {
	hb, stop := ebsHeartbeat(ctx, "making "+strings.Join(in.InstanceIDs, ",")+" "+want)
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return err
	}
	if err := act(c); err != nil {
		return ec2Err("make "+strings.Join(in.InstanceIDs, ",")+" "+want, err)
	}
	return ebsPoll(ctx, func() (bool, error) {
		states, err := ec2InstanceStates(ctx, c, in.InstanceIDs)
		if err != nil {
			return false, err
		}
		hb.set(fmt.Sprint(states))
		for _, id := range in.InstanceIDs {
			if states[id] != want {
				return false, nil
			}
		}
		return true, nil
	})
}

func ec2InstanceStates(ctx context.Context, c *ec2.Client, ids []string) (map[string]string, error) {
	states, err := ebs.InstanceStates(ctx, c, ids)
	if err != nil {
		return nil, ec2Err("describe "+strings.Join(ids, ","), err)
	}
	for _, id := range ids {
		if _, ok := states[id]; !ok {
			return nil, temporal.NewNonRetryableApplicationError("master "+id+" no longer exists", ErrTypeEC2Refused, nil)
		}
	}
	return states, nil
}

// VolumesInput names volumes.
type VolumesInput struct {
	Region    string   `json:"region"`
	VolumeIDs []string `json:"volumeIds"`
}

// EBSDetachVolumes detaches the replaced volumes (while their masters are
// stopped, so nothing has them mounted) and waits until they are available.
// Only volumes marked as replaced are touched.
func (a *Volumes) EBSDetachVolumes(ctx context.Context, in VolumesInput) error {
	_, stop := ebsHeartbeat(ctx, "detaching "+strings.Join(in.VolumeIDs, ","))
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return err
	}
	for _, id := range in.VolumeIDs {
		err := ebsPoll(ctx, func() (bool, error) {
			v, ok, err := ebs.GetVolume(ctx, c, id)
			if err != nil || !ok {
				return !ok, ec2Err("describe "+id, err)
			}
			if v.Tags[ebs.TagReplacedBy] == "" {
				return false, temporal.NewNonRetryableApplicationError("volume "+id+" is not marked replaced: not detaching it", ErrTypeAlreadyReplaced, nil)
			}
			if v.InstanceID == "" && v.State == "available" {
				return true, nil
			}
			if v.State == "in-use" && v.InstanceID != "" {
				if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id)}); err != nil && ebs.ErrorCode(err) != "IncorrectState" {
					return false, ec2Err("detach "+id, err)
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DeleteOutcome says what became of one replaced volume.
type DeleteOutcome struct {
	VolumeID string `json:"volumeId"`
	Deleted  bool   `json:"deleted"`
	Reason   string `json:"reason,omitempty"`
}

// DeleteVolumeInput names a replaced volume and what replaced it.
type DeleteVolumeInput struct {
	Region     string `json:"region"`
	VolumeID   string `json:"volumeId"`
	ReplacedBy string `json:"replacedBy"`
}

// EBSDeleteOldVolume deletes a replaced volume once it is detached. It only
// deletes a volume that carries kopsdr.io/replaced-by=<its replacement> and
// no kops tag, so it can never delete a volume protokube still uses. Still
// attached is not an error: the volume stays, untagged, and is reported.
func (a *Volumes) EBSDeleteOldVolume(ctx context.Context, in DeleteVolumeInput) (DeleteOutcome, error) {
	out := DeleteOutcome{VolumeID: in.VolumeID}
	_, stop := ebsHeartbeat(ctx, "deleting "+in.VolumeID)
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return out, err
	}
	v, ok, err := ebs.GetVolume(ctx, c, in.VolumeID)
	switch {
	case err != nil:
		return out, ec2Err("describe "+in.VolumeID, err)
	case !ok:
		out.Deleted = true
		return out, nil
	case v.Tags[ebs.TagReplacedBy] != in.ReplacedBy || len(ebs.KopsTags(v.Tags)) > 0:
		out.Reason = "not deleted: it is not marked as replaced by " + in.ReplacedBy + " or still has kops tags"
		return out, nil
	case v.InstanceID != "" || v.State == "in-use":
		out.Reason = "not deleted: still attached to " + v.InstanceID + "; it is untagged, delete it once detached"
		return out, nil
	}
	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(in.VolumeID)})
	switch {
	case err == nil || ebs.IsNotFound(err):
		out.Deleted = true
	case ebs.ErrorCode(err) == "VolumeInUse":
		out.Reason = "not deleted: attached again meanwhile; it is untagged, delete it once detached"
	default:
		return out, ec2Err("delete "+in.VolumeID, err)
	}
	return out, nil
}

// WaitEtcdInput is an etcd cluster to wait for after the masters restarted.
type WaitEtcdInput struct {
	Etcd    etcdconn.Config `json:"etcd"`
	Members int             `json:"members"`
}

// EBSWaitEtcd waits until every endpoint answers and etcd lists the
// expected number of members, all started. The activity's timeout bounds
// the wait; until then an unreachable etcd is only "not yet".
func (a *Volumes) EBSWaitEtcd(ctx context.Context, in WaitEtcdInput) (int, error) {
	if err := in.Etcd.Validate(); err != nil {
		return 0, nonRetryable(err)
	}
	hb, stop := ebsHeartbeat(ctx, "not asked yet")
	defer stop()
	members := 0
	err := ebsPoll(ctx, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cli, err := etcdconn.New(cctx, in.Etcd)
		if err != nil {
			hb.set(err.Error())
			return false, nil
		}
		defer cli.Close()
		for _, ep := range in.Etcd.Endpoints {
			if _, err := etcdconn.Status(cctx, cli, ep); err != nil {
				hb.set(ep + ": " + err.Error())
				return false, nil
			}
		}
		list, err := cli.MemberList(cctx)
		if err != nil {
			hb.set(err.Error())
			return false, nil
		}
		started := 0
		for _, m := range list.Members {
			if m.Name != "" && len(m.ClientURLs) > 0 {
				started++
			}
		}
		members = started
		hb.setf("%d of %d members started", started, in.Members)
		return started >= in.Members, nil
	})
	return members, err
}
