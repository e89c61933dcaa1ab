package fakeec2

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDescribeVolumesRoundTripsSeededVolume(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	inst := s.AddInstance(Instance{AvailabilityZone: "us-east-1b"})
	id := s.AddVolume(Volume{
		AvailabilityZone: "us-east-1b",
		Size:             25,
		Type:             "gp3",
		Iops:             4000,
		Throughput:       250,
		Encrypted:        true,
		KmsKeyID:         "arn:aws:kms:us-east-1:123456789012:key/etcd",
		Tags:             map[string]string{"k8s.io/etcd/main": "b/a,b,c", "KubernetesCluster": "k.example.com"},
		Attachment:       &Attachment{InstanceID: inst, Device: "/dev/xvdu"},
	})

	out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	require.NoError(t, err)
	require.Len(t, out.Volumes, 1)
	v := out.Volumes[0]
	assert.Equal(t, id, aws.ToString(v.VolumeId))
	assert.Equal(t, "us-east-1b", aws.ToString(v.AvailabilityZone))
	assert.Equal(t, int32(25), aws.ToInt32(v.Size))
	assert.Equal(t, types.VolumeTypeGp3, v.VolumeType)
	assert.Equal(t, int32(4000), aws.ToInt32(v.Iops))
	assert.Equal(t, int32(250), aws.ToInt32(v.Throughput))
	assert.True(t, aws.ToBool(v.Encrypted))
	assert.Equal(t, "arn:aws:kms:us-east-1:123456789012:key/etcd", aws.ToString(v.KmsKeyId))
	assert.Equal(t, types.VolumeStateInUse, v.State)
	assert.True(t, clock.Now().Equal(aws.ToTime(v.CreateTime)), "createTime %v", v.CreateTime)
	assert.ElementsMatch(t, []types.Tag{
		{Key: aws.String("KubernetesCluster"), Value: aws.String("k.example.com")},
		{Key: aws.String("k8s.io/etcd/main"), Value: aws.String("b/a,b,c")},
	}, v.Tags)
	require.Len(t, v.Attachments, 1)
	a := v.Attachments[0]
	assert.Equal(t, inst, aws.ToString(a.InstanceId))
	assert.Equal(t, id, aws.ToString(a.VolumeId))
	assert.Equal(t, "/dev/xvdu", aws.ToString(a.Device))
	assert.Equal(t, types.VolumeAttachmentStateAttached, a.State)
	assert.Nil(t, out.NextToken)
}

func TestDescribeVolumesUnknownIDs(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.AddVolume(Volume{})
	_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-0123456789abcdef0"}})
	wantCode(t, err, "InvalidVolume.NotFound")
	_, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{"volume-1"}})
	wantCode(t, err, "InvalidVolumeID.Malformed")
}

func TestCreateVolumeBecomesAvailableForTheSDKWaiter(t *testing.T) {
	s := Start(t, WithTransitionDelay(50*time.Millisecond))
	c := s.Client(t)
	snap := s.AddSnapshot(Snapshot{VolumeSize: 30})

	out, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String("us-east-1c"),
		SnapshotId:       aws.String(snap),
		VolumeType:       types.VolumeTypeGp3,
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeVolume,
			Tags:         []types.Tag{{Key: aws.String("Name"), Value: aws.String("c.etcd-main.k.example.com")}},
		}},
	})
	require.NoError(t, err)
	assert.Equal(t, types.VolumeStateCreating, out.State)
	assert.Equal(t, int32(30), aws.ToInt32(out.Size), "size defaults to the snapshot's")
	assert.Equal(t, snap, aws.ToString(out.SnapshotId))
	assert.Equal(t, int32(3000), aws.ToInt32(out.Iops))
	assert.Equal(t, int32(125), aws.ToInt32(out.Throughput))
	assert.Equal(t, []types.Tag{{Key: aws.String("Name"), Value: aws.String("c.etcd-main.k.example.com")}}, out.Tags)

	w := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	})
	require.NoError(t, w.Wait(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{aws.ToString(out.VolumeId)}}, 10*time.Second))
	v, ok := s.Volume(aws.ToString(out.VolumeId))
	require.True(t, ok)
	assert.Equal(t, "available", v.State)
}

func TestCreateVolumeStaysCreatingUntilTheDelayPasses(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	out, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(10)})
	require.NoError(t, err)
	id := aws.ToString(out.VolumeId)

	clock.Advance(59 * time.Second)
	d, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	require.NoError(t, err)
	assert.Equal(t, types.VolumeStateCreating, d.Volumes[0].State)

	clock.Advance(time.Second)
	d, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	require.NoError(t, err)
	assert.Equal(t, types.VolumeStateAvailable, d.Volumes[0].State)
	assert.Equal(t, types.VolumeTypeGp2, d.Volumes[0].VolumeType, "EC2's default type")
	assert.Equal(t, int32(100), aws.ToInt32(d.Volumes[0].Iops), "gp2 baseline: 3/GiB, at least 100")
	assert.Nil(t, d.Volumes[0].Throughput)
}

func TestCreateVolumeRefusesWhatEC2Refuses(t *testing.T) {
	s, _ := startManual(t) // "creating" and "pending" stay so while the test looks
	c := s.Client(t)
	snap := s.AddSnapshot(Snapshot{VolumeSize: 20})
	pending := s.AddSnapshot(Snapshot{State: "pending"})
	az := aws.String("us-east-1a")
	for _, tc := range []struct {
		name string
		in   ec2.CreateVolumeInput
		code string
	}{
		{"no zone", ec2.CreateVolumeInput{Size: aws.Int32(10)}, "MissingParameter"},
		{"foreign zone", ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a"), Size: aws.Int32(10)}, "InvalidZone.NotFound"},
		{"no size nor snapshot", ec2.CreateVolumeInput{AvailabilityZone: az}, "MissingParameter"},
		{"smaller than snapshot", ec2.CreateVolumeInput{AvailabilityZone: az, SnapshotId: &snap, Size: aws.Int32(10)}, "InvalidParameterValue"},
		{"unknown snapshot", ec2.CreateVolumeInput{AvailabilityZone: az, SnapshotId: aws.String("snap-0123456789abcdef0")}, "InvalidSnapshot.NotFound"},
		{"pending snapshot", ec2.CreateVolumeInput{AvailabilityZone: az, SnapshotId: &pending}, "IncorrectState"},
		{"iops on gp2", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), VolumeType: types.VolumeTypeGp2, Iops: aws.Int32(300)}, "InvalidParameterCombination"},
		{"io1 without iops", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), VolumeType: types.VolumeTypeIo1}, "MissingParameter"},
		{"throughput on io2", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(1000), Throughput: aws.Int32(200)}, "InvalidParameterCombination"},
		{"st1 too small", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), VolumeType: types.VolumeTypeSt1}, "InvalidParameterValue"},
		{"key without Encrypted", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), KmsKeyId: aws.String("alias/etcd")}, "InvalidParameterDependency"},
		{"instance tag spec", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}}}, "InvalidParameterValue"},
		{"aws: tag", ec2.CreateVolumeInput{AvailabilityZone: az, Size: aws.Int32(10), TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("aws:x"), Value: aws.String("b")}}}}}, "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateVolume(ctx(t), &tc.in)
			wantCode(t, err, tc.code)
		})
	}
	assert.Empty(t, s.Volumes(), "no refused call may create a volume")
}

func TestCreateVolumeEncryptionFollowsEC2(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	plain := s.AddSnapshot(Snapshot{})
	const snapKey = "arn:aws:kms:us-east-1:123456789012:key/snapkey"
	const otherKey = "arn:aws:kms:us-east-1:123456789012:key/other"
	secret := s.AddSnapshot(Snapshot{Encrypted: true, KmsKeyID: snapKey})
	for _, tc := range []struct {
		name          string
		snapshot      string
		encrypted     *bool
		key           *string
		wantEncrypted bool
		wantKey       string
	}{
		{"plain snapshot stays plain", plain, nil, nil, false, ""},
		{"plain snapshot, Encrypted: default key", plain, aws.Bool(true), nil, true, s.DefaultKMSKeyARN()},
		{"plain snapshot, own key", plain, aws.Bool(true), aws.String(otherKey), true, otherKey},
		{"encrypted snapshot keeps its key", secret, nil, nil, true, snapKey},
		{"encrypted snapshot cannot be decrypted", secret, aws.Bool(false), nil, true, snapKey},
		{"encrypted snapshot, other key", secret, aws.Bool(true), aws.String(otherKey), true, otherKey},
		{"no snapshot, Encrypted", "", aws.Bool(true), nil, true, s.DefaultKMSKeyARN()},
		{"alias/aws/ebs is the default key", "", aws.Bool(true), aws.String("alias/aws/ebs"), true, s.DefaultKMSKeyARN()},
		{"bare key id becomes an ARN", "", aws.Bool(true), aws.String("1234abcd-12ab-34cd-56ef-1234567890ab"), true, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Encrypted: tc.encrypted, KmsKeyId: tc.key}
			if tc.snapshot != "" {
				in.SnapshotId = aws.String(tc.snapshot)
			} else {
				in.Size = aws.Int32(5)
			}
			out, err := c.CreateVolume(ctx(t), in)
			require.NoError(t, err)
			assert.Equal(t, tc.wantEncrypted, aws.ToBool(out.Encrypted))
			assert.Equal(t, tc.wantKey, aws.ToString(out.KmsKeyId))
			v, _ := s.Volume(aws.ToString(out.VolumeId))
			assert.Equal(t, tc.wantEncrypted, v.Encrypted)
			assert.Equal(t, tc.wantKey, v.KmsKeyID)
		})
	}
}

func TestCreateVolumeClientTokenIsIdempotent(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(8), ClientToken: aws.String("restore-etcd-main-a")}
	first, err := c.CreateVolume(ctx(t), in)
	require.NoError(t, err)
	again, err := c.CreateVolume(ctx(t), in)
	require.NoError(t, err)
	assert.Equal(t, aws.ToString(first.VolumeId), aws.ToString(again.VolumeId))
	assert.Len(t, s.Volumes(), 1)

	calls := s.CallsTo("CreateVolume")
	require.Len(t, calls, 2)
	assert.False(t, calls[0].Replayed)
	assert.True(t, calls[1].Replayed)

	other := *in
	other.Size = aws.Int32(9)
	_, err = c.CreateVolume(ctx(t), &other)
	wantCode(t, err, "IdempotentParameterMismatch")
	assert.Len(t, s.Volumes(), 1)
}

// A CreateVolume whose response is lost is retried by the SDK with the
// same auto-generated ClientToken, so exactly one volume exists.
func TestCreateVolumeLostResponseIsRetriedIntoOneVolume(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.InjectFault(Fault{Action: "CreateVolume", Code: "InternalError", AfterEffect: true})

	out, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(8)})
	require.NoError(t, err)

	vols := s.Volumes()
	require.Len(t, vols, 1)
	assert.Equal(t, vols[0].ID, aws.ToString(out.VolumeId))
	calls := s.CallsTo("CreateVolume")
	require.Len(t, calls, 2)
	assert.Equal(t, "InternalError", calls[0].Code)
	assert.True(t, calls[0].Injected)
	assert.True(t, calls[1].Replayed)
	assert.NotEmpty(t, calls[0].Params.Get("ClientToken"))
	assert.Equal(t, calls[0].Params.Get("ClientToken"), calls[1].Params.Get("ClientToken"))
}

func TestDetachThenDeleteVolume(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	inst := s.AddInstance(Instance{})
	id := s.AddVolume(Volume{Attachment: &Attachment{InstanceID: inst, Device: "/dev/xvdu"}})

	_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: &id})
	wantCode(t, err, "VolumeInUse")

	_, err = c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: &id, InstanceId: aws.String("i-0123456789abcdef0")})
	wantCode(t, err, "InvalidAttachment.NotFound")

	det, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: &id, InstanceId: &inst})
	require.NoError(t, err)
	assert.Equal(t, types.VolumeAttachmentStateDetaching, det.State)
	assert.Equal(t, "/dev/xvdu", aws.ToString(det.Device))

	_, err = c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: &id})
	wantCode(t, err, "VolumeInUse")
	v, _ := s.Volume(id)
	assert.Equal(t, "in-use", v.State)
	assert.Equal(t, "detaching", v.Attachment.State)

	clock.Advance(time.Minute)
	_, err = c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: &id})
	wantCode(t, err, "IncorrectState")
	v, _ = s.Volume(id)
	assert.Equal(t, "available", v.State)
	assert.Nil(t, v.Attachment)

	_, err = c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: &id})
	require.NoError(t, err)
	_, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	wantCode(t, err, "InvalidVolume.NotFound")
	_, err = c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: &id})
	wantCode(t, err, "InvalidVolume.NotFound")
}

func TestAttachVolumeShowsOnTheInstance(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	inst := s.AddInstance(Instance{AvailabilityZone: "us-east-1a"})
	far := s.AddVolume(Volume{AvailabilityZone: "us-east-1b"})
	near := s.AddVolume(Volume{AvailabilityZone: "us-east-1a"})

	_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: &far, InstanceId: &inst, Device: aws.String("/dev/xvdu")})
	wantCode(t, err, "InvalidVolume.ZoneMismatch")

	att, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: &near, InstanceId: &inst, Device: aws.String("/dev/xvdu")})
	require.NoError(t, err)
	assert.Equal(t, types.VolumeAttachmentStateAttaching, att.State)

	_, err = c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: &near, InstanceId: &inst, Device: aws.String("/dev/xvdv")})
	wantCode(t, err, "VolumeInUse")

	clock.Advance(time.Minute)
	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{inst}})
	require.NoError(t, err)
	bdm := out.Reservations[0].Instances[0].BlockDeviceMappings
	require.Len(t, bdm, 1)
	assert.Equal(t, "/dev/xvdu", aws.ToString(bdm[0].DeviceName))
	assert.Equal(t, near, aws.ToString(bdm[0].Ebs.VolumeId))
	assert.Equal(t, types.AttachmentStatusAttached, bdm[0].Ebs.Status)
}

func TestDescribeVolumesPaginates(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	var want []string
	for range 12 {
		want = append(want, s.AddVolume(Volume{}))
	}

	var got []string
	pages := 0
	p := ec2.NewDescribeVolumesPaginator(c, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		require.NoError(t, err)
		pages++
		for _, v := range out.Volumes {
			got = append(got, aws.ToString(v.VolumeId))
		}
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, want, got)

	_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{MaxResults: aws.Int32(3)})
	wantCode(t, err, "InvalidParameterValue")
	_, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5), VolumeIds: want[:1]})
	wantCode(t, err, "InvalidParameterCombination")
	_, err = c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{NextToken: aws.String("garbage")})
	wantCode(t, err, "InvalidParameterValue")
}
