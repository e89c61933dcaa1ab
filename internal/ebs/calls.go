package ebs

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// The EC2 calls that change something, each shaped for a retried caller:
// whatever a repeat must not do twice is decided here, so the activities
// only sequence them. Errors are EC2's, for the caller to classify
// (ErrorCode).

// SetSnapshotOf finds the snapshot of volumeID already tagged with set, if
// any: CreateSnapshot has no idempotency token, so this is how a retry
// finds what an earlier attempt took.
func SetSnapshotOf(ctx context.Context, c *ec2.Client, set, volumeID string) (Snapshot, bool, error) {
	have, err := DescribeSnapshots(ctx, c, Filter("tag:"+TagSet, set), Filter("tag:"+TagVolumeID, volumeID))
	if err != nil || len(have) == 0 {
		return Snapshot{}, false, err
	}
	return have[0], true, nil
}

// CreateSnapshot starts the snapshot of one etcd volume as part of set,
// tagged (SnapshotTags) so kopsdr finds it again. The SDK does not retry
// it: a retried CreateSnapshot after a lost answer would take a second
// snapshot; the caller retries after SetSnapshotOf instead.
func CreateSnapshot(ctx context.Context, c *ec2.Client, v EtcdVolume, set string, setSize int, workflowID string) (Snapshot, error) {
	out, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId:    aws.String(v.ID),
		Description: aws.String(SnapshotDescription(v, set)),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeSnapshot,
			Tags:         Tags(SnapshotTags(v, set, setSize, workflowID)),
		}},
	}, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		return Snapshot{}, err
	}
	return SnapshotFrom(types.Snapshot{
		SnapshotId: out.SnapshotId, VolumeId: out.VolumeId, VolumeSize: out.VolumeSize, State: out.State,
		Progress: out.Progress, StartTime: out.StartTime, Encrypted: out.Encrypted, KmsKeyId: out.KmsKeyId,
		Description: out.Description, Tags: out.Tags,
	}), nil
}

// DeleteSnapshot deletes one snapshot; one already gone counts as deleted.
func DeleteSnapshot(ctx context.Context, c *ec2.Client, id string) error {
	_, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	if IsNotFound(err) {
		return nil
	}
	return err
}

// CreateVolume creates one member's planned volume from its snapshot, in
// its zone, with the planned spec, encryption, creation tags and
// ClientToken. It first looks for a volume carrying the token's tag, which
// covers a token EC2 no longer remembers; the token covers the rest, so a
// repeat returns the first volume.
func CreateVolume(ctx context.Context, c *ec2.Client, m MemberPlan) (string, error) {
	have, err := DescribeVolumes(ctx, c, Filter("tag:"+TagClientToken, m.New.ClientToken))
	if err != nil {
		return "", err
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
			ResourceType: types.ResourceTypeVolume, Tags: Tags(m.New.CreateTags),
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
		return "", err
	}
	return aws.ToString(out.VolumeId), nil
}

// AddTags puts tags on a resource (no call for none).
func AddTags(ctx context.Context, c *ec2.Client, id string, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	_, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: Tags(tags)})
	return err
}

// RemoveTags removes keys from a resource whatever their values (a tag with
// only a key); no call for none.
func RemoveTags(ctx context.Context, c *ec2.Client, id string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	tags := make([]types.Tag, len(keys))
	for i, k := range keys {
		tags[i] = types.Tag{Key: aws.String(k)}
	}
	_, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: tags})
	return err
}

// RebootInstances reboots running instances (no call for none).
func RebootInstances(ctx context.Context, c *ec2.Client, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := c.RebootInstances(ctx, &ec2.RebootInstancesInput{InstanceIds: ids})
	return err
}

// StartInstances starts instances (no call for none); starting a running
// one changes nothing.
func StartInstances(ctx context.Context, c *ec2.Client, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: ids})
	return err
}

// StopInstances stops instances (no call for none); stopping a stopped one
// changes nothing.
func StopInstances(ctx context.Context, c *ec2.Client, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: ids})
	return err
}

// DetachVolume asks EC2 to detach a volume; a volume already detaching
// (IncorrectState) is not an error.
func DetachVolume(ctx context.Context, c *ec2.Client, id string) error {
	_, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id)})
	if ErrorCode(err) == "IncorrectState" {
		return nil
	}
	return err
}

// DeleteVolume deletes a volume; one already gone counts as deleted.
// inUse reports a volume attached again meanwhile (not deleted, no error).
func DeleteVolume(ctx context.Context, c *ec2.Client, id string) (inUse bool, err error) {
	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)})
	switch {
	case err == nil || IsNotFound(err):
		return false, nil
	case ErrorCode(err) == "VolumeInUse":
		return true, nil
	}
	return false, err
}
