package e2e

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/fakeec2"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// TestVolumeSnapshotThreeMasters: a 3-master cluster has 6 etcd volumes
// (main and events per zone); one run snapshots all 6, tags each so kopsdr
// finds it again, and survives throttling and a lost CreateSnapshot answer
// without a duplicate. A second run's retention deletes the first set.
func TestVolumeSnapshotThreeMasters(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	ctx := testenv.Context(t, 3*time.Minute)
	vs.ec2.InjectFault(fakeec2.Fault{Action: "CreateSnapshot", Code: "RequestLimitExceeded", Times: 3})
	vs.ec2.InjectFault(fakeec2.Fault{Action: "CreateSnapshot", Code: "InternalError", AfterEffect: true})

	first := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	stack.RecordHistory(t, ctx, vs.tp.Client, workflows.VolumeSnapshotWorkflowID(volCluster), "", "volume-snapshot")
	require.Len(t, first.Snapshots, 6)
	require.Len(t, vs.ec2.Snapshots(), 6, "throttling and a lost answer made no extra snapshot")
	seen := map[string]bool{}
	for _, ref := range first.Snapshots {
		key := ref.EtcdCluster + "/" + ref.Member
		require.False(t, seen[key])
		seen[key] = true
		require.Equal(t, vs.volumes[key], ref.VolumeID)
		require.Equal(t, ref.Member, ref.AvailabilityZone)
		require.Equal(t, ebs.SnapshotCompleted, ref.State)

		sn, ok := vs.ec2.Snapshot(ref.ID)
		require.True(t, ok)
		require.Equal(t, ref.VolumeID, sn.VolumeID)
		require.Equal(t, volCluster, sn.Tags[ebs.TagCluster])
		require.Equal(t, first.Set, sn.Tags[ebs.TagSet])
		require.Equal(t, "6", sn.Tags[ebs.TagSetSize])
		require.Equal(t, ref.EtcdCluster, sn.Tags[ebs.TagEtcdCluster])
		require.Equal(t, ref.Member, sn.Tags[ebs.TagMember])
		require.Equal(t, ref.AvailabilityZone, sn.Tags[ebs.TagZone])
		require.Equal(t, workflows.VolumeSnapshotWorkflowID(volCluster), sn.Tags[ebs.TagWorkflowID])
		require.Equal(t, "gp3/20/3000/125", sn.Tags[ebs.TagVolumeSpec])
		require.Equal(t, wantKopsTags(ref.EtcdCluster, ref.Member, strings.Join(volZones, ",")), ebs.Uncopied(sn.Tags),
			"the volume's tags are recorded on its snapshot")
	}
	require.Len(t, seen, 6)
	injected := 0
	for _, c := range vs.ec2.CallsTo("CreateSnapshot") {
		if c.Injected {
			injected++
		}
	}
	require.Equal(t, 4, injected)

	// Second run: with keepLast 1 and no buckets, the first set goes; a dry
	// run first only says so.
	keepOne := &workflows.VolumeRetention{KeepLast: 1, HourlyFor: "0s", DailyFor: "0s"}
	second := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{Retention: keepOne, PruneDryRun: true})
	require.NotEqual(t, first.Set, second.Set)
	require.Len(t, vs.ec2.Snapshots(), 12)
	require.Len(t, second.Retention.Delete, 1)
	require.Equal(t, first.Set, second.Retention.Delete[0].Set)

	third := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{Retention: keepOne})
	require.Len(t, vs.ec2.Snapshots(), 6, "only the newest set is left")
	for _, sn := range vs.ec2.Snapshots() {
		require.Equal(t, third.Set, sn.Tags[ebs.TagSet], "never the newest completed set")
	}
}

// TestVolumeRestoreTagsAndZones is the whole restore: plan, approval by an
// update, six new volumes in the right zones with exactly protokube's tags,
// the old ones untagged, the masters rebooted once each, etcd checked.
func TestVolumeRestoreTagsAndZones(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 3*time.Minute)
	set := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	etcd := etcdtest.Start(t, 3) // stands in for the restored etcd main
	ec := etcd.ConnConfig()

	in := restoreInput(vs)
	in.Verify = &workflows.VolumeVerify{MainEndpoints: etcd.Endpoints, CACert: ec.CACert, Cert: ec.Cert, Key: ec.Key}
	before := len(mutatingCalls(vs.ec2))
	run := vs.startRestore(t, ctx, in)
	rep := vs.waitStep(t, ctx, run, "awaiting approval")
	stack.RecordHistory(t, ctx, vs.tp.Client, run.GetID(), run.GetRunID(), "volume-restore-awaiting-approval")
	require.Equal(t, set.Set, rep.Plan.SnapshotSet)
	require.Len(t, rep.Plan.Members, 6)
	require.False(t, rep.ApprovalDeadline.IsZero())
	require.Len(t, mutatingCalls(vs.ec2), before, "pre-flight and the wait for approval change nothing")

	upd, err := vs.tp.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: run.GetID(), RunID: run.GetRunID(), UpdateName: workflows.UpdateApprove,
		Args: []any{workflows.Approval{By: "alice", Comment: "INC-42"}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(t, err)
	var afterApprove workflows.Decision
	require.NoError(t, upd.Get(ctx, &afterApprove))
	require.Equal(t, "alice", afterApprove.By)
	require.Equal(t, "approved", afterApprove.Decision)
	require.Equal(t, "update", afterApprove.Via)

	var res workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	stack.RecordHistory(t, ctx, vs.tp.Client, run.GetID(), run.GetRunID(), "volume-restore-completed")
	require.Equal(t, "done", res.Step)
	require.Equal(t, map[string]int{"main": 3}, res.EtcdMembers)

	// A second approval has nothing to decide.
	_, err = vs.tp.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: run.GetID(), UpdateName: workflows.UpdateApprove,
		Args: []any{workflows.Approval{By: "bob"}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.Error(t, err)

	all := strings.Join(volZones, ",")
	created := vs.newVolumes(t)
	require.Len(t, created, 6)
	for _, m := range res.Members {
		key := m.EtcdCluster + "/" + m.Member
		nv := created[key]
		require.Equal(t, "restored", m.State, key)
		require.Equal(t, nv.ID, m.NewVolume)
		require.Equal(t, m.Member, nv.AvailabilityZone, "%s: same zone as its master", key)
		require.Equal(t, m.Snapshot, nv.SnapshotID)
		require.Equal(t, "gp3", nv.Type)
		require.EqualValues(t, 20, nv.Size)
		require.EqualValues(t, 3000, nv.Iops)
		require.EqualValues(t, 125, nv.Throughput)
		require.Equal(t, wantKopsTags(m.EtcdCluster, m.Member, all), kopsOnly(nv.Tags), "%s: exactly protokube's tags", key)
		require.Equal(t, vs.volumes[key], nv.Tags[ebs.TagReplaces])

		old, ok := vs.ec2.Volume(vs.volumes[key])
		require.True(t, ok)
		require.Empty(t, kopsOnly(old.Tags), "%s: the old volume has no kops tag left", key)
		require.Equal(t, nv.ID, old.Tags[ebs.TagReplacedBy])
		require.Equal(t, wantKopsTags(m.EtcdCluster, m.Member, all), ebs.Uncopied(old.Tags), "what it lost is recorded on it")
		require.Equal(t, wantKopsTags(m.EtcdCluster, m.Member, all), m.OldTags)
		require.Equal(t, "untagged", m.OldVolumeOutcome)
	}
	require.Len(t, vs.ec2.CallsTo("RebootInstances"), 1, "one reboot call for all masters")
	for _, id := range vs.masters {
		in, _ := vs.ec2.Instance(id)
		require.Equal(t, 1, in.Reboots)
	}
	require.Equal(t, "done", vs.status(t, ctx, run).Step, "status is answered after the end too")

	// The same restore again, as from shell history: the current volumes
	// came from this set, so pre-flight refuses it and changes nothing.
	before = len(mutatingCalls(vs.ec2))
	ae := appError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, restoreInput(vs)), nil))
	require.Equal(t, activities.ErrTypePreflightRefused, ae.Type())
	require.True(t, ae.NonRetryable())
	require.ErrorContains(t, ae, "again")
	require.ErrorContains(t, ae, set.Set)
	require.Len(t, mutatingCalls(vs.ec2), before)
	repeat := restoreInput(vs)
	repeat.Again, repeat.DryRun = true, true
	var dry workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, repeat), &dry), "with again it plans")
	require.Equal(t, set.Set, dry.Plan.SnapshotSet)
	require.Contains(t, strings.Join(dry.Plan.Warnings, "\n"), "restoring them again")
}

// TestVolumeRestoreKeepsKMSKey: members encrypted with their own KMS key in
// the cluster spec get volumes encrypted with that key, even from a
// snapshot under another key; stop-start detaches the old volumes while
// the masters are down, and oldVolumes delete then deletes them.
func TestVolumeRestoreKeepsKMSKey(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(true, kmsKeyA)
	vs.writeSpec(t, func(string) string { return "      encryptedVolume: true\n      kmsKeyId: " + kmsKeyA + "\n" })
	ctx := testenv.Context(t, 3*time.Minute)
	set := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	for _, ref := range set.Snapshots {
		require.True(t, ref.Encrypted)
		require.Equal(t, kmsKeyA, ref.KMSKeyID)
	}

	in := restoreInput(vs)
	in.Approve, in.Restart, in.OldVolumes = true, ebs.RestartStopStart, ebs.OldVolumesDelete
	var res workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, in), &res))
	require.Equal(t, "input", res.Approval.Via)

	created := vs.newVolumes(t)
	require.Len(t, created, 6)
	for key, nv := range created {
		require.True(t, nv.Encrypted, key)
		require.Equal(t, kmsKeyA, nv.KmsKeyID, "%s keeps the member's key", key)
	}
	for _, c := range vs.ec2.CallsTo("CreateVolume") {
		require.Equal(t, "true", c.Params.Get("Encrypted"))
		require.Equal(t, kmsKeyA, c.Params.Get("KmsKeyId"))
	}
	for _, m := range res.Members {
		require.Equal(t, "deleted", m.OldVolumeOutcome, "%s/%s", m.EtcdCluster, m.Member)
		_, ok := vs.ec2.Volume(m.OldVolume)
		require.False(t, ok)
	}
	require.Len(t, vs.ec2.CallsTo("StopInstances"), 1)
	require.Len(t, vs.ec2.CallsTo("DetachVolume"), 6)
	require.Len(t, vs.ec2.CallsTo("StartInstances"), 1)
	for _, id := range vs.masters {
		in, _ := vs.ec2.Instance(id)
		require.Equal(t, "running", in.State)
	}
	require.Len(t, vs.ec2.Volumes(), 6, "only the new volumes are left")
}

// TestVolumeRestoreRefusals: pre-flight refuses, before anything is
// created, a restore that would end unencrypted, a snapshot taken in
// another zone, one member restored while its peers keep today's data, and
// a snapshot that does not exist.
func TestVolumeRestoreRefusals(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(true, kmsKeyA)
	vs.writeSpec(t, noEncryption) // the spec forgot encryptedVolume
	ctx := testenv.Context(t, 3*time.Minute)
	set := vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})

	// Unencrypted snapshots of the encrypted volumes, as an old Lambda took
	// them before the cluster was rebuilt with encryption.
	var plain []string
	for _, az := range volZones {
		plain = append(plain, vs.ec2.AddSnapshot(fakeec2.Snapshot{VolumeID: vs.volumes["main/"+az]}))
	}
	// main/us-east-1a's snapshot of the set claims another zone.
	var wrongZone string
	var goodMain []string
	for _, ref := range set.Snapshots {
		switch {
		case ref.EtcdCluster == "main" && ref.Member == "us-east-1a":
			wrongZone = ref.ID
		case ref.EtcdCluster == "main":
			goodMain = append(goodMain, ref.ID)
		}
	}
	_, err := vs.ec2.Client(t).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{wrongZone},
		Tags: ebs.Tags(map[string]string{ebs.TagZone: "us-east-1b"})})
	require.NoError(t, err)
	before := len(mutatingCalls(vs.ec2))

	cases := []struct {
		name   string
		mutate func(*workflows.VolumeRestoreInput)
		want   []string
	}{
		{"unencrypted outcome", func(in *workflows.VolumeRestoreInput) {
			in.EtcdClusters, in.SnapshotIDs = []string{"main"}, plain
		}, []string{"would be unencrypted", "encryptedVolume"}},
		{"snapshot in the wrong zone", func(in *workflows.VolumeRestoreInput) {
			in.SnapshotSet = set.Set
		}, []string{wrongZone, "taken in us-east-1b", "is in us-east-1a"}},
		{"only some members", func(in *workflows.VolumeRestoreInput) {
			in.EtcdClusters, in.Members = []string{"main"}, []string{volZones[1]} // its snapshot is good
		}, []string{"allowMixedTimes", "keep their current data", "--allow-mixed-times"}},
		{"missing snapshot", func(in *workflows.VolumeRestoreInput) {
			in.EtcdClusters, in.SnapshotIDs = []string{"main"}, append(goodMain, "snap-0123456789abcdef0")
		}, []string{"snap-0123456789abcdef0", "no such snapshot"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := restoreInput(vs)
			in.Approve = true
			tc.mutate(&in)
			err := temporalconn.Await(ctx, vs.startRestore(t, ctx, in), nil)
			ae := appError(t, err)
			require.Equal(t, activities.ErrTypePreflightRefused, ae.Type())
			require.True(t, ae.NonRetryable())
			for _, w := range tc.want {
				require.Contains(t, ae.Error(), w)
			}
			require.Len(t, mutatingCalls(vs.ec2), before, "nothing was created or tagged")
		})
	}
}

// TestVolumeRestoreThrottled: EC2 throttles every kind of call the restore
// makes; the SDK and Temporal retry, and the result is still one new
// volume per member.
func TestVolumeRestoreThrottled(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 4*time.Minute)
	vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})

	for _, a := range []string{"DescribeVolumes", "DescribeSnapshots", "DescribeInstances", "CreateVolume", "CreateTags", "DeleteTags", "RebootInstances"} {
		vs.ec2.InjectFault(fakeec2.Fault{Action: a, Code: "RequestLimitExceeded", Times: 4})
	}
	in := restoreInput(vs)
	in.Approve = true
	var res workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, in), &res))
	require.Equal(t, "done", res.Step)
	require.Len(t, vs.newVolumes(t), 6)
	throttled := map[string]int{}
	for _, c := range vs.ec2.Calls() {
		if c.Injected {
			throttled[c.Action]++
		}
	}
	for _, a := range []string{"DescribeVolumes", "CreateVolume", "CreateTags", "DeleteTags", "RebootInstances"} {
		require.Equal(t, 4, throttled[a], "%s was throttled and retried", a)
	}
}

// TestVolumeRestoreWorkerKilled runs the worker as a child process and
// SIGKILLs it after each step: pre-flight, create, wait, tag swap and
// restart. A proxy holds the next step's first EC2 request, the worker is
// killed while it waits, then the request goes through to EC2 anyway (its
// answer lost) and a fresh worker takes over. Exactly one new volume per
// member results.
func TestVolumeRestoreWorkerKilled(t *testing.T) {
	vs := startVolStack(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 6*time.Minute)
	proxy := startGateProxy(t, vs.ec2.URL())

	w := vs.startWorkerProc(t, proxy.srv.URL)
	vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})

	volumeIDFilter := func(f url.Values) bool { return f.Get("Filter.1.Name") == "volume-id" }
	gates := []struct {
		name  string
		match func(url.Values) bool
	}{
		{"after pre-flight read volumes and snapshots", action("DescribeInstances")},
		{"after approval, at create", action("CreateVolume")},
		{"after create, at wait", action("DescribeVolumes", volumeIDFilter)},
		{"after wait, at the tag swap", action("DeleteTags")},
		{"after the tag swap, at restart", action("RebootInstances")},
	}
	gt := proxy.arm(gates[0].name, gates[0].match)
	in := restoreInput(vs)
	in.Approve = true
	run := vs.startRestore(t, ctx, in)
	for i := range gates {
		select {
		case <-gt.arrived:
		case <-ctx.Done():
			t.Fatalf("the restore never reached %q", gates[i].name)
		}
		t.Logf("killing the worker %s", gates[i].name)
		w.Kill()
		held := gt
		if i+1 < len(gates) {
			gt = proxy.arm(gates[i+1].name, gates[i+1].match)
		}
		proxy.open(held)
		w = vs.startWorkerProc(t, proxy.srv.URL)
	}
	var res workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	require.Equal(t, "done", res.Step)

	created := vs.newVolumes(t)
	require.Len(t, created, 6, "exactly one new volume per member")
	made := 0
	for _, c := range vs.ec2.CallsTo("CreateVolume") {
		if c.Code == "" && !c.Replayed {
			made++
		}
	}
	require.Equal(t, 6, made, "no CreateVolume made a second volume")
	all := strings.Join(volZones, ",")
	for key, nv := range created {
		ec, member, _ := strings.Cut(key, "/")
		require.Equal(t, wantKopsTags(ec, member, all), kopsOnly(nv.Tags))
		old, _ := vs.ec2.Volume(vs.volumes[key])
		require.Empty(t, kopsOnly(old.Tags))
	}
	for _, id := range vs.masters {
		in, _ := vs.ec2.Instance(id)
		require.GreaterOrEqual(t, in.Reboots, 1)
	}
}

// TestVolumeRestoreCompensation: the restart fails for good (EC2 refuses
// RebootInstances), so every old volume gets its tags back and the new
// ones lose theirs: protokube still finds exactly one volume per member.
func TestVolumeRestoreCompensation(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 3*time.Minute)
	vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	vs.ec2.InjectFault(fakeec2.Fault{Action: "RebootInstances", Code: "UnauthorizedOperation", Times: fakeec2.Always})

	in := restoreInput(vs)
	in.Approve = true
	run := vs.startRestore(t, ctx, in)
	err := temporalconn.Await(ctx, run, nil)
	ae := appError(t, err)
	require.Equal(t, workflows.ErrTypeRestoreFailed, ae.Type())
	require.Contains(t, ae.Error(), "restart masters")

	rep := vs.status(t, ctx, run)
	require.Equal(t, "failed", rep.Step)
	require.True(t, rep.RolledBack)
	all := strings.Join(volZones, ",")
	created := vs.newVolumes(t)
	require.Len(t, created, 6)
	for _, m := range rep.Members {
		key := m.EtcdCluster + "/" + m.Member
		require.Equal(t, "rolled-back", m.State, key)
		old, _ := vs.ec2.Volume(vs.volumes[key])
		require.Equal(t, wantKopsTags(m.EtcdCluster, m.Member, all), old.Tags, "%s: the old volume is exactly as it was", key)
		nv := created[key]
		require.Empty(t, kopsOnly(nv.Tags), "%s: the new volume is invisible to protokube", key)
		require.Equal(t, "true", nv.Tags[ebs.TagRolledBack])
	}
	// protokube's view: per member, exactly one volume with the tags.
	vols, err := ebs.FindEtcdVolumes(ctx, vs.ec2.Client(t), volCluster, workflows.EtcdClusters)
	require.NoError(t, err)
	require.Len(t, vols, 6)
	for _, v := range vols {
		require.Equal(t, vs.volumes[v.Key()], v.ID)
	}
}

// TestVolumeRestoreApprovalPaths: a dry run returns the plan, a rejection by
// signal and an approval timeout each end the restore having created
// nothing.
func TestVolumeRestoreApprovalPaths(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 3*time.Minute)
	vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	before := len(mutatingCalls(vs.ec2))

	in := restoreInput(vs)
	in.DryRun = true
	var dry workflows.VolumeRestoreReport
	require.NoError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, in), &dry))
	require.Equal(t, "dry-run", dry.Step)
	require.Len(t, dry.Plan.Members, 6)
	require.Len(t, dry.Plan.Instances, 3)

	in = restoreInput(vs)
	run := vs.startRestore(t, ctx, in)
	vs.waitStep(t, ctx, run, "awaiting approval")
	require.NoError(t, vs.tp.Client.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.UpdateReject,
		workflows.Approval{By: "bob", Comment: "wrong cluster"}))
	ae := appError(t, temporalconn.Await(ctx, run, nil))
	require.Equal(t, workflows.ErrTypeRestoreRejected, ae.Type())
	require.Contains(t, ae.Error(), "bob")
	rep := vs.status(t, ctx, run)
	require.Equal(t, "signal", rep.Approval.Via)

	in.ApprovalTimeout = "2s"
	ae = appError(t, temporalconn.Await(ctx, vs.startRestore(t, ctx, in), nil))
	require.Equal(t, workflows.ErrTypeApprovalTimedOut, ae.Type())

	require.Len(t, mutatingCalls(vs.ec2), before, "nothing created or tagged")
	require.Empty(t, vs.newVolumes(t))
}

// TestVolumeRestoreRefusesSecondRestore: one restore per cluster at a time.
func TestVolumeRestoreRefusesSecondRestore(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 2*time.Minute)
	vs.snapshotSet(t, ctx, workflows.VolumeSnapshotInput{})
	run := vs.startRestore(t, ctx, restoreInput(vs))
	vs.waitStep(t, ctx, run, "awaiting approval")
	_, err := vs.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.RestoreWorkflowID(volCluster), TaskQueue: temporalconn.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.VolumeRestore, restoreInput(vs))
	require.Error(t, err)
	require.NoError(t, vs.tp.Client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()))
}

// The inputs the README shows for `temporal workflow start --input`.
const (
	readmeSnapshotInput = `{"cluster": "k8s.mycompany.tld", "region": "us-east-1", "retention": {"keepLast": 24, "hourlyFor": "48h", "dailyFor": "720h"}}`
	readmeRestoreInput  = `{"cluster": "k8s.mycompany.tld", "region": "us-east-1", "stateStore": "%s", "at": "2100-01-01T00:00:00Z", "restart": "reboot", "oldVolumes": "untag", "dryRun": true}`
)

// TestVolumeWorkflowsFromJSON starts both workflows by type name with the
// README's plain JSON inputs, as `temporal workflow start` does.
func TestVolumeWorkflowsFromJSON(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	ctx := testenv.Context(t, 2*time.Minute)
	for _, tc := range []struct{ workflow, id, input string }{
		{"VolumeSnapshot", workflows.VolumeSnapshotWorkflowID(volCluster), readmeSnapshotInput},
		{"VolumeRestore", workflows.RestoreWorkflowID(volCluster), strings.Replace(readmeRestoreInput, "%s", vs.stateStore, 1)},
	} {
		var in map[string]any
		require.NoError(t, json.Unmarshal([]byte(tc.input), &in))
		run, err := vs.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: tc.id, TaskQueue: temporalconn.TaskQueue}, tc.workflow, in)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, temporalconn.Await(ctx, run, &out), tc.workflow)
		require.NotEmpty(t, out)
	}
}

// TestVolumeSnapshotSchedule: a Temporal Schedule with the action
// `kopsdr schedule create --volume-snapshots` builds takes sets on its own.
func TestVolumeSnapshotSchedule(t *testing.T) {
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	ctx := testenv.Context(t, 2*time.Minute)
	id := workflows.VolumeSnapshotWorkflowID(volCluster)
	h, err := vs.tp.Client.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: id, Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: 3 * time.Second}}},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Action: &client.ScheduleWorkflowAction{ID: id, Workflow: workflows.VolumeSnapshot, TaskQueue: temporalconn.TaskQueue,
			Args: []any{workflows.VolumeSnapshotInput{Cluster: volCluster, Region: volRegion}}},
	})
	require.NoError(t, err)
	defer func() { _ = h.Delete(ctx) }()
	require.Eventually(t, func() bool {
		for _, s := range ebs.Sets(snapshotsOf(vs)) {
			if s.State() == ebs.SnapshotCompleted && len(s.Snapshots) == 6 {
				return true
			}
		}
		return false
	}, time.Minute, 200*time.Millisecond, "the schedule took a complete set")
}

// TestVolumeCLI runs the operator's commands with the real kopsdr binary,
// once the lead has added them to the root command.
func TestVolumeCLI(t *testing.T) {
	bin := stack.Binaries(t)
	kopsdr := filepath.Join(bin, "kopsdr")
	if _, _, err := stack.Run(t, kopsdr, nil, "snapshot-volumes", "--help"); err != nil {
		t.Skip("kopsdr has no snapshot-volumes command yet (starter/volumes.go is not wired into the root command)")
	}
	vs := startVolStack(t)
	vs.startWorker(t)
	vs.seed(false, "")
	vs.writeSpec(t, noEncryption)
	cli := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := stack.Run(t, kopsdr, vs.env(vs.ec2.URL()), append(vs.tp.ConnFlags(), args...)...)
		require.NoError(t, err, "kopsdr %v: %s", args, stderr)
		return stdout
	}
	var snap workflows.VolumeSnapshotResult
	require.NoError(t, json.Unmarshal([]byte(cli("snapshot-volumes", "--cluster", volCluster, "--region", volRegion, "--wait", "-o", "json")), &snap))
	require.Len(t, snap.Snapshots, 6)
	require.Contains(t, cli("list-volume-snapshots", "--cluster", volCluster, "--region", volRegion), snap.Set)

	var rep workflows.VolumeRestoreReport
	require.NoError(t, json.Unmarshal([]byte(cli("restore", "volumes", "--cluster", volCluster, "--region", volRegion,
		"--state-store", vs.stateStore, "--dry-run", "-o", "json")), &rep))
	require.Equal(t, "dry-run", rep.Step)
	require.Equal(t, snap.Set, rep.Plan.SnapshotSet)
	require.Contains(t, cli("restore", "volumes", "--cluster", volCluster, "--region", volRegion,
		"--state-store", vs.stateStore, "--dry-run"), "snapshot set "+snap.Set)
	require.NoError(t, json.Unmarshal([]byte(cli("restore", "volumes", "--cluster", volCluster, "--region", volRegion,
		"--state-store", vs.stateStore, "--approve", "--wait", "-o", "json")), &rep))
	require.Equal(t, "done", rep.Step)
	require.Len(t, vs.newVolumes(t), 6)

	if help := cli("schedule", "create", "--help"); !strings.Contains(help, "--volume-snapshots") {
		t.Log("schedule create has no --volume-snapshots yet: not testing it")
		return
	}
	id := workflows.VolumeSnapshotWorkflowID(volCluster)
	cli("schedule", "create", "--cluster", volCluster, "--volume-snapshots", "--region", volRegion, "--every", "3s", "--volume-keep-last", "2")
	before := len(ebs.Sets(snapshotsOf(vs)))
	require.Eventually(t, func() bool { return len(ebs.Sets(snapshotsOf(vs))) > before }, time.Minute, 200*time.Millisecond,
		"the schedule takes a set")
	require.Contains(t, cli("schedule", "describe", id), id)
	cli("schedule", "delete", id)
}

func snapshotsOf(vs *volStack) []ebs.Snapshot {
	var out []ebs.Snapshot
	for _, s := range vs.ec2.Snapshots() {
		sn := ebs.Snapshot{ID: s.ID, State: s.State, Tags: s.Tags, Set: s.Tags[ebs.TagSet],
			EtcdCluster: s.Tags[ebs.TagEtcdCluster], Member: s.Tags[ebs.TagMember], Cluster: s.Tags[ebs.TagCluster]}
		out = append(out, sn)
	}
	return out
}
