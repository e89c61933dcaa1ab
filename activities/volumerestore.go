package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/kopsspec"
)

// The activities of the VolumeRestore workflow, in the order it runs them:
// pre-flight, then per member create, wait and swap tags (roll back on
// failure), then the masters' restart, the etcd check and the old volumes.

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
	id, err := ebs.CreateVolume(ctx, c, m)
	return id, ec2Err("create the volume of "+m.Key()+" from "+m.Snapshot.ID, err)
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
		tags, ok, err := ebs.TakeKopsTags(ctx, c, m.OldVolume.ID, in.NewVolumeID)
		var replaced *ebs.AlreadyReplacedError
		if errors.As(err, &replaced) {
			return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeAlreadyReplaced, nil)
		}
		if err != nil {
			return res, ec2Err("move the tags of "+m.Key(), err)
		}
		if ok {
			res.OldTags = tags
		}
	}
	return res, ec2Err("tag the new volume of "+m.Key(), ebs.AddTags(ctx, c, in.NewVolumeID, m.New.Tags))
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
		// The record on the volume first; then what the swap returned; then
		// what pre-flight saw.
		if err := ebs.GiveBackKopsTags(ctx, c, m.OldVolume.ID, in.OldTags, ebs.KopsTags(m.OldVolume.Tags)); err != nil {
			return ec2Err("give "+m.Key()+"'s tags back", err)
		}
	}
	if in.NewVolumeID == "" {
		return nil
	}
	return ec2Err("retire the new volume of "+m.Key(), ebs.RetireVolume(ctx, c, in.NewVolumeID))
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
	if err := ebs.RebootInstances(ctx, c, running); err != nil {
		return ec2Err("reboot "+strings.Join(running, ","), err)
	}
	return ec2Err("start "+strings.Join(stopped, ","), ebs.StartInstances(ctx, c, stopped))
}

// EBSStopInstances stops the masters and waits until they are stopped.
// Stopping a stopped instance changes nothing, so a retry is safe.
func (a *Volumes) EBSStopInstances(ctx context.Context, in InstancesInput) error {
	return a.changeInstances(ctx, in, "stopped", ebs.StopInstances)
}

// EBSStartInstances starts the masters and waits until they run.
func (a *Volumes) EBSStartInstances(ctx context.Context, in InstancesInput) error {
	return a.changeInstances(ctx, in, "running", ebs.StartInstances)
}

func (a *Volumes) changeInstances(ctx context.Context, in InstancesInput, want string,
	act func(context.Context, *ec2.Client, []string) error) error {
	hb, stop := ebsHeartbeat(ctx, "making "+strings.Join(in.InstanceIDs, ",")+" "+want)
	defer stop()
	c, err := ec2Client(ctx, in.Region)
	if err != nil {
		return err
	}
	if err := act(ctx, c, in.InstanceIDs); err != nil {
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
				if err := ebs.DetachVolume(ctx, c, id); err != nil {
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
	inUse, err := ebs.DeleteVolume(ctx, c, in.VolumeID)
	switch {
	case err != nil:
		return out, ec2Err("delete "+in.VolumeID, err)
	case inUse:
		out.Reason = "not deleted: attached again meanwhile; it is untagged, delete it once detached"
	default:
		out.Deleted = true
	}
	return out, nil
}

// WaitEtcdInput is an etcd cluster to wait for after the masters restarted.
type WaitEtcdInput struct {
	Etcd    etcdconn.Config `json:"etcd"`
	Members int             `json:"members"`
}

// EBSWaitEtcd waits until every endpoint answers for one cluster whose
// member list has every member (etcdconn.Membership.Complete, the check the
// etcd-manager restore's wait makes too). The activity's timeout bounds
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
		// The same check as the etcd-manager restore's wait: every endpoint
		// answers, for one cluster, whose member list has every member.
		m := etcdconn.CheckMembership(cctx, cli, in.Etcd.Endpoints)
		id, ok, state := m.Complete(in.Members, 0)
		members = m.Members(id)
		hb.set(state)
		return ok, nil
	})
	return members, err
}
