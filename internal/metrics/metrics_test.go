package metrics

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// scrape fetches /metrics over HTTP and parses it as Prometheus does.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// series finds the one series of a family with exactly these labels.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "no metric %s", name)
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) == len(labels) && func() bool {
			for k, v := range labels {
				if got[k] != v {
					return false
				}
			}
			return true
		}() {
			return m
		}
	}
	t.Fatalf("%s has no series %v", name, labels)
	return nil
}

func TestServeAndScrape(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New()
	addr, err := m.Serve(ctx, "127.0.0.1:0", nil)
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	m.BackupSucceeded("a.example.com", "main", at, 42*time.Second, 12345)
	m.BackupFailed("a.example.com", "events")
	m.BackupFailed("a.example.com", "events")
	m.SetBackupInterval("a.example.com", time.Hour)
	m.RestoreStep("a.example.com", "main", "wait for etcd-manager", 90*time.Second)
	m.RestoreFailed("a.example.com", "")
	m.DrillSucceeded("a.example.com", "main", at, 95*time.Second)
	m.DrillSucceeded("a.example.com", "main", at.Add(-time.Hour), time.Second) // older: ignored
	m.DrillFailed("a.example.com", "events", at)

	// The SDK's handler, used as the SDK uses it: tags added on the way,
	// and one name with two different tag sets.
	sdk := m.SDKHandler().WithTags(map[string]string{"namespace": "default"})
	sdk.WithTags(map[string]string{"operation": "StartWorkflowExecution"}).Counter("temporal_request").Inc(3)
	sdk.WithTags(map[string]string{"operation": "StartWorkflowExecution", "status_code": "UNAVAILABLE"}).Counter("temporal_request").Inc(1)
	sdk.Gauge("temporal_num_pollers").Update(2)
	timer := sdk.WithTags(map[string]string{"activity_type": "UploadSnapshot"}).Timer("temporal_activity_execution_latency")
	timer.Record(20 * time.Millisecond)
	timer.Record(3 * time.Second)
	sdk.Counter("temporal_never_incremented") // created, never used: not exposed

	fams := scrape(t, "http://"+addr.String()+"/metrics")
	ae := map[string]string{"cluster": "a.example.com", "etcd": "main"}
	require.Equal(t, float64(at.Unix()), series(t, fams, "kopsdr_backup_last_success_timestamp_seconds", ae).GetGauge().GetValue())
	require.Equal(t, 12345.0, series(t, fams, "kopsdr_backup_bytes", ae).GetGauge().GetValue())
	h := series(t, fams, "kopsdr_backup_duration_seconds", ae).GetHistogram()
	require.EqualValues(t, 1, h.GetSampleCount())
	require.Equal(t, 42.0, h.GetSampleSum())
	require.Equal(t, 2.0, series(t, fams, "kopsdr_backup_failures_total",
		map[string]string{"cluster": "a.example.com", "etcd": "events"}).GetCounter().GetValue())
	require.Equal(t, 3600.0, series(t, fams, "kopsdr_backup_interval_seconds",
		map[string]string{"cluster": "a.example.com"}).GetGauge().GetValue())
	require.Equal(t, 90.0, series(t, fams, "kopsdr_restore_step_seconds",
		map[string]string{"cluster": "a.example.com", "etcd": "main", "step": "wait for etcd-manager"}).GetGauge().GetValue())
	require.Equal(t, 1.0, series(t, fams, "kopsdr_restore_failures_total",
		map[string]string{"cluster": "a.example.com", "etcd": ""}).GetCounter().GetValue())
	require.Equal(t, float64(at.Unix()), series(t, fams, "kopsdr_drill_last_success_timestamp_seconds", ae).GetGauge().GetValue())
	require.Equal(t, 95.0, series(t, fams, "kopsdr_drill_rto_seconds", ae).GetGauge().GetValue())
	require.Equal(t, float64(at.Unix()), series(t, fams, "kopsdr_drill_last_failure_timestamp_seconds",
		map[string]string{"cluster": "a.example.com", "etcd": "events"}).GetGauge().GetValue())

	require.Equal(t, 3.0, series(t, fams, "temporal_request",
		map[string]string{"namespace": "default", "operation": "StartWorkflowExecution"}).GetCounter().GetValue())
	require.Equal(t, 1.0, series(t, fams, "temporal_request",
		map[string]string{"namespace": "default", "operation": "StartWorkflowExecution", "status_code": "UNAVAILABLE"}).GetCounter().GetValue())
	require.Equal(t, 2.0, series(t, fams, "temporal_num_pollers", map[string]string{"namespace": "default"}).GetGauge().GetValue())
	th := series(t, fams, "temporal_activity_execution_latency",
		map[string]string{"namespace": "default", "activity_type": "UploadSnapshot"}).GetHistogram()
	require.EqualValues(t, 2, th.GetSampleCount())
	require.InDelta(t, 3.02, th.GetSampleSum(), 1e-9)
	for _, b := range th.GetBucket() {
		var want uint64
		for _, v := range []float64{0.02, 3} {
			if v <= b.GetUpperBound() {
				want++
			}
		}
		require.Equal(t, want, b.GetCumulativeCount(), "le=%g", b.GetUpperBound())
	}
	require.NotContains(t, fams, "temporal_never_incremented")
	require.Contains(t, fams, "go_goroutines", "the Go collector is registered")

	// Nothing went to client_golang's global default registry.
	global, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, f := range global {
		require.False(t, strings.HasPrefix(f.GetName(), "kopsdr_") || strings.HasPrefix(f.GetName(), "temporal_"), f.GetName())
	}
}

func TestLastBackupNeverMovesBack(t *testing.T) {
	m := New()
	newer := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	m.SetLastBackup("c", "main", newer)
	m.SetLastBackup("c", "main", newer.Add(-time.Hour))
	var got dto.Metric
	require.NoError(t, m.backupLastSuccess.WithLabelValues("c", "main").Write(&got))
	require.Equal(t, float64(newer.Unix()), got.GetGauge().GetValue())
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	m.BackupSucceeded("c", "main", time.Now(), time.Second, 1)
	m.BackupFailed("c", "main")
	m.RestoreStep("c", "main", "preflight", time.Second)
	m.RestoreFailed("c", "main")
	m.SetBackupInterval("c", time.Hour)
	m.KnowBackup("c", "main")
}

func TestServeRefusesABadAddress(t *testing.T) {
	_, err := New().Serve(context.Background(), "not-a-port", nil)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "--metrics-address"), err.Error())
}
