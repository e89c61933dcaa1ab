package activities

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/fakeec2"
)

// TestHeartbeatDetailsRace runs the activities whose bodies update their
// heartbeat detail while the heartbeat goroutine reads it, with a 1 ms
// heartbeat so the two overlap. Run under -race it fails on any unguarded
// detail (the four activities of issue 10 item 7 once raced here).
func TestHeartbeatDetailsRace(t *testing.T) {
	saved := ebsHeartbeatInterval
	ebsHeartbeatInterval = time.Millisecond
	t.Cleanup(func() { ebsHeartbeatInterval = saved })

	s := startEC2(t)
	seedCluster(s, false, "")
	a := &Volumes{}
	for _, set := range []string{"2026-01-01T00:00:00.000Z-00000001", "2026-01-02T00:00:00.000Z-00000002", "2026-01-03T00:00:00.000Z-00000003"} {
		takeSet(t, a, set)
	}
	store := writeSpec(t, "    - name: a\n    - name: b\n    - name: c\n")

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	var beats atomic.Int64
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })

	_, err := env.ExecuteActivity(a.EBSPlanRestore, PlanRestoreInput{Region: "us-east-1", Cluster: testCluster, StateStore: store,
		EtcdClusters: []string{"main", "events"}, Restart: ebs.RestartReboot, OldVolumes: ebs.OldVolumesUntag,
		WorkflowID: "restore/" + testCluster, RunID: "r1"})
	require.NoError(t, err)

	before := beats.Load()
	_, err = env.ExecuteActivity(a.EBSPruneSnapshots, PruneSnapshotsInput{Region: "us-east-1", Cluster: testCluster,
		Now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), Policy: ebs.RetentionPolicy{KeepLast: 1}})
	require.NoError(t, err)
	require.Greater(t, beats.Load(), before, "the prune heartbeated while deleting")

	before = beats.Load()
	id := s.AddVolume(fakeec2.Volume{AvailabilityZone: "us-east-1a", State: "creating"})
	_, err = env.ExecuteActivity(a.EBSWaitVolume, WaitVolumeInput{Region: "us-east-1", VolumeID: id})
	require.NoError(t, err)
	require.Greater(t, beats.Load(), before, "the wait heartbeated while polling")

	etcd := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
	_, err = env.ExecuteActivity(a.EBSWaitEtcd, WaitEtcdInput{Etcd: etcd.ConnConfig(), Members: 1})
	require.NoError(t, err)
}
