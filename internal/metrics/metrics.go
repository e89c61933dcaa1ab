// Package metrics is what kopsdr-worker serves on /metrics: the Temporal Go
// SDK's own metrics (see SDKHandler) and kopsdr's backup, restore and drill
// metrics, all in one prometheus.Registry of its own, so nothing registers
// into (or is read from) client_golang's global default registry.
//
// kopsdr's metrics are recorded by the activities' interceptor (see
// activities.MetricsInterceptor), never by workflow code: workflow code runs
// again on every replay and must not change. The "last success" gauges are
// also derived from the backup stores (see Refresher), so they are right
// right after a worker restart, before any backup has run in this process.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Metrics holds the registry and kopsdr's own metrics. Its methods are safe
// for concurrent use; a nil *Metrics records nothing, so code and tests
// that run without metrics need no stand-in.
type Metrics struct {
	reg *prometheus.Registry

	// lastMu serialises SetLastBackup's read-compare-set, which is not
	// atomic on a Gauge.
	lastMu sync.Mutex

	backupLastSuccess *prometheus.GaugeVec
	backupDuration    *prometheus.HistogramVec
	backupBytes       *prometheus.GaugeVec
	backupFailures    *prometheus.CounterVec
	backupInterval    *prometheus.GaugeVec
	restoreStep       *prometheus.GaugeVec
	restoreFailures   *prometheus.CounterVec
	drillLastSuccess  *prometheus.GaugeVec
	drillRTO          *prometheus.GaugeVec
	drillLastFailure  *prometheus.GaugeVec
	captureDurable    *prometheus.GaugeVec

	sdk *sdkCollector
}

// Label names. etcd is the etcd cluster of a kops cluster: main or events.
const (
	LabelCluster = "cluster"
	LabelEtcd    = "etcd"
	LabelStep    = "step"
)

// New builds a fresh registry with kopsdr's metrics, the SDK's (empty until
// SDKHandler is given to the Temporal client) and the Go runtime and
// process collectors.
func New() *Metrics {
	ce := []string{LabelCluster, LabelEtcd}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		backupLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_backup_last_success_timestamp_seconds",
			Help: "Time (Unix seconds) of the newest complete backup: the time in its name, which is when the backup started. Set by each backup and from the backup stores at start and every few minutes.",
		}, ce),
		// A histogram, not a gauge of the last: backups run every hour or so,
		// and the distribution (and its _count, the successes) over a day or a
		// week is what shows a backup getting slower.
		backupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kopsdr_backup_duration_seconds",
			Help:    "Duration of successful backups, from the backup workflow's start to its verified, listed backup.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
		}, ce),
		backupBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_backup_bytes",
			Help: "Size of the newest backup this worker took (etcd.backup.gz, bytes).",
		}, ce),
		backupFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kopsdr_backup_failures_total",
			Help: "Backups that failed: a backup activity's last attempt (or a non-retryable error) failed on this worker.",
		}, ce),
		backupInterval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_backup_interval_seconds",
			Help: "Interval of the cluster's backup schedule (from its next action times), for alerting on stale backups.",
		}, []string{LabelCluster}),
		// A gauge of the last, not a histogram: restores are rare, and "how
		// long did each step of the last restore take" is the question.
		restoreStep: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_restore_step_seconds",
			Help: "Duration of the last successful attempt of each restore step (activity) on this worker; etcd is empty for a step that covers both etcd clusters.",
		}, []string{LabelCluster, LabelEtcd, LabelStep}),
		restoreFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kopsdr_restore_failures_total",
			Help: "Restore steps whose last attempt (or a non-retryable error) failed on this worker.",
		}, ce),
		// Set by the drill activity and, after a restart, from the results
		// stored beside the backups (Refresher).
		drillLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_drill_last_success_timestamp_seconds",
			Help: "Time (Unix seconds) of the last restore drill that passed.",
		}, ce),
		drillRTO: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_drill_rto_seconds",
			Help: "Measured recovery time (download, restore, start) of the last restore drill that passed.",
		}, ce),
		// With the success time it tells "the last drill failed" (the
		// failure is newer) apart from "drills succeed".
		drillLastFailure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_drill_last_failure_timestamp_seconds",
			Help: "Time (Unix seconds) of the last restore drill that failed a check.",
		}, ce),
		// The point-in-time restore's RPO now is time() minus this: what a
		// disaster this second would lose.
		captureDurable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kopsdr_pitr_durable_timestamp_seconds",
			Help: "Time (Unix seconds) kopsdr observed the newest change that change capture has made durable in the change store; refreshed while capture idles.",
		}, ce),
		sdk: newSDKCollector(),
	}
	m.reg.MustRegister(m.backupLastSuccess, m.backupDuration, m.backupBytes, m.backupFailures, m.backupInterval,
		m.restoreStep, m.restoreFailures, m.drillLastSuccess, m.drillRTO, m.drillLastFailure, m.captureDurable, m.sdk,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry Handler serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// BackupSucceeded records a complete backup taken at the time in its name.
func (m *Metrics) BackupSucceeded(cluster, etcd string, at time.Time, took time.Duration, bytes int64) {
	if m == nil {
		return
	}
	m.SetLastBackup(cluster, etcd, at)
	m.backupDuration.WithLabelValues(cluster, etcd).Observe(took.Seconds())
	m.backupBytes.WithLabelValues(cluster, etcd).Set(float64(bytes))
}

// SetLastBackup moves the last-success gauge forward to at, never back: a
// store listing that started before a backup finished must not hide it.
func (m *Metrics) SetLastBackup(cluster, etcd string, at time.Time) {
	if m == nil {
		return
	}
	m.forward(m.backupLastSuccess.WithLabelValues(cluster, etcd), at)
}

// forward sets a timestamp gauge to at unless it already holds a later
// time, and says whether it did.
func (m *Metrics) forward(g prometheus.Gauge, at time.Time) bool {
	ts := float64(at.Unix())
	m.lastMu.Lock()
	defer m.lastMu.Unlock()
	var cur dto.Metric
	if err := g.Write(&cur); err == nil && ts <= cur.GetGauge().GetValue() {
		return false
	}
	g.Set(ts)
	return true
}

// DrillSucceeded records a drill that passed at time at, with its RTO,
// unless a later one is known already.
func (m *Metrics) DrillSucceeded(cluster, etcd string, at time.Time, rto time.Duration) {
	if m == nil {
		return
	}
	if m.forward(m.drillLastSuccess.WithLabelValues(cluster, etcd), at) {
		m.drillRTO.WithLabelValues(cluster, etcd).Set(rto.Seconds())
	}
}

// DrillFailed records a drill that failed a check at time at.
func (m *Metrics) DrillFailed(cluster, etcd string, at time.Time) {
	if m == nil {
		return
	}
	m.forward(m.drillLastFailure.WithLabelValues(cluster, etcd), at)
}

// CaptureDurable records the observation time of the newest durable
// change of a capture.
func (m *Metrics) CaptureDurable(cluster, etcd string, observed time.Time) {
	if m == nil {
		return
	}
	m.forward(m.captureDurable.WithLabelValues(cluster, etcd), observed)
}

// KnowBackup gives a backup target a failure counter at 0. Prometheus's
// increase() cannot see a counter's first step if the series is born at 1,
// so the first failure would raise no alert.
func (m *Metrics) KnowBackup(cluster, etcd string) {
	if m == nil {
		return
	}
	m.backupFailures.WithLabelValues(cluster, etcd).Add(0)
}

// BackupFailed counts a failed backup.
func (m *Metrics) BackupFailed(cluster, etcd string) {
	if m == nil {
		return
	}
	m.backupFailures.WithLabelValues(cluster, etcd).Inc()
}

// SetBackupInterval records a cluster's schedule interval.
func (m *Metrics) SetBackupInterval(cluster string, every time.Duration) {
	if m == nil {
		return
	}
	m.backupInterval.WithLabelValues(cluster).Set(every.Seconds())
}

// RestoreStep records how long a restore step took.
func (m *Metrics) RestoreStep(cluster, etcd, step string, took time.Duration) {
	if m == nil {
		return
	}
	m.restoreStep.WithLabelValues(cluster, etcd, step).Set(took.Seconds())
}

// RestoreFailed counts a failed restore step.
func (m *Metrics) RestoreFailed(cluster, etcd string) {
	if m == nil {
		return
	}
	m.restoreFailures.WithLabelValues(cluster, etcd).Inc()
}

// Serve serves /metrics on addr (HOST:PORT; port 0 picks one) until ctx is
// done. It returns once the listener is bound, with the address it got, so
// a bad --metrics-address fails the worker's start instead of a log line.
func (m *Metrics) Serve(ctx context.Context, addr string, logger *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	return ln.Addr(), nil
}
