package ebs

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kopsdr/kopsdr/internal/kops"
)

// Volume is what kopsdr needs to know of an EBS volume.
type Volume struct {
	ID               string            `json:"id"`
	AvailabilityZone string            `json:"availabilityZone"`
	State            string            `json:"state"`
	Spec             VolumeSpec        `json:"spec"`
	Encrypted        bool              `json:"encrypted"`
	KMSKeyID         string            `json:"kmsKeyId,omitempty"`
	SnapshotID       string            `json:"snapshotId,omitempty"`
	Tags             map[string]string `json:"tags"`
	InstanceID       string            `json:"instanceId,omitempty"` // attached to ("" = none)
	Device           string            `json:"device,omitempty"`
}

// VolumeSpec is what a replacement volume copies from the volume it replaces.
type VolumeSpec struct {
	Type       string `json:"type"`
	Size       int32  `json:"size"`                 // GiB
	Iops       int32  `json:"iops,omitempty"`       // io1, io2, gp3
	Throughput int32  `json:"throughput,omitempty"` // MiB/s, gp3
}

// String is the compact form kept in a snapshot's kopsdr.io/volume-spec tag.
func (s VolumeSpec) String() string {
	return fmt.Sprintf("%s/%d/%d/%d", s.Type, s.Size, s.Iops, s.Throughput)
}

// ParseVolumeSpec reads VolumeSpec.String.
func ParseVolumeSpec(v string) (VolumeSpec, bool) {
	f := strings.Split(v, "/")
	if len(f) != 4 || f[0] == "" {
		return VolumeSpec{}, false
	}
	var n [3]int32
	for i, s := range f[1:] {
		x, err := strconv.ParseInt(s, 10, 32)
		if err != nil || x < 0 {
			return VolumeSpec{}, false
		}
		n[i] = int32(x)
	}
	return VolumeSpec{Type: f[0], Size: n[0], Iops: n[1], Throughput: n[2]}, true
}

// CreateParams are the type-dependent CreateVolume fields: EC2 refuses iops
// for gp2/st1/sc1/standard and throughput for anything but gp3.
func (s VolumeSpec) CreateParams() (typ types.VolumeType, size, iops, throughput *int32) {
	size = aws.Int32(s.Size)
	switch s.Type {
	case "io1", "io2":
		iops = aws.Int32(s.Iops)
	case "gp3":
		if s.Iops > 0 {
			iops = aws.Int32(s.Iops)
		}
		if s.Throughput > 0 {
			throughput = aws.Int32(s.Throughput)
		}
	}
	return types.VolumeType(s.Type), size, iops, throughput
}

// EtcdVolume is a volume protokube would mount for one etcd member.
type EtcdVolume struct {
	Volume
	Cluster     string  `json:"cluster"`
	EtcdCluster string  `json:"etcdCluster"` // main | events
	Etcd        EtcdTag `json:"etcd"`
}

// Key names the member across etcd clusters: "main/a".
func (v EtcdVolume) Key() string { return v.EtcdCluster + "/" + v.Etcd.Member }

// VolumeFrom converts the SDK's volume.
func VolumeFrom(v types.Volume) Volume {
	out := Volume{
		ID: str(v.VolumeId), AvailabilityZone: str(v.AvailabilityZone), State: string(v.State),
		Spec: VolumeSpec{Type: string(v.VolumeType), Size: aws.ToInt32(v.Size),
			Iops: aws.ToInt32(v.Iops), Throughput: aws.ToInt32(v.Throughput)},
		Encrypted: aws.ToBool(v.Encrypted), KMSKeyID: str(v.KmsKeyId), SnapshotID: str(v.SnapshotId),
		Tags: tagMap(v.Tags),
	}
	for _, a := range v.Attachments {
		if a.State != types.VolumeAttachmentStateDetached {
			out.InstanceID, out.Device = str(a.InstanceId), str(a.Device)
		}
	}
	return out
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[str(t.Key)] = str(t.Value)
	}
	return m
}

// Tags converts a map to the SDK's list, sorted by key so requests are
// stable (CreateVolume's ClientToken compares parameters exactly).
func Tags(m map[string]string) []types.Tag {
	out := make([]types.Tag, 0, len(m))
	for _, k := range SortedKeys(m) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// DescribeVolumes lists the volumes matching filters, every page.
func DescribeVolumes(ctx context.Context, c *ec2.Client, filters ...types.Filter) ([]Volume, error) {
	var out []Volume
	p := ec2.NewDescribeVolumesPaginator(c, &ec2.DescribeVolumesInput{Filters: filters, MaxResults: aws.Int32(500)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range page.Volumes {
			out = append(out, VolumeFrom(v))
		}
	}
	return out, nil
}

// GetVolume describes one volume; ok is false when it does not exist.
func GetVolume(ctx context.Context, c *ec2.Client, id string) (Volume, bool, error) {
	// A filter, unlike VolumeIds, answers an empty list for a missing volume
	// instead of an error for the whole call.
	vs, err := DescribeVolumes(ctx, c, Filter("volume-id", id))
	if err != nil || len(vs) == 0 {
		return Volume{}, false, err
	}
	return vs[0], true, nil
}

// Filter builds one EC2 filter.
func Filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

// FindEtcdVolumes finds the volumes protokube would mount for the cluster's
// etcd clusters: tagged k8s.io/etcd/<etcd cluster> and owned by the cluster
// by kops's rule (kops.OwnedBy: KubernetesCluster=<cluster> and/or
// kubernetes.io/cluster/<cluster>=owned, none disagreeing). A volume whose
// etcd tag does not parse, or two volumes claiming one member, is an error:
// protokube would be as confused.
func FindEtcdVolumes(ctx context.Context, c *ec2.Client, cluster string, etcdClusters []string) ([]EtcdVolume, error) {
	keys := make([]string, len(etcdClusters))
	for i, ec := range etcdClusters {
		keys[i] = TagEtcdPrefix + ec
	}
	seen := map[string]Volume{}
	for _, owner := range []types.Filter{Filter("tag:"+TagKubernetesCluster, cluster), Filter("tag-key", TagClusterPrefix+cluster)} {
		vs, err := DescribeVolumes(ctx, c, owner, Filter("tag-key", keys...))
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			if kops.OwnedBy(v.Tags, cluster) {
				seen[v.ID] = v
			}
		}
	}
	return EtcdVolumesOf(cluster, etcdClusters, seen)
}

// EtcdVolumesOf classifies volumes (by id) into etcd members, sorted by
// etcd cluster and member.
func EtcdVolumesOf(cluster string, etcdClusters []string, vols map[string]Volume) ([]EtcdVolume, error) {
	var out []EtcdVolume
	byMember := map[string]string{}
	for _, id := range SortedKeys(vols) {
		v := vols[id]
		for _, ec := range etcdClusters {
			val, ok := v.Tags[TagEtcdPrefix+ec]
			if !ok {
				continue
			}
			et, err := ParseEtcdTag(val)
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.ID, err)
			}
			ev := EtcdVolume{Volume: v, Cluster: cluster, EtcdCluster: ec, Etcd: et}
			if other, dup := byMember[ev.Key()]; dup {
				return nil, fmt.Errorf("volumes %s and %s are both tagged as etcd %s member %s: untag the one that is not in use",
					other, v.ID, ec, et.Member)
			}
			byMember[ev.Key()] = v.ID
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, func(a, b EtcdVolume) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}
