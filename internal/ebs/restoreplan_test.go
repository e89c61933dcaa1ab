package ebs

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
)

var zones = map[string]string{"a": "us-east-1a", "b": "us-east-1b", "c": "us-east-1c"}

// fixture is a 3-master cluster: six volumes and snapshot sets of them.
type fixture struct {
	in   PlanInput
	vols map[string]EtcdVolume
}

func newFixture() *fixture {
	f := &fixture{vols: map[string]EtcdVolume{}, in: PlanInput{
		Cluster: "c.example.com", Region: "us-east-1", EtcdClusters: []string{"main", "events"},
		Restart: RestartReboot, OldVolumes: OldVolumesUntag, WorkflowID: "restore/c.example.com", RunID: "run-1",
		Encryption: map[string]MemberEncryption{},
	}}
	for _, ec := range []string{"main", "events"} {
		for _, m := range []string{"a", "b", "c"} {
			v := testVolume(ec, m, zones[m], nil)
			f.vols[v.Key()] = v
			f.in.Volumes = append(f.in.Volumes, v)
			f.in.Encryption[v.Key()] = MemberEncryption{InSpec: true}
		}
	}
	for _, m := range []string{"a", "b", "c"} {
		f.in.Instances = append(f.in.Instances, kops.Master{InstanceID: "i-" + m, AvailabilityZone: zones[m], State: "running"})
	}
	return f
}

// addSet snapshots every volume at t; mutate may change each snapshot.
func (f *fixture) addSet(t time.Time, mutate func(*Snapshot)) string {
	id := SetID(t, t.String())
	for _, v := range f.in.Volumes {
		tags := SnapshotTags(v, id, len(f.in.Volumes), "volume-snapshots/c.example.com")
		sn := SnapshotFrom(sdkSnapshot("snap-"+strings.ReplaceAll(v.Key(), "/", "-")+"-"+id[:19], v.ID, tags))
		sn.State, sn.StartTime, sn.VolumeSize = SnapshotCompleted, t, v.Spec.Size
		sn.Encrypted, sn.KMSKeyID = v.Encrypted, v.KMSKeyID
		if mutate != nil {
			mutate(&sn)
		}
		f.in.Snapshots = append(f.in.Snapshots, sn)
	}
	return id
}

func fields(problems []*inputerr.Error) []string {
	var out []string
	for _, p := range problems {
		out = append(out, p.Field+"="+p.Value)
	}
	return out
}

func TestPlanRestoreLatestCompletedSet(t *testing.T) {
	f := newFixture()
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	older := f.addSet(t0, nil)
	f.addSet(t0.Add(time.Hour), func(s *Snapshot) {
		if s.Key() == "events/b" {
			s.State = SnapshotPending
		}
	})
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Equal(t, older, plan.SnapshotSet, "the newer set is not complete yet")
	require.Len(t, plan.Members, 6)
	require.Equal(t, []string{"i-a", "i-b", "i-c"}, plan.Instances, "each master restarted once for main and events")

	m := plan.Members[1] // events/b
	require.Equal(t, "events/b", m.Key())
	require.Equal(t, "us-east-1b", m.AvailabilityZone)
	require.Equal(t, "vol-eventsb", m.OldVolume.ID)
	require.Equal(t, "i-b", m.InstanceID)
	require.Equal(t, VolumeSpec{Type: "gp3", Size: 20, Iops: 3000, Throughput: 125}, m.New.Spec)
	require.Equal(t, map[string]string{
		"KubernetesCluster": "c.example.com", "Name": "b.etcd-events.c.example.com", "k8s.io/etcd/events": "b/a,b,c",
		"k8s.io/role/master": "1", "kubernetes.io/cluster/c.example.com": "owned",
	}, m.New.Tags)
	for k := range m.New.CreateTags {
		require.False(t, IsKopsTag(k), "nothing protokube matches goes on at creation: %s", k)
	}
	require.Equal(t, m.New.ClientToken, m.New.CreateTags[TagClientToken])
	require.Equal(t, "vol-eventsb", m.New.CreateTags[TagReplaces])
	require.False(t, m.New.Encrypted)
}

func TestPlanRestoreAtAndExplicitSet(t *testing.T) {
	f := newFixture()
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	first := f.addSet(t0, nil)
	second := f.addSet(t0.Add(2*time.Hour), nil)

	f.in.Select = Selection{At: t0.Add(time.Hour)}
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Equal(t, first, plan.SnapshotSet)

	f.in.Select = Selection{Set: second}
	plan, problems = PlanRestore(f.in)
	require.Empty(t, problems)
	require.Equal(t, second, plan.SnapshotSet)

	f.in.Select = Selection{At: t0.Add(-time.Hour)}
	_, problems = PlanRestore(f.in)
	require.Equal(t, []string{"at=2026-02-01T09:00:00Z"}, fields(problems))
}

func TestPlanRestoreOnlyChosenMembers(t *testing.T) {
	f := newFixture()
	f.addSet(time.Now(), func(s *Snapshot) {
		if s.Key() == "events/c" {
			s.State = SnapshotError // does not matter: events is not restored
		}
	})
	f.in.EtcdClusters, f.in.Members = []string{"main"}, []string{"a", "c"}
	_, problems := PlanRestore(f.in)
	require.Equal(t, []string{"allowMixedTimes=false"}, fields(problems), "main/b would keep today's data beside a and c from the set")
	require.Contains(t, problems[0].Fix, "main/b keep their current data")

	f.in.AllowMixedTimes = true
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Len(t, plan.Warnings, 1)
	require.Contains(t, plan.Warnings[0], "etcd main would hold data from different times")
	require.Len(t, plan.Members, 2)
	require.Equal(t, "main/a", plan.Members[0].Key())
	require.Equal(t, "main/c", plan.Members[1].Key())
	require.Equal(t, []string{"i-a", "i-c"}, plan.Instances)
}

func TestPlanRestoreRefusesWrongZoneAndMissing(t *testing.T) {
	f := newFixture()
	set := f.addSet(time.Now(), func(s *Snapshot) {
		if s.Key() == "main/a" {
			s.AvailabilityZone = "us-east-1b" // another member's data
		}
	})
	f.in.Select = Selection{Set: set}
	_, problems := PlanRestore(f.in)
	require.Len(t, problems, 1)
	require.Equal(t, "snapshotSet", problems[0].Field)
	require.Contains(t, problems[0].Fix, "taken in us-east-1b")
	require.Contains(t, problems[0].Fix, "is in us-east-1a")

	f.in.Select = Selection{Set: "2020-01-01T00:00:00Z-deadbeef"}
	_, problems = PlanRestore(f.in)
	require.Equal(t, []string{"snapshotSet=2020-01-01T00:00:00Z-deadbeef"}, fields(problems))

	var ids []string
	for _, s := range f.in.Snapshots[:5] {
		ids = append(ids, s.ID)
	}
	f.in.Select = Selection{SnapshotIDs: append(ids[1:], "snap-0000000000000dead")}
	f.in.Members = []string{"a", "b", "c"}
	_, problems = PlanRestore(f.in)
	got := fields(problems)
	require.Contains(t, got, "snapshotIds=snap-0000000000000dead", "a snapshot that does not exist")
	require.Len(t, got, 3, "and no snapshot for main/a nor events/c: %v", got)
}

func TestPlanRestoreForeignSnapshotByVolume(t *testing.T) {
	f := newFixture()
	var ids []string
	for _, v := range f.in.Volumes {
		// A snapshot the old Lambda took: no kopsdr tags at all.
		sn := Snapshot{ID: "snap-l" + v.ID[4:], VolumeID: v.ID, State: SnapshotCompleted, VolumeSize: 20, Tags: map[string]string{}}
		f.in.Snapshots = append(f.in.Snapshots, sn)
		ids = append(ids, sn.ID)
	}
	f.in.Select = Selection{SnapshotIDs: ids}
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Len(t, plan.Members, 6)
	for _, m := range plan.Members {
		require.Equal(t, "snap-l"+m.OldVolume.ID[4:], m.Snapshot.ID)
	}
}

func TestPlanRestoreLostVolume(t *testing.T) {
	f := newFixture()
	f.addSet(time.Now(), nil)
	// main/b's volume is gone: its peers' tags still list b.
	var kept []EtcdVolume
	for _, v := range f.in.Volumes {
		if v.Key() != "main/b" {
			kept = append(kept, v)
		}
	}
	f.in.Volumes = kept
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Len(t, plan.Members, 6)
	m := plan.Members[4]
	require.Equal(t, "main/b", m.Key())
	require.Nil(t, m.OldVolume)
	require.Equal(t, "us-east-1b", m.AvailabilityZone, "from the snapshot's record")
	require.Equal(t, "i-b", m.InstanceID, "the master in that zone")
	require.Equal(t, "b/a,b,c", m.New.Tags["k8s.io/etcd/main"])
	require.Equal(t, "owned", m.New.Tags["kubernetes.io/cluster/c.example.com"], "kops tags come from the snapshot's record")
	require.Equal(t, VolumeSpec{Type: "gp3", Size: 20, Iops: 3000, Throughput: 125}, m.New.Spec)
}

const (
	keyA = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000"
	keyB = "arn:aws:kms:us-east-1:123456789012:key/bbbbbbbb-0000-0000-0000-000000000000"
)

func TestPlanRestoreEncryption(t *testing.T) {
	cases := []struct {
		name       string
		spec       MemberEncryption
		volEnc     bool
		volKey     string
		snapEnc    bool
		snapKey    string
		wantEnc    bool
		wantAsk    string
		wantExpect string
		problem    string // field of the expected problem
	}{
		{name: "spec key kept", spec: MemberEncryption{InSpec: true, Encrypted: true, KMSKeyID: keyA},
			volEnc: true, volKey: keyA, snapEnc: true, snapKey: keyA, wantEnc: true, wantAsk: keyA, wantExpect: keyA},
		{name: "spec key re-encrypts a snapshot under another key", spec: MemberEncryption{InSpec: true, Encrypted: true, KMSKeyID: keyA},
			volEnc: true, volKey: keyA, snapEnc: true, snapKey: keyB, wantEnc: true, wantAsk: keyA, wantExpect: keyA},
		{name: "default key, unencrypted snapshot", spec: MemberEncryption{InSpec: true, Encrypted: true},
			volEnc: true, volKey: keyA, wantEnc: true},
		{name: "no key asked, snapshot key is the volume's", spec: MemberEncryption{InSpec: true, Encrypted: true},
			volEnc: true, volKey: keyB, snapEnc: true, snapKey: keyB, wantEnc: true, wantExpect: keyB},
		{name: "no key asked, snapshot key differs from the volume's", spec: MemberEncryption{InSpec: true, Encrypted: true},
			volEnc: true, volKey: keyA, snapEnc: true, snapKey: keyB, problem: "etcdClusters[main].etcdMembers[a].kmsKeyId"},
		{name: "unencrypted outcome refused", spec: MemberEncryption{InSpec: true},
			volEnc: true, volKey: keyA, problem: "etcdClusters[main].etcdMembers[a].encryptedVolume"},
		{name: "encrypted snapshot stays encrypted", spec: MemberEncryption{InSpec: true},
			snapEnc: true, snapKey: keyB, wantEnc: true, wantExpect: keyB},
		{name: "all unencrypted", spec: MemberEncryption{InSpec: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture()
			f.in.Members, f.in.EtcdClusters = []string{"a"}, []string{"main"}
			f.in.AllowMixedTimes = true // one member is enough to check encryption
			f.in.Volumes[0].Encrypted, f.in.Volumes[0].KMSKeyID = tc.volEnc, tc.volKey
			f.in.Encryption["main/a"] = tc.spec
			f.addSet(time.Now(), func(s *Snapshot) { s.Encrypted, s.KMSKeyID = tc.snapEnc, tc.snapKey })
			plan, problems := PlanRestore(f.in)
			if tc.problem != "" {
				require.Len(t, problems, 1)
				require.Equal(t, tc.problem, problems[0].Field)
				return
			}
			require.Empty(t, problems)
			n := plan.Members[0].New
			require.Equal(t, tc.wantEnc, n.Encrypted)
			require.Equal(t, tc.wantAsk, n.KMSKeyID)
			require.Equal(t, tc.wantExpect, n.ExpectKMSKeyID)
			require.NotEmpty(t, plan.Members[0].Encryption)
		})
	}
}

func TestCheckEncryption(t *testing.T) {
	require.NoError(t, CheckEncryption(NewVolume{Encrypted: true, ExpectKMSKeyID: keyA}, Volume{Encrypted: true, KMSKeyID: keyA}))
	require.Error(t, CheckEncryption(NewVolume{Encrypted: true}, Volume{ID: "vol-1"}))
	require.Error(t, CheckEncryption(NewVolume{Encrypted: true, ExpectKMSKeyID: keyA}, Volume{Encrypted: true, KMSKeyID: keyB}))
	require.NoError(t, CheckEncryption(NewVolume{Encrypted: true, ExpectKMSKeyID: "alias/etcd"}, Volume{Encrypted: true, KMSKeyID: keyB}),
		"an alias cannot be resolved without KMS")
	require.NoError(t, CheckEncryption(NewVolume{}, Volume{}))
}

func TestPlanRestoreRestartNeedsAMaster(t *testing.T) {
	f := newFixture()
	f.addSet(time.Now(), nil)
	for i := range f.in.Volumes {
		f.in.Volumes[i].InstanceID = "" // masters down, volumes detached
	}
	f.in.Instances = f.in.Instances[:2] // and no master in us-east-1c
	_, problems := PlanRestore(f.in)
	require.Len(t, problems, 2, "main/c and events/c: %v", fields(problems))
	require.Equal(t, "restart", problems[0].Field)

	f.in.Restart = RestartNone
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Empty(t, plan.Instances)
}

func sdkSnapshot(id, volumeID string, tags map[string]string) types.Snapshot {
	return types.Snapshot{SnapshotId: aws.String(id), VolumeId: aws.String(volumeID), Tags: Tags(tags)}
}

// TestPlanRestoreRefusesRepeat: restoring the set the current volumes were
// already created from (a finished restore run again from shell history) is
// refused unless again is set.
func TestPlanRestoreRefusesRepeat(t *testing.T) {
	f := newFixture()
	set := f.addSet(time.Now().Add(-time.Hour), nil)
	// The last restore created the current volumes from this set: EC2
	// records the snapshot, kopsdr its tag.
	for i := range f.in.Volumes {
		v := &f.in.Volumes[i]
		for _, sn := range f.in.Snapshots {
			if sn.Key() == v.Key() {
				if i%2 == 0 {
					v.SnapshotID = sn.ID
				} else {
					v.Tags = maps.Clone(v.Tags)
					v.Tags[TagRestoredFrom] = sn.ID
				}
			}
		}
	}
	for _, sel := range []Selection{{}, {Set: set}} {
		f.in.Select, f.in.Again = sel, false
		_, problems := PlanRestore(f.in)
		require.Equal(t, []string{"again=false"}, fields(problems), "%+v", sel)
		require.Contains(t, problems[0].Fix, "already came from snapshot set "+set)
		require.Contains(t, problems[0].Fix, "--again")

		f.in.Again = true
		plan, problems := PlanRestore(f.in)
		require.Empty(t, problems)
		require.Len(t, plan.Members, 6)
		require.Len(t, plan.Warnings, 1)
		require.Contains(t, plan.Warnings[0], "restoring them again")
	}

	// A newer set is not a repeat.
	f.in.Again = false
	newer := f.addSet(time.Now(), nil)
	f.in.Select = Selection{}
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Equal(t, newer, plan.SnapshotSet)
}

// TestPlanRestoreRefusesMixedTimes: members of one etcd cluster named by
// snapshot ids from different sets are refused unless allowMixedTimes.
func TestPlanRestoreRefusesMixedTimes(t *testing.T) {
	f := newFixture()
	old := f.addSet(time.Now().Add(-24*time.Hour), nil)
	newer := f.addSet(time.Now(), nil)
	var ids []string
	for _, sn := range f.in.Snapshots {
		// main/a from yesterday, main/b and main/c from today.
		if sn.EtcdCluster == "main" && ((sn.Member == "a") == (sn.Set == old)) {
			ids = append(ids, sn.ID)
		}
	}
	require.Len(t, ids, 3)
	f.in.EtcdClusters, f.in.Select = []string{"main"}, Selection{SnapshotIDs: ids}
	_, problems := PlanRestore(f.in)
	require.Equal(t, []string{"allowMixedTimes=false"}, fields(problems))
	require.Contains(t, problems[0].Fix, "different sets")
	require.Contains(t, problems[0].Fix, old)
	require.Contains(t, problems[0].Fix, newer)

	f.in.AllowMixedTimes = true
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Len(t, plan.Members, 3)
	require.Contains(t, strings.Join(plan.Warnings, "\n"), "allowMixedTimes: true")

	// Foreign snapshots (no set) taken an hour apart are mixed too; a
	// minute apart they are one point in time.
	f = newFixture()
	ids = nil
	for i, v := range f.in.Volumes[:3] {
		sn := Snapshot{ID: "snap-l" + v.ID[4:], VolumeID: v.ID, State: SnapshotCompleted, VolumeSize: 20, Tags: map[string]string{},
			StartTime: time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC)}
		f.in.Snapshots = append(f.in.Snapshots, sn)
		ids = append(ids, sn.ID)
	}
	f.in.EtcdClusters, f.in.Select = []string{"main"}, Selection{SnapshotIDs: ids}
	_, problems = PlanRestore(f.in)
	require.Empty(t, problems)
	f.in.Snapshots[2].StartTime = f.in.Snapshots[2].StartTime.Add(time.Hour)
	_, problems = PlanRestore(f.in)
	require.Equal(t, []string{"allowMixedTimes=false"}, fields(problems))
	require.Contains(t, problems[0].Fix, "apart")
}

// TestPlanRestoreWarnsIncompleteNewestSet: the newest set lacks a member, so
// the plan restores the previous one and says which and why.
func TestPlanRestoreWarnsIncompleteNewestSet(t *testing.T) {
	f := newFixture()
	older := f.addSet(time.Now().Add(-time.Hour), nil)
	newest := f.addSet(time.Now(), func(s *Snapshot) {
		if s.Key() == "events/b" {
			s.State = SnapshotError
		}
	})
	plan, problems := PlanRestore(f.in)
	require.Empty(t, problems)
	require.Equal(t, older, plan.SnapshotSet)
	require.Len(t, plan.Warnings, 1)
	require.Contains(t, plan.Warnings[0], "newest snapshot set "+newest+" ")
	require.Contains(t, plan.Warnings[0], "events/b")
	require.Contains(t, plan.Warnings[0], "restoring the newest complete set "+older)
}
