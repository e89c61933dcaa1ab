package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/test/fakeec2"
)

// These tests call the activities as plain functions against the fake EC2
// through the real SDK client, configured the way a worker is: from the
// environment (AWS_ENDPOINT_URL_EC2 and static keys).

const testCluster = "c.example.com"

func startEC2(t *testing.T) *fakeec2.Server {
	s := fakeec2.Start(t, fakeec2.WithTransitionDelay(50*time.Millisecond))
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_EC2": s.URL(), "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_REGION": s.Region(), "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": none,
		"AWS_SHARED_CREDENTIALS_FILE": none, "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	return s
}

// seedCluster adds three masters (us-east-1a/b/c), each with its main and
// events volume attached and tagged as kops does. It returns the volume ids
// by member key ("main/a").
func seedCluster(s *fakeec2.Server, encrypted bool, key string) map[string]string {
	vols := map[string]string{}
	for _, m := range []string{"a", "b", "c"} {
		az := "us-east-1" + m
		inst := s.AddInstance(fakeec2.Instance{AvailabilityZone: az, Tags: map[string]string{
			"KubernetesCluster": testCluster, "k8s.io/role/master": "1", "kubernetes.io/cluster/" + testCluster: "owned",
		}})
		for i, ec := range []string{"main", "events"} {
			vols[ec+"/"+m] = s.AddVolume(fakeec2.Volume{AvailabilityZone: az, Size: 20, Type: "gp3", Encrypted: encrypted, KmsKeyID: key,
				Tags: map[string]string{
					"KubernetesCluster": testCluster, "Name": m + ".etcd-" + ec + "." + testCluster,
					"k8s.io/etcd/" + ec: m + "/a,b,c", "k8s.io/role/master": "1", "kubernetes.io/cluster/" + testCluster: "owned",
				},
				Attachment: &fakeec2.Attachment{InstanceID: inst, Device: []string{"/dev/xvdu", "/dev/xvdv"}[i]}})
		}
	}
	return vols
}

func appErrType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

func TestFindEtcdVolumes(t *testing.T) {
	s := startEC2(t)
	vols := seedCluster(s, false, "")
	s.AddVolume(fakeec2.Volume{Tags: map[string]string{"KubernetesCluster": "other.example.com", "k8s.io/etcd/main": "a/a"}})
	// Not the cluster's by kops's rule (shared, or tags that disagree): had
	// they counted, each would be a second volume claiming main/a.
	s.AddVolume(fakeec2.Volume{Tags: map[string]string{"kubernetes.io/cluster/" + testCluster: "shared", "k8s.io/etcd/main": "a/a,b,c"}})
	s.AddVolume(fakeec2.Volume{Tags: map[string]string{"KubernetesCluster": "other.example.com", "kubernetes.io/cluster/" + testCluster: "owned", "k8s.io/etcd/main": "a/a,b,c"}})
	a := &Volumes{}
	ctx := context.Background()

	got, err := a.EBSFindEtcdVolumes(ctx, FindVolumesInput{Region: "us-east-1", Cluster: testCluster, EtcdClusters: []string{"main", "events"}})
	require.NoError(t, err)
	require.Len(t, got, 6)
	for _, v := range got {
		require.Equal(t, vols[v.Key()], v.ID)
		require.Equal(t, "us-east-1"+v.Etcd.Member, v.AvailabilityZone)
		require.NotEmpty(t, v.InstanceID)
	}

	_, err = a.EBSFindEtcdVolumes(ctx, FindVolumesInput{Region: "us-east-1", Cluster: "typo.example.com", EtcdClusters: []string{"main"}})
	require.Equal(t, ErrTypeInvalidInput, appErrType(err), "%v", err)
	require.ErrorContains(t, err, "typo.example.com")
}

// TestSnapshotVolumeLostAnswer: CreateSnapshot has no idempotency token. It
// takes effect but its answer is lost; the retried activity finds the
// snapshot by its tags instead of taking a second one.
func TestSnapshotVolumeLostAnswer(t *testing.T) {
	s := startEC2(t)
	seedCluster(s, true, "")
	a := &Volumes{}
	ctx := context.Background()
	vols, err := a.EBSFindEtcdVolumes(ctx, FindVolumesInput{Region: "us-east-1", Cluster: testCluster, EtcdClusters: []string{"main"}})
	require.NoError(t, err)
	in := SnapshotVolumeInput{Region: "us-east-1", Volume: vols[0], Set: "2026-01-01T00:00:00Z-0000abcd", SetSize: 3, WorkflowID: "volume-snapshots/" + testCluster}

	s.InjectFault(fakeec2.Fault{Action: "CreateSnapshot", Code: "InternalError", AfterEffect: true})
	_, err = a.EBSSnapshotVolume(ctx, in)
	require.Error(t, err, "the answer was lost")
	require.Len(t, s.Snapshots(), 1, "but the snapshot exists, and the SDK did not retry it blindly")

	sn, err := a.EBSSnapshotVolume(ctx, in)
	require.NoError(t, err)
	require.Len(t, s.Snapshots(), 1, "the retry found it")
	require.Equal(t, s.Snapshots()[0].ID, sn.ID)
	require.Len(t, s.CallsTo("CreateSnapshot"), 1)
	require.Equal(t, "main", sn.EtcdCluster)
	require.Equal(t, "a", sn.Member)
	require.Equal(t, "us-east-1a", sn.AvailabilityZone)
	require.True(t, sn.Encrypted)
	require.Equal(t, "a/a,b,c", sn.VolumeTags()["k8s.io/etcd/main"])

	done, err := a.EBSWaitSnapshots(ctx, WaitSnapshotsInput{Region: "us-east-1", SnapshotIDs: []string{sn.ID}})
	require.NoError(t, err)
	require.Equal(t, ebs.SnapshotCompleted, done[0].State)

	s.SetSnapshotState(sn.ID, "error")
	_, err = a.EBSWaitSnapshots(ctx, WaitSnapshotsInput{Region: "us-east-1", SnapshotIDs: []string{sn.ID}})
	require.Equal(t, ErrTypeSnapshotFailed, appErrType(err))
}

func TestPruneSnapshots(t *testing.T) {
	s := startEC2(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		set := ebs.SetID(now.Add(-time.Duration(i)*24*time.Hour), "run")
		for _, m := range []string{"a", "b"} {
			s.AddSnapshot(fakeec2.Snapshot{Tags: map[string]string{ebs.TagCluster: testCluster, ebs.TagSet: set,
				ebs.TagSetSize: "2", ebs.TagEtcdCluster: "main", ebs.TagMember: m}})
		}
	}
	lambda := s.AddSnapshot(fakeec2.Snapshot{Tags: map[string]string{"KubernetesCluster": testCluster}})
	a := &Volumes{}
	in := PruneSnapshotsInput{Region: "us-east-1", Cluster: testCluster, Now: now,
		Policy: ebs.RetentionPolicy{KeepLast: 2, DailyFor: 60 * time.Hour}, DryRun: true}

	plan, err := a.EBSPruneSnapshots(context.Background(), in)
	require.NoError(t, err)
	require.Len(t, plan.Keep, 3, "the last 2, and the first of a day younger than 60h")
	require.Len(t, plan.Delete, 2)
	require.Len(t, s.Snapshots(), 11, "a dry run deletes nothing")

	in.DryRun = false
	plan, err = a.EBSPruneSnapshots(context.Background(), in)
	require.NoError(t, err)
	require.Len(t, s.Snapshots(), 7)
	_, ok := s.Snapshot(lambda)
	require.True(t, ok, "snapshots kopsdr did not take are never pruned")

	again, err := a.EBSPruneSnapshots(context.Background(), in)
	require.NoError(t, err)
	require.Empty(t, again.Delete)
}

// writeSpec writes a kops cluster spec into a file:// state store.
func writeSpec(t *testing.T, etcdMembers string) string {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, testCluster), 0o755))
	spec := "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: " + testCluster + "\nspec:\n  etcdClusters:\n" +
		"  - name: main\n    etcdMembers:\n" + etcdMembers + "  - name: events\n    etcdMembers:\n" + etcdMembers
	require.NoError(t, os.WriteFile(filepath.Join(dir, testCluster, "config"), []byte(spec), 0o644))
	return "file://" + dir
}

// takeSet snapshots every volume of the cluster as one set and waits.
func takeSet(t *testing.T, a *Volumes, set string) {
	ctx := context.Background()
	vols, err := a.EBSFindEtcdVolumes(ctx, FindVolumesInput{Region: "us-east-1", Cluster: testCluster, EtcdClusters: []string{"main", "events"}})
	require.NoError(t, err)
	var ids []string
	for _, v := range vols {
		sn, err := a.EBSSnapshotVolume(ctx, SnapshotVolumeInput{Region: "us-east-1", Volume: v, Set: set, SetSize: len(vols), WorkflowID: "w"})
		require.NoError(t, err)
		ids = append(ids, sn.ID)
	}
	_, err = a.EBSWaitSnapshots(ctx, WaitSnapshotsInput{Region: "us-east-1", SnapshotIDs: ids})
	require.NoError(t, err)
}

// TestRestoreMemberSteps drives one member through every restore activity,
// repeating each (a retry after a lost answer) and checking it changes
// nothing the second time.
func TestRestoreMemberSteps(t *testing.T) {
	s := startEC2(t)
	const key = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-1111-2222-3333-444444444444"
	vols := seedCluster(s, true, key)
	a := &Volumes{}
	ctx := context.Background()
	takeSet(t, a, "2026-01-01T00:00:00Z-00000001")
	store := writeSpec(t, "    - name: a\n      encryptedVolume: true\n      kmsKeyId: "+key+"\n"+
		"    - name: b\n      encryptedVolume: true\n      kmsKeyId: "+key+"\n    - name: c\n      encryptedVolume: true\n      kmsKeyId: "+key+"\n")

	plan, err := a.EBSPlanRestore(ctx, PlanRestoreInput{Region: "us-east-1", Cluster: testCluster, StateStore: store,
		EtcdClusters: []string{"main"}, Members: []string{"b"}, Restart: ebs.RestartReboot, OldVolumes: ebs.OldVolumesUntag,
		WorkflowID: "restore/" + testCluster, RunID: "r1", AllowMixedTimes: true})
	require.NoError(t, err)
	require.Len(t, plan.Members, 1)
	m := plan.Members[0]
	require.Equal(t, vols["main/b"], m.OldVolume.ID)
	require.Equal(t, key, m.New.KMSKeyID)

	// Create: the answer is lost; the SDK retries with the same token and
	// EC2 replays the first volume.
	s.InjectFault(fakeec2.Fault{Action: "CreateVolume", Code: "InternalError", AfterEffect: true})
	newID, err := a.EBSCreateVolume(ctx, CreateVolumeInput{Region: "us-east-1", Member: m})
	require.NoError(t, err)
	again, err := a.EBSCreateVolume(ctx, CreateVolumeInput{Region: "us-east-1", Member: m})
	require.NoError(t, err)
	require.Equal(t, newID, again)
	calls := s.CallsTo("CreateVolume")
	require.Len(t, calls, 2, "the activity's second run found the volume by its token tag")
	require.True(t, calls[1].Replayed)
	require.Len(t, s.Volumes(), 7)

	v, err := a.EBSWaitVolume(ctx, WaitVolumeInput{Region: "us-east-1", VolumeID: newID, New: m.New})
	require.NoError(t, err)
	require.Equal(t, "available", v.State)
	require.Equal(t, "us-east-1b", v.AvailabilityZone)
	require.Equal(t, key, v.KMSKeyID)
	require.Equal(t, ebs.VolumeSpec{Type: "gp3", Size: 20, Iops: 3000, Throughput: 125}, v.Spec)

	// Swap, killed between recording the old tags and removing them.
	s.InjectFault(fakeec2.Fault{Action: "DeleteTags", Code: "UnauthorizedOperation"})
	_, err = a.EBSSwapTags(ctx, SwapTagsInput{Region: "us-east-1", Member: m, NewVolumeID: newID})
	require.Equal(t, ErrTypeAccessDenied, appErrType(err))
	old, _ := s.Volume(vols["main/b"])
	require.Equal(t, testCluster, old.Tags["KubernetesCluster"], "still tagged")
	require.Equal(t, newID, old.Tags[ebs.TagReplacedBy])
	for i := range 2 {
		swap, err := a.EBSSwapTags(ctx, SwapTagsInput{Region: "us-east-1", Member: m, NewVolumeID: newID})
		require.NoError(t, err, "run %d", i)
		require.Equal(t, ebs.KopsTags(m.OldVolume.Tags), swap.OldTags, "run %d reports what the old volume had", i)
	}
	old, _ = s.Volume(vols["main/b"])
	require.Empty(t, ebs.KopsTags(old.Tags), "the old volume has no kops tag")
	require.Equal(t, ebs.KopsTags(m.OldVolume.Tags), ebs.Uncopied(old.Tags))
	nv, _ := s.Volume(newID)
	require.Equal(t, m.New.Tags, ebs.KopsTags(nv.Tags))

	// Roll back, twice: the old volume is as it was, the new one untagged.
	for range 2 {
		require.NoError(t, a.EBSRollBackTags(ctx, RollBackTagsInput{Region: "us-east-1", Member: m, NewVolumeID: newID}))
	}
	old, _ = s.Volume(vols["main/b"])
	require.Equal(t, m.OldVolume.Tags, old.Tags)
	nv, _ = s.Volume(newID)
	require.Empty(t, ebs.KopsTags(nv.Tags))
	require.Equal(t, "true", nv.Tags[ebs.TagRolledBack])
}

func TestPlanRestoreRefusals(t *testing.T) {
	s := startEC2(t)
	seedCluster(s, true, "")
	a := &Volumes{}
	ctx := context.Background()
	in := PlanRestoreInput{Region: "us-east-1", Cluster: testCluster, EtcdClusters: []string{"main", "events"},
		Restart: ebs.RestartReboot, OldVolumes: ebs.OldVolumesUntag, WorkflowID: "restore/" + testCluster, RunID: "r1"}

	in.StateStore = "file://" + t.TempDir()
	_, err := a.EBSPlanRestore(ctx, in)
	require.Equal(t, ErrTypeInvalidInput, appErrType(err), "%v", err)
	require.ErrorContains(t, err, "stateStore")

	in.StateStore = writeSpec(t, "    - name: a\n    - name: b\n    - name: c\n")
	_, err = a.EBSPlanRestore(ctx, in)
	require.Equal(t, ErrTypePreflightRefused, appErrType(err))
	require.ErrorContains(t, err, "no kopsdr snapshot set")

	// An unencrypted snapshot of an encrypted member, named by id, while the
	// spec does not say encryptedVolume: the outcome would be unencrypted.
	vols, err := a.EBSFindEtcdVolumes(ctx, FindVolumesInput{Region: "us-east-1", Cluster: testCluster, EtcdClusters: []string{"main"}})
	require.NoError(t, err)
	plain := s.AddSnapshot(fakeec2.Snapshot{VolumeID: vols[0].ID, Tags: map[string]string{}})
	in.Select = ebs.Selection{SnapshotIDs: []string{plain}}
	_, err = a.EBSPlanRestore(ctx, in)
	require.Equal(t, ErrTypePreflightRefused, appErrType(err))
	require.ErrorContains(t, err, "would be unencrypted")
	require.Len(t, s.CallsTo("CreateVolume"), 0)
}
