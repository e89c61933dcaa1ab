package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/benchtable"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

const (
	// fleetSize clusters, each with its own schedule and store prefix,
	// share fleetEtcds etcd servers: what matters for one worker is how
	// many backups it runs, not how many etcd servers answer them.
	fleetSize  = 1000
	fleetEtcds = 4
	// fleetLead is how long after the benchmark starts every schedule
	// fires: room to create the schedules, fill etcd and start the worker
	// first, so the burst meets a worker already polling.
	fleetLead = 3 * time.Minute
	// fleetWindow bounds the measurement after the burst (the whole
	// benchmark must stay near 15 minutes on a 2-core machine); what has
	// not finished by then is reported as such, with the rate so far.
	fleetWindow = 9 * time.Minute
)

// BenchmarkFleet is a fleet on one worker: 1000 clusters, each scheduled
// as `kopsdr schedule create --every 1h` schedules it (ClusterBackup of
// main and events, overlap skip, a 1 h catch-up window), all due at the
// same second: the worst burst a fleet can make. One real kopsdr-worker
// process, with its default bounds, runs them against four TLS etcd
// servers and versitygw (the real S3 server: the store is not where time
// goes, yet every backup lists, writes and reads back its objects over
// S3). It records the schedules' start delay, how many backups per minute
// the worker sustains, the worker's CPU per backup and peak RSS, and the
// history events per EtcdBackup and ClusterBackup.
func BenchmarkFleet(b *testing.B) {
	bin := stack.Binaries(b)
	tp := stack.StartTemporal(b)
	s3srv := s3test.StartVersityGW(b, bucket)
	certs, err := etcdtest.GenerateCerts(b.TempDir())
	require.NoError(b, err)
	var etcds []*etcdtest.Cluster
	for range fleetEtcds {
		etcds = append(etcds, etcdtest.Start(b, 1, etcdtest.WithCerts(certs)))
	}
	ctx := testenv.Context(b, 30*time.Minute)

	// Every schedule fires at fireAt: an hourly interval whose offset is
	// fireAt's place in the hour. The starter's spec builder lives in
	// package main (not importable); the options below are the ones it
	// passes for --every 1h --drill-every 0, but for that offset.
	began := time.Now()
	fireAt := time.Unix(began.Add(fleetLead).Unix(), 0)
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{
		Every: time.Hour, Offset: time.Duration(fireAt.Unix()%3600) * time.Second}}}
	tls := etcds[0].ConnConfig()
	clusters := make(chan int)
	var wg sync.WaitGroup
	var createErr error
	var mu sync.Mutex
	for range 8 {
		wg.Go(func() {
			for i := range clusters {
				name := fleetCluster(i)
				in := workflows.ClusterBackupInput{Cluster: name, StateStore: "s3://" + bucket,
					Main:          workflows.EtcdTarget{Endpoints: etcds[i%2].Endpoints},
					Events:        workflows.EtcdTarget{Endpoints: etcds[2+i%2].Endpoints},
					BackupOptions: workflows.BackupOptions{CACert: tls.CACert, Cert: tls.Cert, Key: tls.Key}}
				id := api.BackupScheduleID(name)
				_, err := tp.Client.ScheduleClient().Create(ctx, client.ScheduleOptions{
					ID: id, Spec: spec,
					Action: &client.ScheduleWorkflowAction{ID: id, Workflow: api.WorkflowClusterBackup,
						Args: []any{in}, TaskQueue: api.TaskQueue},
					Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Hour,
				})
				if err != nil {
					mu.Lock()
					createErr = fmt.Errorf("create schedule %s: %w", id, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range fleetSize {
		clusters <- i
	}
	close(clusters)
	wg.Wait()
	require.NoError(b, createErr)
	created := time.Since(began)
	b.Logf("created %d schedules in %.1fs, all due at %s", fleetSize, created.Seconds(), fireAt.Format(time.TimeOnly))

	// Small realistic data: a small cluster's main (4 MiB of objects) and
	// events (1 MiB).
	var fill sync.WaitGroup
	for i, e := range etcds {
		fill.Go(func() {
			if i < 2 {
				etcdtest.Fill(b, e.Client(b), "/registry/configmaps/fleet/", 2000, 2048)
			} else {
				etcdtest.Fill(b, e.Client(b), "/registry/events/fleet/", 1000, 1024)
			}
		})
	}
	fill.Wait()
	w := stack.StartProc(b, filepath.Join(bin, "kopsdr-worker"), s3srv.Env(), tp.ConnFlags()...)
	w.WaitOutput(b, "kopsdr worker started", time.Minute)
	if time.Until(fireAt) < 5*time.Second {
		b.Fatalf("the setup took %v, past the schedules' fire time: raise fleetLead", time.Since(began))
	}
	time.Sleep(time.Until(fireAt) - time.Second)
	cpu0 := procCPU(b, w.Pid())
	b.ResetTimer()

	// Count rather than describe 1000 runs every few seconds: the server
	// shares the two cores with the worker being measured.
	var etcdDone, clusterDone, failed int
	for {
		time.Sleep(10 * time.Second)
		etcdDone = countFleetRuns(b, ctx, tp, "WorkflowType = 'EtcdBackup' AND ExecutionStatus = 'Completed'")
		clusterDone = countFleetRuns(b, ctx, tp, "WorkflowType = 'ClusterBackup' AND ExecutionStatus = 'Completed'")
		failed = countFleetRuns(b, ctx, tp, "ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'")
		b.Logf("+%3.0fs: %d/%d etcd backups, %d/%d cluster backups done, %d failed",
			time.Since(fireAt).Seconds(), etcdDone, 2*fleetSize, clusterDone, fleetSize, failed)
		if clusterDone+failed >= fleetSize || time.Since(fireAt) > fleetWindow {
			break
		}
	}
	b.StopTimer()
	cpu1 := procCPU(b, w.Pid())
	hwm := procHWM(b, w.Pid())

	// The runs, as visibility has them: when each cluster backup started
	// against when its schedule meant it to, and when each backup ended.
	var delays []time.Duration
	var lastCluster time.Time
	for _, e := range listRuns(b, ctx, tp, "WorkflowType = 'ClusterBackup'") {
		due := fireAt
		if p := e.GetSearchAttributes().GetIndexedFields()["TemporalScheduledStartTime"]; p != nil {
			var t time.Time
			if converter.GetDefaultDataConverter().FromPayload(p, &t) == nil {
				due = t
			}
		}
		delays = append(delays, e.GetStartTime().AsTime().Sub(due))
		if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED && e.GetCloseTime().AsTime().After(lastCluster) {
			lastCluster = e.GetCloseTime().AsTime()
		}
	}
	var closes []time.Time
	var sampleEtcd []string
	for _, e := range listRuns(b, ctx, tp, "WorkflowType = 'EtcdBackup' AND ExecutionStatus = 'Completed'") {
		closes = append(closes, e.GetCloseTime().AsTime())
		if len(closes)%100 == 1 {
			sampleEtcd = append(sampleEtcd, e.GetExecution().GetWorkflowId())
		}
	}
	slices.SortFunc(delays, func(a, b time.Duration) int { return int(a - b) })
	slices.SortFunc(closes, func(a, b time.Time) int { return a.Compare(b) })
	require.NotEmpty(b, closes, "no backup finished within %v", fleetWindow)
	require.Len(b, delays, fleetSize, "every schedule started its backup")

	// Throughput: overall from the burst to the last backup, and
	// sustained between the 10th and the 90th percentile of completions
	// (past the start-up and the tail).
	n := len(closes)
	overall := float64(n) / closes[n-1].Sub(fireAt).Minutes()
	lo, hi := n/10, n*9/10
	sustained := overall
	if hi > lo && closes[hi-1].After(closes[lo]) {
		sustained = float64(hi-lo) / closes[hi-1].Sub(closes[lo]).Minutes()
	}
	cpu := (cpu1 - cpu0).Seconds()

	// History length of a sample of each workflow.
	maxEtcd, maxCluster := 0, 0
	for _, id := range sampleEtcd {
		maxEtcd = max(maxEtcd, historyLen(b, ctx, tp, id))
		if c, ok := strings.CutSuffix(id, "/main"); ok {
			maxCluster = max(maxCluster, historyLen(b, ctx, tp, c))
		} else if c, ok := strings.CutSuffix(id, "/events"); ok {
			maxCluster = max(maxCluster, historyLen(b, ctx, tp, c))
		}
	}

	size := fmt.Sprintf("%d clusters (%d etcd backups), 4 etcd servers", fleetSize, 2*fleetSize)
	finished := fmt.Sprintf("%d/%d etcd backups, %d/%d cluster backups in %.0f s", n, 2*fleetSize, clusterDone, fleetSize,
		closes[n-1].Sub(fireAt).Seconds())
	if clusterDone == fleetSize {
		finished = fmt.Sprintf("all %d cluster backups (%d etcd backups) in %.0f s", fleetSize, n, lastCluster.Sub(fireAt).Seconds())
	}
	pct := func(p int) time.Duration { return delays[min(len(delays)-1, len(delays)*p/100)] }
	rows := []benchtable.Row{
		{What: "schedules created (Temporal Schedules, as kopsdr schedule create)", Size: fmt.Sprintf("%d schedules", fleetSize),
			Time: fmt.Sprintf("%.1f s", created.Seconds()), Note: "all due at the same second (worst case)"},
		{What: "schedule start delay (start - TemporalScheduledStartTime)", Size: size,
			Time: fmt.Sprintf("p50 %.1f s, p90 %.1f s, max %.1f s", pct(50).Seconds(), pct(90).Seconds(), delays[len(delays)-1].Seconds()),
			Note: "the server starting 1000 scheduled workflows at once"},
		{What: "one worker: burst to done", Size: size, Time: finished,
			Note: fmt.Sprintf("%d failed; --max-concurrent-backups %d (default)", failed, activities.DefaultMaxConcurrentBackups)},
		{What: "one worker: backups per minute", Size: size,
			Time: fmt.Sprintf("%.0f /min sustained (p10-p90), %.0f /min overall", sustained, overall),
			Note: "etcd backups (main or events) completed; server, etcd and S3 share the same 2 cores"},
		{What: "one worker: CPU and memory per backup", Size: size,
			Time:    fmt.Sprintf("%.3f CPU s per etcd backup", cpu/float64(n)),
			PeakRSS: fmt.Sprintf("%.0f MiB", float64(hwm)/(1<<20)),
			Note:    fmt.Sprintf("worker process utime+stime %.0f s over the window; VmHWM", cpu)},
		{What: "history events", Size: fmt.Sprintf("sample of %d", len(sampleEtcd)),
			Note: fmt.Sprintf("max %d per EtcdBackup, %d per ClusterBackup (limit 40 per backup)", maxEtcd, maxCluster)},
	}
	for _, r := range rows {
		r.Group = "fleet"
		require.NoError(b, benchtable.Record(r))
	}
	b.ReportMetric(sustained, "backups/min")
	b.ReportMetric(cpu/float64(n), "cpu-s/backup")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-MiB")
}

// BenchmarkFleetBurst is the memory bound: 100 backups of a 20 MiB etcd
// started at once on one worker, once with --max-concurrent-backups 0 (no
// bound: every upload streams at once) and once with the default, each on
// a fresh worker process; it records each one's peak RSS and time.
func BenchmarkFleetBurst(b *testing.B) {
	const burst = 100
	bin := stack.Binaries(b)
	tp := stack.StartTemporal(b)
	s3srv := s3test.StartVersityGW(b, bucket)
	e := etcdtest.Start(b, 1)
	etcdtest.Fill(b, e.Client(b), "/registry/configmaps/burst/", 10000, 2048) // 20 MiB
	ctx := testenv.Context(b, 20*time.Minute)
	for _, bound := range []int{0, activities.DefaultMaxConcurrentBackups} {
		w := stack.StartProc(b, filepath.Join(bin, "kopsdr-worker"), s3srv.Env(),
			append(tp.ConnFlags(), "--max-concurrent-backups", strconv.Itoa(bound))...)
		w.WaitOutput(b, "kopsdr worker started", time.Minute)
		cpu0 := procCPU(b, w.Pid())
		start := time.Now()
		var runs []client.WorkflowRun
		for i := range burst {
			cluster := fmt.Sprintf("b%d-%03d.burst.example.com", bound, i)
			in := workflows.EtcdBackupInput{Cluster: cluster, EtcdCluster: "main", StateStore: "s3://" + bucket,
				Endpoints: e.Endpoints, BackupOptions: tlsOf(e.ConnConfig())}
			in.NoPrune = true
			run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.BackupWorkflowID(cluster, "main", start),
				TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup, in)
			require.NoError(b, err)
			runs = append(runs, run)
		}
		for _, r := range runs {
			require.NoError(b, temporalconn.Await(ctx, r, nil))
		}
		took := time.Since(start)
		cpu := procCPU(b, w.Pid()) - cpu0
		hwm := procHWM(b, w.Pid())
		w.Kill()
		what, note := "burst, no bound (--max-concurrent-backups 0)", "every upload streams at once"
		if bound > 0 {
			what, note = fmt.Sprintf("burst, --max-concurrent-backups %d (default)", bound), "the rest wait, heartbeating"
		}
		require.NoError(b, benchtable.Record(benchtable.Row{Group: "fleet", What: what,
			Size: fmt.Sprintf("%d backups of a 20 MiB etcd at once", burst), Time: fmt.Sprintf("%.1f s", took.Seconds()),
			PeakRSS: fmt.Sprintf("%.0f MiB", float64(hwm)/(1<<20)),
			Note:    fmt.Sprintf("%s; %.2f CPU s per backup", note, cpu.Seconds()/burst)}))
	}
}

func fleetCluster(i int) string { return fmt.Sprintf("c%04d.fleet.example.com", i) }

// countFleetRuns counts the namespace's runs matching a visibility query.
func countFleetRuns(t testing.TB, ctx context.Context, tp *stack.Temporal, query string) int {
	t.Helper()
	r, err := tp.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: tp.Namespace, Query: query})
	if err != nil { // a visibility store without COUNT: list instead
		return len(listRuns(t, ctx, tp, query))
	}
	return int(r.GetCount())
}

// listRuns lists the namespace's runs matching a visibility query.
func listRuns(t testing.TB, ctx context.Context, tp *stack.Temporal, query string) []*workflowpb.WorkflowExecutionInfo {
	t.Helper()
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		// Pages of 100: the SDK gives each call 10 s, and the test
		// server's visibility store took longer for 1000 runs of a fleet.
		r, err := tp.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: tp.Namespace, PageSize: 100, NextPageToken: token, Query: query})
		require.NoError(t, err, query)
		out = append(out, r.GetExecutions()...)
		if token = r.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}

// historyLen is the number of events in a workflow's history.
func historyLen(t testing.TB, ctx context.Context, tp *stack.Temporal, workflowID string) int {
	t.Helper()
	n := 0
	it := tp.Client.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		_, err := it.Next()
		require.NoError(t, err, workflowID)
		n++
	}
	return n
}

// procCPU is a process's user plus system CPU time (/proc/<pid>/stat
// fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(t, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procHWM is a process's peak resident set size in bytes (VmHWM).
func procHWM(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
