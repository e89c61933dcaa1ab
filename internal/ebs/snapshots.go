package ebs

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Snapshot states as EC2 reports them.
const (
	SnapshotPending   = "pending"
	SnapshotCompleted = "completed"
	SnapshotError     = "error"
)

// Snapshot is what kopsdr needs to know of an EBS snapshot. The fields after
// Tags come from kopsdr's tags and are empty for a snapshot kopsdr did not take.
type Snapshot struct {
	ID          string            `json:"id"`
	VolumeID    string            `json:"volumeId"`
	VolumeSize  int32             `json:"volumeSize"`
	State       string            `json:"state"`
	Progress    string            `json:"progress,omitempty"`
	StartTime   time.Time         `json:"startTime"`
	Encrypted   bool              `json:"encrypted"`
	KMSKeyID    string            `json:"kmsKeyId,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`

	Cluster          string `json:"cluster,omitempty"`
	Set              string `json:"set,omitempty"`
	EtcdCluster      string `json:"etcdCluster,omitempty"`
	Member           string `json:"member,omitempty"`
	AvailabilityZone string `json:"availabilityZone,omitempty"`
}

// Key names the member the snapshot belongs to: "main/a" ("" if unknown).
func (s Snapshot) Key() string {
	if s.EtcdCluster == "" || s.Member == "" {
		return ""
	}
	return s.EtcdCluster + "/" + s.Member
}

// VolumeTags are the tags the snapshotted volume had, as recorded.
func (s Snapshot) VolumeTags() map[string]string { return Uncopied(s.Tags) }

// VolumeSpec is the snapshotted volume's type, size, iops and throughput,
// as recorded (ok false when not recorded).
func (s Snapshot) VolumeSpec() (VolumeSpec, bool) { return ParseVolumeSpec(s.Tags[TagVolumeSpec]) }

// SnapshotFrom converts the SDK's snapshot and reads kopsdr's tags.
func SnapshotFrom(s types.Snapshot) Snapshot {
	out := Snapshot{
		ID: str(s.SnapshotId), VolumeID: str(s.VolumeId), VolumeSize: aws.ToInt32(s.VolumeSize),
		State: string(s.State), Progress: str(s.Progress), StartTime: aws.ToTime(s.StartTime).UTC(),
		Encrypted: aws.ToBool(s.Encrypted), KMSKeyID: str(s.KmsKeyId), Description: str(s.Description),
		Tags: tagMap(s.Tags),
	}
	out.Cluster, out.Set = out.Tags[TagCluster], out.Tags[TagSet]
	out.EtcdCluster, out.Member = out.Tags[TagEtcdCluster], out.Tags[TagMember]
	out.AvailabilityZone = out.Tags[TagZone]
	return out
}

// SnapshotTags are the tags kopsdr puts on the snapshot of one etcd volume:
// enough to find it again (cluster, set, member), to restore it into the
// right zone even when the volume is gone (zone, spec, the volume's own
// tags) and to trace it (workflow id). The volume's tags come last and are
// dropped, operator tags first, rather than exceed EC2's 50 tags.
func SnapshotTags(v EtcdVolume, set string, setSize int, workflowID string) map[string]string {
	tags := map[string]string{
		TagCluster: v.Cluster, TagSet: set, TagSetSize: strconv.Itoa(setSize), TagWorkflowID: workflowID,
		TagEtcdCluster: v.EtcdCluster, TagMember: v.Etcd.Member, TagZone: v.AvailabilityZone,
		TagVolumeID: v.ID, TagVolumeSpec: v.Spec.String(),
		TagName: "kopsdr " + VolumeName(v.Etcd.Member, v.EtcdCluster, v.Cluster) + " " + set,
	}
	for _, group := range []map[string]string{KopsTags(v.Tags), UserTags(v.Tags)} {
		copied := Copied(group)
		for _, k := range SortedKeys(copied) {
			if len(tags) >= MaxTags {
				return tags
			}
			tags[k] = copied[k]
		}
	}
	return tags
}

// SnapshotDescription is the human-readable description of a kopsdr snapshot.
func SnapshotDescription(v EtcdVolume, set string) string {
	return "kopsdr: etcd " + v.EtcdCluster + " member " + v.Etcd.Member + " of " + v.Cluster + " (set " + set + ")"
}

// DescribeSnapshots lists this account's snapshots matching filters.
func DescribeSnapshots(ctx context.Context, c *ec2.Client, filters ...types.Filter) ([]Snapshot, error) {
	var out []Snapshot
	p := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"}, Filters: filters, MaxResults: aws.Int32(1000),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range page.Snapshots {
			out = append(out, SnapshotFrom(s))
		}
	}
	return out, nil
}

// ClusterSnapshots lists every snapshot kopsdr took of the cluster.
func ClusterSnapshots(ctx context.Context, c *ec2.Client, cluster string) ([]Snapshot, error) {
	return DescribeSnapshots(ctx, c, Filter("tag:"+TagCluster, cluster), Filter("tag-key", TagSet))
}

// SnapshotSet is the snapshots one VolumeSnapshot run took, one per member.
type SnapshotSet struct {
	ID        string     `json:"id"`
	Time      time.Time  `json:"time"`
	Snapshots []Snapshot `json:"snapshots"` // sorted by member key
}

// State is pending while any snapshot is; completed when every snapshot
// is and none is missing (a run that failed to start one leaves fewer than
// its set-size tag says); else error.
func (s SnapshotSet) State() string {
	state := SnapshotCompleted
	for _, sn := range s.Snapshots {
		switch sn.State {
		case SnapshotPending:
			return SnapshotPending
		case SnapshotCompleted:
		default:
			state = SnapshotError
		}
		if n, err := strconv.Atoi(sn.Tags[TagSetSize]); err == nil && n > len(s.Snapshots) {
			state = SnapshotError
		}
	}
	return state
}

// Member returns the set's snapshot of one member ("main/a").
func (s SnapshotSet) Member(key string) (Snapshot, bool) {
	for _, sn := range s.Snapshots {
		if sn.Key() == key {
			return sn, true
		}
	}
	return Snapshot{}, false
}

// Sets groups kopsdr snapshots by set, newest set first. A set's time comes
// from its id (the workflow's start), or the earliest snapshot's start time
// when the id is not kopsdr's format.
func Sets(snaps []Snapshot) []SnapshotSet {
	byID := map[string]*SnapshotSet{}
	for _, sn := range snaps {
		if sn.Set == "" {
			continue
		}
		s := byID[sn.Set]
		if s == nil {
			s = &SnapshotSet{ID: sn.Set}
			byID[sn.Set] = s
		}
		s.Snapshots = append(s.Snapshots, sn)
	}
	out := make([]SnapshotSet, 0, len(byID))
	for _, s := range byID {
		slices.SortFunc(s.Snapshots, func(a, b Snapshot) int { return strings.Compare(a.Key()+a.ID, b.Key()+b.ID) })
		if t, ok := SetTime(s.ID); ok {
			s.Time = t
		} else {
			s.Time = s.Snapshots[0].StartTime
			for _, sn := range s.Snapshots {
				if sn.StartTime.Before(s.Time) {
					s.Time = sn.StartTime
				}
			}
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b SnapshotSet) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}
