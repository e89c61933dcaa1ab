package fakeec2

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func f(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

// etcdFleet seeds what protokube sees on a three-master kops cluster: one
// master per zone, each with an etcd-main and an etcd-events volume.
func etcdFleet(s *Server) (masters map[string]string, main map[string]string) {
	masters, main = map[string]string{}, map[string]string{}
	for _, z := range []string{"a", "b", "c"} {
		az := s.Region() + z
		masters[z] = s.AddInstance(Instance{AvailabilityZone: az, Tags: map[string]string{"k8s.io/role/master": "1"}})
		main[z] = s.AddVolume(Volume{AvailabilityZone: az, Tags: map[string]string{
			"KubernetesCluster": "k.example.com", "k8s.io/etcd/main": z + "/a,b,c", "k8s.io/role/master": "1",
		}, Attachment: &Attachment{InstanceID: masters[z], Device: "/dev/xvdu"}})
		s.AddVolume(Volume{AvailabilityZone: az, Tags: map[string]string{
			"KubernetesCluster": "k.example.com", "k8s.io/etcd/events": z + "/a,b,c", "k8s.io/role/master": "1",
		}})
	}
	s.AddVolume(Volume{Tags: map[string]string{"KubernetesCluster": "other.example.com", "k8s.io/etcd/main": "a/a"}})
	return masters, main
}

func TestDescribeVolumesFilters(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	masters, main := etcdFleet(s)

	for _, tc := range []struct {
		name    string
		filters []types.Filter
		want    []string
	}{
		{"tag:K", []types.Filter{f("tag:KubernetesCluster", "k.example.com"), f("tag-key", "k8s.io/etcd/main")},
			[]string{main["a"], main["b"], main["c"]}},
		{"values are OR'ed", []types.Filter{f("tag:k8s.io/etcd/main", "a/a,b,c", "c/a,b,c")},
			[]string{main["a"], main["c"]}},
		{"filters are AND'ed", []types.Filter{f("tag-key", "k8s.io/etcd/main"), f("availability-zone", "us-east-1b")},
			[]string{main["b"]}},
		{"wildcards", []types.Filter{f("tag:k8s.io/etcd/main", "?/a,b,*"), f("status", "in-use")},
			[]string{main["a"], main["b"], main["c"]}},
		{"attachment.instance-id", []types.Filter{f("attachment.instance-id", masters["a"], masters["c"])},
			[]string{main["a"], main["c"]}},
		{"volume-id", []types.Filter{f("volume-id", main["b"])}, []string{main["b"]}},
		{"no match", []types.Filter{f("tag:KubernetesCluster", "K.EXAMPLE.COM")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: tc.filters})
			require.NoError(t, err)
			var got []string
			for _, v := range out.Volumes {
				got = append(got, aws.ToString(v.VolumeId))
			}
			assert.Equal(t, tc.want, got)
		})
	}

	_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: []types.Filter{f("tag", "x")}})
	wantCode(t, err, "InvalidParameterValue")
}

func TestDescribeSnapshotsAndInstancesFilters(t *testing.T) {
	s, _ := startManual(t) // "creating" and "pending" stay so while the test looks
	c := s.Client(t)
	masters, main := etcdFleet(s)
	s.AddInstance(Instance{State: "stopped", Tags: map[string]string{"k8s.io/role/master": "1"}})
	done := s.AddSnapshot(Snapshot{VolumeID: main["a"], Tags: map[string]string{"kopsdr": "1"}})
	s.AddSnapshot(Snapshot{VolumeID: main["a"], State: "pending", Tags: map[string]string{"kopsdr": "1"}})
	s.AddSnapshot(Snapshot{VolumeID: main["b"]})

	snaps, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{f("volume-id", main["a"]), f("status", "completed"), f("tag-key", "kopsdr")},
	})
	require.NoError(t, err)
	require.Len(t, snaps.Snapshots, 1)
	assert.Equal(t, done, aws.ToString(snaps.Snapshots[0].SnapshotId))

	snaps, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{Filters: []types.Filter{f("snapshot-id", done)}})
	require.NoError(t, err)
	require.Len(t, snaps.Snapshots, 1)

	insts, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{Filters: []types.Filter{
		f("tag:k8s.io/role/master", "1"), f("instance-state-name", "running", "pending"),
	}})
	require.NoError(t, err)
	var got []string
	for _, r := range insts.Reservations {
		for _, in := range r.Instances {
			got = append(got, aws.ToString(in.InstanceId))
		}
	}
	assert.Equal(t, []string{masters["a"], masters["b"], masters["c"]}, got)

	insts, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{Filters: []types.Filter{f("block-device-mapping.volume-id", main["c"])}})
	require.NoError(t, err)
	require.Len(t, insts.Reservations, 1)
	assert.Equal(t, masters["c"], aws.ToString(insts.Reservations[0].Instances[0].InstanceId))

	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{Filters: []types.Filter{f("instance-state-name", "running")}})
	wantCode(t, err, "InvalidParameterValue")
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*/a,b,c", "eu-central-1a/a,b,c", true},
		{"?", "", false},
		{"a?c", "abc", true},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b", "xxbxxa", false},
	} {
		assert.Equal(t, tc.want, glob(tc.pattern, tc.s), "glob(%q, %q)", tc.pattern, tc.s)
	}
}
