package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// fakeSchedules answers List and Describe as the Temporal server does: a
// described action's arguments are payloads. The embedded interfaces stand
// for the methods the refresh never calls.
type fakeSchedules struct {
	client.ScheduleClient
	all map[string]*client.ScheduleDescription // nil: Describe fails
	ids []string
}

type fakeHandle struct {
	client.ScheduleHandle
	d *client.ScheduleDescription
}

type fakeIter struct{ ids []string }

func (f *fakeSchedules) List(context.Context, client.ScheduleListOptions) (client.ScheduleListIterator, error) {
	return &fakeIter{ids: f.ids}, nil
}

func (f *fakeSchedules) GetHandle(_ context.Context, id string) client.ScheduleHandle {
	return fakeHandle{d: f.all[id]}
}

func (h fakeHandle) Describe(context.Context) (*client.ScheduleDescription, error) {
	if h.d == nil {
		return nil, errors.New("not found")
	}
	return h.d, nil
}

func (it *fakeIter) HasNext() bool { return len(it.ids) > 0 }
func (it *fakeIter) Next() (*client.ScheduleListEntry, error) {
	id := it.ids[0]
	it.ids = it.ids[1:]
	return &client.ScheduleListEntry{ID: id}, nil
}

func describe(t *testing.T, in api.ClusterBackupInput, spec client.ScheduleSpec, next ...time.Time) *client.ScheduleDescription {
	p, err := converter.GetDefaultDataConverter().ToPayload(in)
	require.NoError(t, err)
	return &client.ScheduleDescription{
		Schedule: client.Schedule{Spec: &spec, Action: &client.ScheduleWorkflowAction{Args: []any{(*commonpb.Payload)(p)}}},
		Info:     client.ScheduleInfo{NextActionTimes: next},
	}
}

func TestScheduleTargets(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	f := &fakeSchedules{
		ids: []string{api.BackupScheduleID("a.example.com"), api.VolumeSnapshotWorkflowID("a.example.com"),
			api.BackupScheduleID("b.example.com"), api.BackupScheduleID("gone.example.com")},
		all: map[string]*client.ScheduleDescription{
			// A cron schedule: the interval is the gap between its next runs.
			api.BackupScheduleID("a.example.com"): describe(t, api.ClusterBackupInput{Cluster: "a.example.com", StateStore: "s3://state"},
				client.ScheduleSpec{CronExpressions: []string{"0 */2 * * *"}}, t0, t0.Add(2*time.Hour)),
			// --every and its own stores; paused, so no next runs.
			api.BackupScheduleID("b.example.com"): describe(t, api.ClusterBackupInput{Cluster: "b.example.com",
				Main: api.EtcdTarget{BackupStore: "s3://b-backups/main"}, Events: api.EtcdTarget{BackupStore: "s3://b-backups/events"}},
				client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: 30 * time.Minute}}}),
		},
	}
	m := New()
	targets, err := m.ScheduleTargets(f)(context.Background())
	require.ErrorContains(t, err, "backup/gone.example.com", "the schedule it could not describe is named")
	require.Equal(t, []Target{
		{Cluster: "a.example.com", Etcd: "main", Store: "s3://state/a.example.com/backups/etcd/main"},
		{Cluster: "a.example.com", Etcd: "events", Store: "s3://state/a.example.com/backups/etcd/events"},
		{Cluster: "b.example.com", Etcd: "main", Store: "s3://b-backups/main"},
		{Cluster: "b.example.com", Etcd: "events", Store: "s3://b-backups/events"},
	}, targets)

	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() == "kopsdr_backup_interval_seconds" {
			for _, s := range f.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
	}
	require.Equal(t, map[string]float64{"a.example.com": 7200, "b.example.com": 1800}, got)
}
