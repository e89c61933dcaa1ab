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

func TestDescribeInstancesRoundTripsSeededInstance(t *testing.T) {
	s := Start(t, WithRegion("eu-central-1"))
	c := s.Client(t)
	id := s.AddInstance(Instance{
		AvailabilityZone: "eu-central-1b",
		PrivateIP:        "172.20.64.10",
		Tags:             map[string]string{"k8s.io/role/master": "1", "Name": "master-eu-central-1b"},
	})
	s.AddVolume(Volume{AvailabilityZone: "eu-central-1b", Attachment: &Attachment{InstanceID: id, Device: "/dev/xvdv"}})
	s.AddVolume(Volume{AvailabilityZone: "eu-central-1b", Attachment: &Attachment{InstanceID: id, Device: "/dev/xvdu"}})

	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Len(t, out.Reservations, 1)
	assert.Equal(t, s.AccountID(), aws.ToString(out.Reservations[0].OwnerId))
	require.Len(t, out.Reservations[0].Instances, 1)
	in := out.Reservations[0].Instances[0]
	assert.Equal(t, id, aws.ToString(in.InstanceId))
	assert.Equal(t, "eu-central-1b", aws.ToString(in.Placement.AvailabilityZone))
	assert.Equal(t, "172.20.64.10", aws.ToString(in.PrivateIpAddress))
	assert.Equal(t, "ip-172-20-64-10.eu-central-1.compute.internal", aws.ToString(in.PrivateDnsName))
	assert.Equal(t, types.InstanceStateNameRunning, in.State.Name)
	assert.Equal(t, int32(16), aws.ToInt32(in.State.Code))
	assert.ElementsMatch(t, []types.Tag{
		{Key: aws.String("Name"), Value: aws.String("master-eu-central-1b")},
		{Key: aws.String("k8s.io/role/master"), Value: aws.String("1")},
	}, in.Tags)
	require.Len(t, in.BlockDeviceMappings, 2)
	assert.Equal(t, "/dev/xvdu", aws.ToString(in.BlockDeviceMappings[0].DeviceName))
	assert.Equal(t, "/dev/xvdv", aws.ToString(in.BlockDeviceMappings[1].DeviceName))

	_, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id, "i-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
	_, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{"master"}})
	wantCode(t, err, "InvalidInstanceID.Malformed")
}

func TestStopStartInstancesMoveThroughStates(t *testing.T) {
	s, clock := startManual(t)
	c := s.Client(t)
	id := s.AddInstance(Instance{})
	state := func() types.InstanceStateName {
		out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		require.NoError(t, err)
		return out.Reservations[0].Instances[0].State.Name
	}

	stop, err := c.StopInstances(ctx(t), &ec2.StopInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Len(t, stop.StoppingInstances, 1)
	assert.Equal(t, types.InstanceStateNameRunning, stop.StoppingInstances[0].PreviousState.Name)
	assert.Equal(t, types.InstanceStateNameStopping, stop.StoppingInstances[0].CurrentState.Name)
	assert.Equal(t, int32(64), aws.ToInt32(stop.StoppingInstances[0].CurrentState.Code))
	assert.Equal(t, types.InstanceStateNameStopping, state())

	_, err = c.StartInstances(ctx(t), &ec2.StartInstancesInput{InstanceIds: []string{id}})
	wantCode(t, err, "IncorrectInstanceState")
	_, err = c.RebootInstances(ctx(t), &ec2.RebootInstancesInput{InstanceIds: []string{id}})
	wantCode(t, err, "IncorrectInstanceState")

	clock.Advance(time.Minute)
	assert.Equal(t, types.InstanceStateNameStopped, state())
	again, err := c.StopInstances(ctx(t), &ec2.StopInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	assert.Equal(t, types.InstanceStateNameStopped, again.StoppingInstances[0].CurrentState.Name, "stopping a stopped instance changes nothing")

	start, err := c.StartInstances(ctx(t), &ec2.StartInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	assert.Equal(t, types.InstanceStateNameStopped, start.StartingInstances[0].PreviousState.Name)
	assert.Equal(t, types.InstanceStateNamePending, start.StartingInstances[0].CurrentState.Name)
	clock.Advance(time.Minute)
	assert.Equal(t, types.InstanceStateNameRunning, state())
}

func TestInstanceWaitersSeeTheTransitions(t *testing.T) {
	s := Start(t, WithTransitionDelay(50*time.Millisecond))
	c := s.Client(t)
	id := s.AddInstance(Instance{})
	fast := func(lo, hi *time.Duration) { *lo, *hi = 10*time.Millisecond, 50*time.Millisecond }

	_, err := c.StopInstances(ctx(t), &ec2.StopInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.NoError(t, ec2.NewInstanceStoppedWaiter(c, func(o *ec2.InstanceStoppedWaiterOptions) { fast(&o.MinDelay, &o.MaxDelay) }).
		Wait(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, 10*time.Second))

	_, err = c.StartInstances(ctx(t), &ec2.StartInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.NoError(t, ec2.NewInstanceRunningWaiter(c, func(o *ec2.InstanceRunningWaiterOptions) { fast(&o.MinDelay, &o.MaxDelay) }).
		Wait(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, 10*time.Second))
}

func TestRebootInstancesIsAllOrNothing(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	a := s.AddInstance(Instance{})
	b := s.AddInstance(Instance{})

	_, err := c.RebootInstances(ctx(t), &ec2.RebootInstancesInput{InstanceIds: []string{a, "i-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
	in, _ := s.Instance(a)
	assert.Zero(t, in.Reboots)

	_, err = c.RebootInstances(ctx(t), &ec2.RebootInstancesInput{InstanceIds: []string{a, b}})
	require.NoError(t, err)
	for _, in := range s.Instances() {
		assert.Equal(t, 1, in.Reboots)
		assert.Equal(t, "running", in.State)
	}
}

func TestDescribeInstancesPaginates(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	var want []string
	for range 6 {
		want = append(want, s.AddInstance(Instance{}))
	}
	var got []string
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		require.NoError(t, err)
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				got = append(got, aws.ToString(in.InstanceId))
			}
		}
	}
	assert.Equal(t, want, got)
}
