package metrics

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// writeBackup writes a backup as kopsdr and etcd-manager do: the data, then
// the meta that makes it listed (withMeta false: one still being written).
func writeBackup(t *testing.T, s backupstore.Store, at time.Time, withMeta bool) {
	t.Helper()
	ctx := context.Background()
	name := etcdmanager.BackupName(at, 1)
	_, err := s.Put(ctx, name+"/"+etcdmanager.DataFile, bytes.NewReader([]byte("not really gzip")), backupstore.PutOptions{})
	require.NoError(t, err)
	if withMeta {
		require.NoError(t, etcdmanager.WriteBackupInfo(ctx, s, name,
			etcdmanager.BackupInfo{EtcdVersion: "3.5.9", Timestamp: at.Unix()}, backupstore.PutOptions{}))
	}
}

func lastBackup(t *testing.T, m *Metrics, cluster, etcd string) float64 {
	t.Helper()
	var got dto.Metric
	require.NoError(t, m.backupLastSuccess.WithLabelValues(cluster, etcd).Write(&got))
	return got.GetGauge().GetValue()
}

// TestRefreshFromStore is the worker restart: a fresh registry knows nothing
// of earlier backups until the refresh reads them from the store.
func TestRefreshFromStore(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir() + "/a.example.com/backups/etcd/main"
	s, err := backupstore.Open(ctx, url, backupstore.Options{})
	require.NoError(t, err)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	writeBackup(t, s, t0, true)
	writeBackup(t, s, t0.Add(time.Hour), true)
	writeBackup(t, s, t0.Add(2*time.Hour), false) // no meta yet: not a backup

	m := New() // the restarted worker
	targets := []Target{
		{Cluster: "a.example.com", Etcd: "main", Store: url},
		{Cluster: "a.example.com", Etcd: "events", Store: "file://" + t.TempDir() + "/empty"},
		{Cluster: "b.example.com", Etcd: "main", Store: "bogus://nowhere"},
	}
	r := &Refresher{Metrics: m, Targets: func(context.Context) ([]Target, error) {
		return targets, errors.New("one schedule could not be read") // logged, the rest still refreshed
	}}
	r.RefreshOnce(ctx)
	require.Equal(t, float64(t0.Add(time.Hour).Unix()), lastBackup(t, m, "a.example.com", "main"))

	// Scraped as Prometheus would: the empty store and the bad one add no series.
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, err := m.Serve(srvCtx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	fams := scrape(t, "http://"+addr.String()+"/metrics")
	require.Len(t, fams["kopsdr_backup_last_success_timestamp_seconds"].GetMetric(), 1)
	// Every target's failure counter is there at 0, so the first failure
	// is an increase Prometheus sees.
	require.Len(t, fams["kopsdr_backup_failures_total"].GetMetric(), 3)
	require.Equal(t, 0.0, series(t, fams, "kopsdr_backup_failures_total",
		map[string]string{"cluster": "b.example.com", "etcd": "main"}).GetCounter().GetValue())

	// The backup in flight gets its meta; the next round sees it.
	writeBackup(t, s, t0.Add(2*time.Hour), true)
	r.RefreshOnce(ctx)
	require.Equal(t, float64(t0.Add(2*time.Hour).Unix()), lastBackup(t, m, "a.example.com", "main"))

	// Drill results beside the backups set the drill gauges: the newest
	// pass with its RTO, and a newer failure.
	passed := drill.Result{Passed: true, At: t0.Add(3 * time.Hour), Timings: drill.Timings{RTOSeconds: 12.5}}
	failed := drill.Result{Passed: false, At: t0.Add(4 * time.Hour)}
	require.NoError(t, drill.WriteResult(ctx, s, etcdmanager.BackupName(t0.Add(time.Hour), 1), passed))
	require.NoError(t, drill.WriteResult(ctx, s, etcdmanager.BackupName(t0.Add(2*time.Hour), 1), failed))
	r.RefreshOnce(ctx)
	fams = scrape(t, "http://"+addr.String()+"/metrics")
	ae := map[string]string{"cluster": "a.example.com", "etcd": "main"}
	require.Equal(t, float64(passed.At.Unix()), series(t, fams, "kopsdr_drill_last_success_timestamp_seconds", ae).GetGauge().GetValue())
	require.Equal(t, 12.5, series(t, fams, "kopsdr_drill_rto_seconds", ae).GetGauge().GetValue())
	require.Equal(t, float64(failed.At.Unix()), series(t, fams, "kopsdr_drill_last_failure_timestamp_seconds", ae).GetGauge().GetValue())
}

// TestRunStopsWithItsContext: Run refreshes at once, again after Every,
// and returns when the worker stops.
func TestRunStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rounds := make(chan struct{}, 10)
	r := &Refresher{Metrics: New(), Every: 10 * time.Millisecond, Targets: func(context.Context) ([]Target, error) {
		rounds <- struct{}{}
		return nil, nil
	}}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-rounds
	<-rounds
	cancel()
	<-done
}
