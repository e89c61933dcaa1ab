package fakeec2

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }

func TestCreateTagsOnEveryKindOfResource(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	vol := s.AddVolume(Volume{Tags: map[string]string{"keep": "me", "Name": "old"}})
	snap := s.AddSnapshot(Snapshot{})
	inst := s.AddInstance(Instance{})

	_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{
		Resources: []string{vol, snap, inst},
		Tags:      []types.Tag{tag("Name", "a.etcd-main.k.example.com"), {Key: aws.String("k8s.io/role/master")}},
	})
	require.NoError(t, err)
	want := map[string]string{"Name": "a.etcd-main.k.example.com", "k8s.io/role/master": ""}
	v, _ := s.Volume(vol)
	assert.Equal(t, map[string]string{"Name": "a.etcd-main.k.example.com", "k8s.io/role/master": "", "keep": "me"}, v.Tags)
	sn, _ := s.Snapshot(snap)
	assert.Equal(t, want, sn.Tags)
	in, _ := s.Instance(inst)
	assert.Equal(t, want, in.Tags)

	d, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	require.NoError(t, err)
	assert.ElementsMatch(t, []types.Tag{tag("Name", "a.etcd-main.k.example.com"), tag("k8s.io/role/master", ""), tag("keep", "me")}, d.Volumes[0].Tags)
}

func TestCreateTagsIsAllOrNothing(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	vol := s.AddVolume(Volume{})
	for _, tc := range []struct {
		name      string
		resources []string
		tags      []types.Tag
		code      string
	}{
		{"missing volume", []string{vol, "vol-0123456789abcdef0"}, []types.Tag{tag("a", "b")}, "InvalidVolume.NotFound"},
		{"missing snapshot", []string{vol, "snap-0123456789abcdef0"}, []types.Tag{tag("a", "b")}, "InvalidSnapshot.NotFound"},
		{"missing instance", []string{vol, "i-0123456789abcdef0"}, []types.Tag{tag("a", "b")}, "InvalidInstanceID.NotFound"},
		{"unknown kind", []string{vol, "ami-0123456789abcdef0"}, []types.Tag{tag("a", "b")}, "InvalidID"},
		{"reserved key", []string{vol}, []types.Tag{tag("a", "b"), tag("aws:cloudformation:stack", "x")}, "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: tc.resources, Tags: tc.tags})
			wantCode(t, err, tc.code)
			v, _ := s.Volume(vol)
			assert.Empty(t, v.Tags)
		})
	}
}

func TestDeleteTagsSemantics(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	seed := map[string]string{"k8s.io/etcd/main": "a/a,b,c", "k8s.io/role/master": "1", "empty": "", "Name": "x"}

	for _, tc := range []struct {
		name string
		tags []types.Tag
		want map[string]string
	}{
		{"key only deletes any value", []types.Tag{{Key: aws.String("k8s.io/etcd/main")}},
			map[string]string{"k8s.io/role/master": "1", "empty": "", "Name": "x"}},
		{"key and value delete on match", []types.Tag{tag("k8s.io/role/master", "1"), tag("Name", "y")},
			map[string]string{"k8s.io/etcd/main": "a/a,b,c", "empty": "", "Name": "x"}},
		{"empty value deletes only an empty value", []types.Tag{tag("empty", ""), tag("Name", "")},
			map[string]string{"k8s.io/etcd/main": "a/a,b,c", "k8s.io/role/master": "1", "Name": "x"}},
		{"absent key is fine", []types.Tag{{Key: aws.String("nope")}}, seed},
		{"no tags deletes all", nil, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := s.AddVolume(Volume{Tags: seed})
			_, err := c.DeleteTags(ctx(t), &ec2.DeleteTagsInput{Resources: []string{vol}, Tags: tc.tags})
			require.NoError(t, err)
			v, _ := s.Volume(vol)
			assert.Equal(t, tc.want, v.Tags)
		})
	}

	_, err := c.DeleteTags(ctx(t), &ec2.DeleteTagsInput{Resources: []string{"vol-0123456789abcdef0"}})
	wantCode(t, err, "InvalidVolume.NotFound")
}
