package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// exitStale is kopsdr report's exit code for a missing or too old backup.
const exitStale = 7

// TestReportAndRuns: three clusters in one state store, backed up by the
// real workflow: a is fresh and its drill passed; b's only backup is three
// days old; c's newest backup failed its drill and the one before is a day
// old. `kopsdr report` reads them from the store, with Temporal (schedules,
// last failed run) and without it, and exits 7 for b and c; `kopsdr runs`
// finds a's runs by the search attributes they were started with.
func TestReportAndRuns(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	s3.Setenv(t)
	// One small etcd plays main and events of every cluster.
	etcd := etcdtest.Start(t, 1)
	etcdtest.Fill(t, etcd.Client(t), "/registry/pods/default/", 20, 256)
	ctx := testenv.Context(t, 3*time.Minute)
	state := "s3://" + bucket
	tls := tlsOf(etcd.ConnConfig())

	// The workflows set their search attributes themselves.
	start := func(id string, wf, in any) client.WorkflowRun {
		run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: temporalconn.TaskQueue}, wf, in)
		require.NoError(t, err)
		return run
	}
	backups := map[string]client.WorkflowRun{}
	for _, c := range []string{"a.test", "c.test"} {
		backups[c] = start("backup/"+c+"/e2e", workflows.ClusterBackup, workflows.ClusterBackupInput{Cluster: c, StateStore: state, BackupOptions: tls,
			Main: workflows.EtcdTarget{Endpoints: etcd.Endpoints}, Events: workflows.EtcdTarget{Endpoints: etcd.Endpoints}})
	}
	noEtcd := tls
	noEtcd.MaxAttempts = 1
	failed := start("backup/a.test/main/unreachable", workflows.EtcdBackup, workflows.EtcdBackupInput{Cluster: "a.test", EtcdCluster: "main", StateStore: state,
		Endpoints: []string{"https://" + loopback.Refused(t)}, BackupOptions: noEtcd})
	results := map[string]workflows.ClusterBackupResult{}
	for c, run := range backups {
		var res workflows.ClusterBackupResult
		require.NoError(t, temporalconn.Await(ctx, run, &res), "backup of %s", c)
		results[c] = res
	}
	require.Error(t, temporalconn.Await(ctx, failed, nil), "a backup of an etcd that does not answer fails")

	open := func(cluster, etcd string) backupstore.Store {
		s, err := backupstore.Open(ctx, fmt.Sprintf("%s/%s/backups/etcd/%s", state, cluster, etcd), backupstore.Options{})
		require.NoError(t, err)
		return s
	}
	aMain, cMain := open("a.test", "main"), open("c.test", "main")
	require.NoError(t, drill.WriteResult(ctx, aMain, results["a.test"].Main.Backup, drill.Result{
		Backup: results["a.test"].Main.Backup, Passed: true, At: time.Now().UTC(), Timings: drill.Timings{RTOSeconds: 1.5}}))
	require.NoError(t, drill.WriteResult(ctx, cMain, results["c.test"].Main.Backup, drill.Result{
		Backup: results["c.test"].Main.Backup, At: time.Now().UTC(),
		Failures: []drill.Failure{{Check: "required", Reason: "/registry/namespaces/default is missing"}}}))
	bMain := backdate(t, ctx, aMain, results["a.test"].Main.Backup, open("b.test", "main"), 72*time.Hour)
	cOld := backdate(t, ctx, cMain, results["c.test"].Main.Backup, cMain, 24*time.Hour)

	cli := func(args ...string) (string, string, int) {
		t.Helper()
		stdout, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(), args...)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout, stderr, exit.ExitCode()
		}
		require.NoError(t, err)
		return stdout, stderr, 0
	}
	conn := tp.ConnFlags()
	withConn := func(args ...string) []string { return append(append([]string{}, conn...), args...) }
	c := etcd.ConnConfig()
	schedule := func(cluster string, extra ...string) {
		_, stderr, code := cli(withConn(append([]string{"schedule", "create", "--cluster", cluster, "--state-store", state,
			"--main-endpoints", etcd.Endpoints[0], "--events-endpoints", etcd.Endpoints[0],
			"--cacert", c.CACert, "--cert", c.Cert, "--key", c.Key}, extra...)...)...)
		require.Zero(t, code, stderr)
	}
	schedule("a.test", "--every", "24h")
	schedule("b.test", "--every", "1h", "--paused")

	// runs: visibility is updated a moment after a run closes.
	var runs []struct {
		WorkflowID  string `json:"workflowId"`
		Type        string `json:"type"`
		Status      string `json:"status"`
		EtcdCluster string `json:"etcdCluster"`
		Failure     string `json:"failure"`
		FailureType string `json:"failureType"`
	}
	listRuns := func(args ...string) {
		stdout, stderr, code := cli(withConn(append([]string{"runs", "--cluster", "a.test", "-o", "json"}, args...)...)...)
		require.Zero(t, code, stderr)
		require.NoError(t, json.Unmarshal([]byte(stdout), &runs), stdout)
	}
	// The ClusterBackup's children set the attributes on themselves.
	closed := func() bool {
		for _, r := range runs {
			if r.Status == "running" {
				return false
			}
		}
		return true
	}
	require.Eventually(t, func() bool {
		listRuns()
		return len(runs) == 4 && closed()
	}, 30*time.Second, 200*time.Millisecond, "kopsdr runs --cluster a.test lists a's four closed runs: %+v", &runs)
	statuses := map[string]string{}
	for _, r := range runs {
		statuses[r.WorkflowID] = r.Status + " " + r.Type + " " + r.EtcdCluster
	}
	assert.Equal(t, map[string]string{"backup/a.test/e2e": "completed ClusterBackup ",
		"backup/a.test/e2e/main": "completed EtcdBackup main", "backup/a.test/e2e/events": "completed EtcdBackup events",
		"backup/a.test/main/unreachable": "failed EtcdBackup main"}, statuses)
	listRuns("--etcd", "main")
	require.Len(t, runs, 2, "kopsdr runs --etcd main")
	for _, r := range runs {
		assert.Equal(t, "main", r.EtcdCluster)
	}
	listRuns("--failed")
	require.Len(t, runs, 1, "kopsdr runs --failed")
	assert.Equal(t, "backup/a.test/main/unreachable", runs[0].WorkflowID)
	assert.Equal(t, "main", runs[0].EtcdCluster)
	assert.Contains(t, runs[0].Failure, "connection refused", "a failed run says why")
	assert.Equal(t, "EtcdUnreachable", runs[0].FailureType)
	stdout, _, code := cli(withConn("runs", "--cluster", "a.test", "--failed")...)
	require.Zero(t, code)
	assert.Regexp(t, `(?m)^STARTED\s+CLOSED\s+STATUS\s+TYPE\s+WORKFLOW ID\s+ETCD\s+BACKUP\s+ERROR$`, stdout)
	// The backup had reserved its name before etcd did not answer.
	assert.Regexp(t, `failed\s+EtcdBackup\s+backup/a\.test/main/unreachable\s+main\s+\S+Z-\d{6}\s+EtcdUnreachable: `, stdout)
	stdout, stderr, code := cli(withConn("runs", "--cluster", "b.test")...)
	require.Zero(t, code, stderr)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "no runs match KopsCluster = 'b.test'")

	// report, from the state store and Temporal.
	type etcdRow struct {
		EtcdCluster string `json:"etcdCluster"`
		Newest      *struct {
			Name    string `json:"name"`
			TakenBy string `json:"takenBy"`
		} `json:"newest"`
		NewestGood *struct {
			Name string `json:"name"`
		} `json:"newestGood"`
		LastDrill *struct {
			Passed     bool    `json:"passed"`
			Reason     string  `json:"reason"`
			RTOSeconds float64 `json:"rtoSeconds"`
		} `json:"lastDrill"`
		Stale  bool   `json:"stale"`
		Reason string `json:"reason"`
	}
	type schedState struct {
		Exists  bool    `json:"exists"`
		Paused  bool    `json:"paused"`
		NextRun *string `json:"nextRun"`
	}
	type reportJSON struct {
		Temporal struct {
			Reachable bool   `json:"reachable"`
			RunsError string `json:"runsError"`
		} `json:"temporal"`
		Clusters []struct {
			Cluster        string      `json:"cluster"`
			Etcd           []etcdRow   `json:"etcd"`
			BackupSchedule *schedState `json:"backupSchedule"`
			DrillSchedule  *schedState `json:"drillSchedule"`
			LastFailedRun  *struct {
				WorkflowID string `json:"workflowId"`
				Failure    string `json:"failure"`
			} `json:"lastFailedRun"`
		} `json:"clusters"`
		Stale []string `json:"stale"`
	}
	var rep reportJSON
	report := func(args ...string) (map[string]etcdRow, int) {
		stdout, stderr, code := cli(append([]string{"report", "-o", "json"}, args...)...)
		rep = reportJSON{}
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep), "stdout: %s\nstderr: %s", stdout, stderr)
		rows := map[string]etcdRow{}
		for _, c := range rep.Clusters {
			for _, e := range c.Etcd {
				rows[c.Cluster+"/"+e.EtcdCluster] = e
			}
		}
		return rows, code
	}
	rows, code := report(withConn("--state-store", state)...)
	require.Equal(t, exitStale, code)
	require.True(t, rep.Temporal.Reachable)
	require.Empty(t, rep.Temporal.RunsError)
	require.Len(t, rep.Clusters, 3)
	a, b := rep.Clusters[0], rep.Clusters[1]
	require.Equal(t, "a.test", a.Cluster)
	assert.True(t, a.BackupSchedule.Exists)
	assert.False(t, a.BackupSchedule.Paused)
	assert.NotNil(t, a.BackupSchedule.NextRun)
	assert.True(t, a.DrillSchedule.Exists, "schedule create adds the daily drill schedule")
	require.NotNil(t, a.LastFailedRun)
	assert.Equal(t, "backup/a.test/main/unreachable", a.LastFailedRun.WorkflowID)
	assert.NotEmpty(t, a.LastFailedRun.Failure)
	assert.True(t, b.BackupSchedule.Paused)
	assert.Nil(t, b.LastFailedRun)

	assert.False(t, rows["a.test/main"].Stale)
	assert.Equal(t, results["a.test"].Main.Backup, rows["a.test/main"].Newest.Name)
	assert.Equal(t, "kopsdr", rows["a.test/main"].Newest.TakenBy)
	assert.True(t, rows["a.test/main"].LastDrill.Passed)
	assert.Equal(t, 1.5, rows["a.test/main"].LastDrill.RTOSeconds)
	assert.False(t, rows["a.test/events"].Stale)
	assert.Equal(t, bMain, rows["b.test/main"].Newest.Name)
	assert.Equal(t, "etcd-manager", rows["b.test/main"].Newest.TakenBy)
	assert.Equal(t, "newest backup is 3d00h old (max 2h)", rows["b.test/main"].Reason)
	assert.Equal(t, "no backup", rows["b.test/events"].Reason)
	assert.Equal(t, cOld, rows["c.test/main"].NewestGood.Name)
	assert.Contains(t, rows["c.test/main"].LastDrill.Reason, "/registry/namespaces/default is missing")
	assert.Contains(t, rows["c.test/main"].Reason, "newer ones failed their drill")
	assert.False(t, rows["c.test/events"].Stale)
	assert.Len(t, rep.Stale, 3)

	_, code = report(withConn("--state-store", state, "--max-age", "48h")...)
	assert.Equal(t, exitStale, code, "b is still three days old")
	assert.Len(t, rep.Stale, 2)
	_, code = report(withConn("--state-store", state, "--cluster", "a.test")...)
	assert.Zero(t, code, "a alone is fresh")

	// Without a store: the clusters of the backup schedules, a and b.
	rows, code = report(conn...)
	require.Equal(t, exitStale, code)
	require.Len(t, rep.Clusters, 2)
	assert.False(t, rows["a.test/main"].Stale)
	assert.True(t, rows["b.test/main"].Stale)

	// Temporal down: the store alone still makes the report, and says so.
	rows, code = report("--address", loopback.Refused(t), "--state-store", state)
	require.Equal(t, exitStale, code)
	assert.False(t, rep.Temporal.Reachable)
	assert.Len(t, rep.Clusters, 3)
	assert.Nil(t, rep.Clusters[0].BackupSchedule)
	assert.False(t, rows["a.test/main"].Stale)
	stdout, _, code = cli("report", "--address", loopback.Refused(t), "--state-store", state, "--cluster", "a.test")
	assert.Zero(t, code)
	assert.Contains(t, stdout, "schedules and runs are not shown")
}

// backdate copies backup from src to dst under the name of a backup taken
// age ago, as etcd-manager would have written it (no kopsdr.json), and
// returns that name.
func backdate(t *testing.T, ctx context.Context, src backupstore.Store, backup string, dst backupstore.Store, age time.Duration) string {
	at := time.Now().Add(-age).Truncate(time.Second)
	name := etcdmanager.BackupName(at, 1)
	data := readAll(t, ctx, src, backup+"/"+etcdmanager.DataFile)
	_, err := dst.Put(ctx, name+"/"+etcdmanager.DataFile, bytes.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
	info, err := etcdmanager.ReadBackupInfo(ctx, src, backup)
	require.NoError(t, err)
	info.Timestamp = at.Unix()
	require.NoError(t, etcdmanager.WriteBackupInfo(ctx, dst, name, info, backupstore.PutOptions{}))
	return name
}
