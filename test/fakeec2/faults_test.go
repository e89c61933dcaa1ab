package fakeec2

import (
	"errors"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codes lists the answered error code of each call ("" = success).
func codes(calls []Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Code
	}
	return out
}

func TestThrottlingIsRetriedBySDKRetryer(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	vol := s.AddVolume(Volume{})
	s.InjectFault(Fault{Action: "DescribeVolumes", Code: "RequestLimitExceeded", Times: 2})

	out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	require.NoError(t, err)
	require.Len(t, out.Volumes, 1)
	calls := s.CallsTo("DescribeVolumes")
	assert.Equal(t, []string{"RequestLimitExceeded", "RequestLimitExceeded", ""}, codes(calls))
	assert.True(t, calls[0].Injected)
	assert.False(t, calls[2].Injected)
}

func TestServerErrorsAreRetriedBySDKRetryer(t *testing.T) {
	for _, f := range []Fault{
		{Code: "InternalError", Times: 2},        // HTTP 500
		{Code: "Unavailable", Times: 2},          // HTTP 503
		{Code: "SomethingOdd", HTTPStatus: 502},  // retried on the status alone
		{Code: "InternalError", HTTPStatus: 504}, // explicit status
	} {
		t.Run(f.Code, func(t *testing.T) {
			s := Start(t)
			c := s.Client(t)
			inst := s.AddInstance(Instance{})
			s.InjectFault(f)
			_, err := c.RebootInstances(ctx(t), &ec2.RebootInstancesInput{InstanceIds: []string{inst}})
			require.NoError(t, err)
			in, _ := s.Instance(inst)
			assert.Equal(t, 1, in.Reboots, "the failed attempts must not have taken effect")
			calls := s.Calls()
			assert.Equal(t, "", calls[len(calls)-1].Code)
			assert.Greater(t, len(calls), 1)
		})
	}
}

func TestIncorrectStateIsAnAPIErrorAndNotRetried(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	vol := s.AddVolume(Volume{})
	s.InjectFault(Fault{Action: "DeleteVolume", Code: "IncorrectState", Message: "The volume is busy"})

	_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: &vol})
	var ae smithy.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "IncorrectState", ae.ErrorCode())
	assert.Equal(t, "The volume is busy", ae.ErrorMessage())
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 400, re.HTTPStatusCode())
	assert.NotEmpty(t, re.ServiceRequestID(), "RequestID must be parsed from the error document")
	assert.Len(t, s.CallsTo("DeleteVolume"), 1, "a client error is not retried")
	_, ok := s.Volume(vol)
	assert.True(t, ok, "a failed DeleteVolume deletes nothing")

	// The real (not injected) IncorrectState surfaces the same way.
	_, err = c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: &vol})
	wantCode(t, err, "IncorrectState")
}

func TestPersistentThrottlingExhaustsTheRetryer(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.InjectFault(Fault{Code: "RequestLimitExceeded", Times: Always})

	_, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{})
	var mae *retry.MaxAttemptsError
	require.ErrorAs(t, err, &mae)
	wantCode(t, err, "RequestLimitExceeded")
	assert.Len(t, s.Calls(), retry.DefaultMaxAttempts)

	s.ClearFaults()
	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{})
	require.NoError(t, err)
}

func TestFaultMatchLimitsTheFault(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	a := s.AddVolume(Volume{})
	b := s.AddVolume(Volume{})
	s.InjectFault(Fault{
		Action: "CreateSnapshot",
		Code:   "InvalidVolume.NotFound",
		Times:  Always,
		Match:  func(form url.Values) bool { return form.Get("VolumeId") == b },
	})

	_, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &a})
	require.NoError(t, err)
	_, err = c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &b})
	wantCode(t, err, "InvalidVolume.NotFound")
	_, err = c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: &b})
	wantCode(t, err, "InvalidVolume.NotFound")
	assert.Len(t, s.Snapshots(), 1)
}

func TestFaultsFireInOrderAndRunOut(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.InjectFault(Fault{Action: "DescribeInstances", Code: "AuthFailure"})
	s.InjectFault(Fault{Action: "DescribeInstances", Code: "UnauthorizedOperation"})

	_, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "AuthFailure")
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re))
	assert.Equal(t, 401, re.HTTPStatusCode())
	_, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "UnauthorizedOperation")
	_, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	require.NoError(t, err)
}

func TestDryRun(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1), DryRun: aws.Bool(true)})
	wantCode(t, err, "DryRunOperation")
	assert.Empty(t, s.Volumes())
}
