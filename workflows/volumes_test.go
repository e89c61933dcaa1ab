package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/inputerr"
)

func TestVolumeSnapshotInputDefaults(t *testing.T) {
	ecs, p, wait, err := resolveVolumeSnapshot(VolumeSnapshotInput{Cluster: "k8s.mycompany.tld", Region: "eu-central-1"})
	require.NoError(t, err)
	require.Equal(t, []string{"main", "events"}, ecs)
	require.Equal(t, ebs.DefaultRetention(), p)
	require.Equal(t, 6*time.Hour, wait)

	_, p, _, err = resolveVolumeSnapshot(VolumeSnapshotInput{Cluster: "c.example.com", Region: "us-gov-west-1",
		Retention: &VolumeRetention{KeepLast: 24, HourlyFor: "48h"}})
	require.NoError(t, err)
	require.Equal(t, ebs.RetentionPolicy{KeepLast: 24, HourlyFor: 48 * time.Hour, DailyFor: ebs.DefaultRetention().DailyFor}, p)
}

func TestVolumeSnapshotInputErrors(t *testing.T) {
	good := VolumeSnapshotInput{Cluster: "c.example.com", Region: "us-east-1"}
	for _, tc := range []struct {
		mutate       func(*VolumeSnapshotInput)
		field, value string
	}{
		{func(in *VolumeSnapshotInput) { in.Cluster = "Bad_Name" }, "cluster", "Bad_Name"},
		{func(in *VolumeSnapshotInput) { in.Region = "us-east1" }, "region", "us-east1"},
		{func(in *VolumeSnapshotInput) { in.Region = "" }, "region", ""},
		{func(in *VolumeSnapshotInput) { in.EtcdClusters = []string{"main", "main"} }, "etcdClusters", "main"},
		{func(in *VolumeSnapshotInput) { in.EtcdClusters = []string{"mian"} }, "etcdClusters", "mian"},
		{func(in *VolumeSnapshotInput) { in.Retention = &VolumeRetention{KeepLast: -1} }, "retention.keepLast", "-1"},
		{func(in *VolumeSnapshotInput) { in.Retention = &VolumeRetention{DailyFor: "a month"} }, "retention.dailyFor", "a month"},
		{func(in *VolumeSnapshotInput) { in.WaitTimeout = "soon" }, "waitTimeout", "soon"},
	} {
		in := good
		tc.mutate(&in)
		_, _, _, err := resolveVolumeSnapshot(in)
		ie, ok := inputerr.As(err)
		require.True(t, ok, "%s: %v", tc.field, err)
		require.Equal(t, tc.field, ie.Field)
		require.Equal(t, tc.value, ie.Value)
		require.NotEmpty(t, ie.Fix)
	}
}

func TestVolumeRestoreInputDefaults(t *testing.T) {
	r := &volumeRestore{in: VolumeRestoreInput{Cluster: "c.example.com", Region: "us-east-1", StateStore: "s3://my.clusters"}}
	s, approval, verify, err := r.resolve()
	require.NoError(t, err)
	require.Equal(t, []string{"main", "events"}, s.etcdClusters)
	require.Equal(t, ebs.RestartReboot, s.restart)
	require.Equal(t, ebs.OldVolumesUntag, s.oldVolumes)
	require.Equal(t, 24*time.Hour, approval)
	require.Equal(t, 15*time.Minute, verify)
	require.Empty(t, r.verify)

	r = &volumeRestore{in: VolumeRestoreInput{Cluster: "c.example.com", Region: "us-east-1", StateStore: "file:///srv/kops",
		EtcdClusters: []string{"events"}, At: "2026-11-21T23:00:00+01:00",
		Verify: &VolumeVerify{EventsEndpoints: []string{"https://a:4002"}}}}
	s, _, _, err = r.resolve()
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC), s.selection.At)
	require.Equal(t, []string{"events"}, volumeEtcdOrder(r.verify), "only the etcd clusters being restored are verified")
}

func TestVolumeRestoreInputErrors(t *testing.T) {
	good := VolumeRestoreInput{Cluster: "c.example.com", Region: "us-east-1", StateStore: "s3://my.clusters"}
	for _, tc := range []struct {
		mutate       func(*VolumeRestoreInput)
		field, value string
	}{
		{func(in *VolumeRestoreInput) { in.StateStore = "" }, "stateStore", ""},
		{func(in *VolumeRestoreInput) { in.StateStore = "my.clusters" }, "stateStore", "my.clusters"},
		{func(in *VolumeRestoreInput) { in.Members = []string{"a,b"} }, "members", "a,b"},
		{func(in *VolumeRestoreInput) { in.SnapshotSet, in.At = "x", "2026-01-01T00:00:00Z" }, "snapshotSet", "x"},
		{func(in *VolumeRestoreInput) { in.SnapshotIDs = []string{"vol-1"} }, "snapshotIds", "vol-1"},
		{func(in *VolumeRestoreInput) { in.At = "yesterday" }, "at", "yesterday"},
		{func(in *VolumeRestoreInput) { in.Restart = "kick" }, "restart", "kick"},
		{func(in *VolumeRestoreInput) { in.OldVolumes = "keep" }, "oldVolumes", "keep"},
		{func(in *VolumeRestoreInput) { in.ApprovalTimeout = "1 day" }, "approvalTimeout", "1 day"},
		{func(in *VolumeRestoreInput) { in.Verify = &VolumeVerify{} }, "verify.mainEndpoints", ""},
	} {
		in := good
		tc.mutate(&in)
		_, _, _, err := (&volumeRestore{in: in}).resolve()
		ie, ok := inputerr.As(err)
		require.True(t, ok, "%s: %v", tc.field, err)
		require.Equal(t, tc.field, ie.Field)
		require.Equal(t, tc.value, ie.Value)
		require.NotEmpty(t, ie.Fix)
	}
}
