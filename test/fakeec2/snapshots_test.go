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

func TestCreateSnapshotCopiesTheVolumeAndCompletesForTheSDKWaiter(t *testing.T) {
	s := Start(t, WithTransitionDelay(50*time.Millisecond))
	c := s.Client(t)
	const key = "arn:aws:kms:us-east-1:123456789012:key/etcd"
	vol := s.AddVolume(Volume{Size: 40, Encrypted: true, KmsKeyID: key})

	out, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{
		VolumeId:    &vol,
		Description: aws.String("kopsdr etcd-main"),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeSnapshot,
			Tags:         []types.Tag{{Key: aws.String("kopsdr/backup"), Value: aws.String("2026-11-21T22:52:16Z-000001")}},
		}},
	})
	require.NoError(t, err)
	id := aws.ToString(out.SnapshotId)
	assert.Regexp(t, `^snap-[0-9a-f]{17}$`, id)
	assert.Equal(t, types.SnapshotStatePending, out.State)
	assert.Equal(t, vol, aws.ToString(out.VolumeId))
	assert.Equal(t, int32(40), aws.ToInt32(out.VolumeSize))
	assert.True(t, aws.ToBool(out.Encrypted))
	assert.Equal(t, key, aws.ToString(out.KmsKeyId))
	assert.Equal(t, "kopsdr etcd-main", aws.ToString(out.Description))
	assert.Equal(t, s.AccountID(), aws.ToString(out.OwnerId))
	assert.Equal(t, []types.Tag{{Key: aws.String("kopsdr/backup"), Value: aws.String("2026-11-21T22:52:16Z-000001")}}, out.Tags)

	w := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	})
	require.NoError(t, w.Wait(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}, 10*time.Second))
	sn, ok := s.Snapshot(id)
	require.True(t, ok)
	assert.Equal(t, "completed", sn.State)
	assert.Equal(t, "100%", sn.Progress)
}

func TestSnapshotProgressRisesWithTime(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	vol := s.AddVolume(Volume{})
	out, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &vol})
	require.NoError(t, err)
	id := aws.ToString(out.SnapshotId)

	describe := func() types.Snapshot {
		d, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
		require.NoError(t, err)
		require.Len(t, d.Snapshots, 1)
		return d.Snapshots[0]
	}
	sn := describe()
	assert.Equal(t, types.SnapshotStatePending, sn.State)
	assert.Equal(t, "0%", aws.ToString(sn.Progress))
	assert.True(t, clock.Now().Equal(aws.ToTime(sn.StartTime)))

	clock.Advance(30 * time.Second)
	sn = describe()
	assert.Equal(t, types.SnapshotStatePending, sn.State)
	assert.Equal(t, "50%", aws.ToString(sn.Progress))

	clock.Advance(30 * time.Second)
	sn = describe()
	assert.Equal(t, types.SnapshotStateCompleted, sn.State)
	assert.Equal(t, "100%", aws.ToString(sn.Progress))
}

func TestSnapshotWaiterFailsOnErrorState(t *testing.T) {
	s, _ := startManual(t) // "creating" and "pending" stay so while the test looks
	c := s.Client(t)
	id := s.AddSnapshot(Snapshot{State: "pending"})
	require.True(t, s.SetSnapshotState(id, "error"))
	w := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	})
	err := w.Wait(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}, 5*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Failure")
}

func TestCreateSnapshotRefusesWhatEC2Refuses(t *testing.T) {
	s, _ := startManual(t) // "creating" and "pending" stay so while the test looks
	c := s.Client(t)
	creating := s.AddVolume(Volume{State: "creating"})
	vol := s.AddVolume(Volume{})

	_, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: aws.String("vol-0123456789abcdef0")})
	wantCode(t, err, "InvalidVolume.NotFound")
	_, err = c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &creating})
	wantCode(t, err, "IncorrectState")
	_, err = c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &vol, TagSpecifications: []types.TagSpecification{{
		ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}},
	}}})
	wantCode(t, err, "InvalidParameterValue")
	assert.Empty(t, s.Snapshots())
}

func TestDescribeSnapshotsOwnersIDsAndPages(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	var all []string
	for range 7 {
		all = append(all, s.AddSnapshot(Snapshot{}))
	}

	for _, tc := range []struct {
		owners []string
		want   int
	}{
		{nil, 7},
		{[]string{"self"}, 7},
		{[]string{s.AccountID()}, 7},
		{[]string{"amazon"}, 0},
		{[]string{"amazon", "self"}, 7},
		{[]string{"999999999999"}, 0},
	} {
		out, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{OwnerIds: tc.owners})
		require.NoError(t, err)
		assert.Len(t, out.Snapshots, tc.want, "owners %v", tc.owners)
	}

	out, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{all[3], all[1]}})
	require.NoError(t, err)
	require.Len(t, out.Snapshots, 2)
	assert.Equal(t, all[3], aws.ToString(out.Snapshots[0].SnapshotId), "asked-for order")

	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{all[0], "snap-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSnapshot.NotFound")
	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snapshot"}})
	wantCode(t, err, "InvalidSnapshotID.Malformed")

	var got []string
	p := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx(t))
		require.NoError(t, err)
		for _, sn := range page.Snapshots {
			got = append(got, aws.ToString(sn.SnapshotId))
		}
	}
	assert.Equal(t, all, got)
}

func TestDeleteSnapshot(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	keep := s.AddSnapshot(Snapshot{})
	gone := s.AddSnapshot(Snapshot{})
	_, err := c.DeleteSnapshot(ctx(t), &ec2.DeleteSnapshotInput{SnapshotId: &gone})
	require.NoError(t, err)
	_, err = c.DeleteSnapshot(ctx(t), &ec2.DeleteSnapshotInput{SnapshotId: &gone})
	wantCode(t, err, "InvalidSnapshot.NotFound")
	snaps := s.Snapshots()
	require.Len(t, snaps, 1)
	assert.Equal(t, keep, snaps[0].ID)
}
