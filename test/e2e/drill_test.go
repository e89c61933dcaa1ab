package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestRestoreDrills backs up a kops cluster and drills the backups with the
// workflows: a good backup of main passes with its counts compared, a
// damaged backup of events fails the cluster drill naming the problem, the
// live cluster is never written, the results land beside the backups, and
// the runs are found by their search attributes.
func TestRestoreDrills(t *testing.T) {
	tp := stack.StartTemporal(t)
	t.Setenv("TMPDIR", t.TempDir()) // the in-process worker's scratch space
	tmp := os.TempDir()
	tp.StartWorker(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	s3.Setenv(t)
	k := startKopsCluster(t, 3)
	putKubernetesBasics(t, k.main.Client(t))
	ctx := testenv.Context(t, 4*time.Minute)

	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "backup/" + k.name, TaskQueue: temporalconn.TaskQueue},
		workflows.ClusterBackup, k.backupInput("s3://"+bucket))
	require.NoError(t, err)
	var backups workflows.ClusterBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &backups))
	stack.RecordHistory(t, ctx, tp.Client, run.GetID(), run.GetRunID(), "cluster-backup-search-attributes")
	stack.RecordHistory(t, ctx, tp.Client, run.GetID()+"/main", "", "etcd-backup-search-attributes")
	revMain, revEvents := revision(t, k.main), revision(t, k.events)

	// main, the newest backup: passes, with the counts kopsdr recorded.
	run, err = tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "drill/" + k.name + "/main", TaskQueue: temporalconn.TaskQueue},
		workflows.RestoreDrill, api.RestoreDrillInput{Cluster: k.name, StateStore: "s3://" + bucket})
	require.NoError(t, err)
	var res api.RestoreDrillResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	stack.RecordHistory(t, ctx, tp.Client, run.GetID(), run.GetRunID(), "restore-drill")
	require.Len(t, res.Drills, 1)
	d := res.Drills[0]
	require.Equal(t, backups.Main.Backup, d.Backup)
	require.True(t, d.Passed, "%v", d.Failures)
	require.True(t, d.CountsCompared)
	require.EqualValues(t, 200+5, d.Keys, "200 pods and the Kubernetes basics")
	require.Positive(t, d.RTOSeconds)
	mainStore := openStore(t, ctx, backups.Main.Store)
	stored, ok, err := drill.ReadResult(ctx, mainStore, d.Backup)
	require.NoError(t, err)
	require.True(t, ok, "the result is stored beside the backup")
	require.True(t, stored.Passed)
	names, err := etcdmanager.ListBackups(ctx, mainStore)
	require.NoError(t, err)
	require.Equal(t, []string{d.Backup}, names, "etcd-manager lists the backup as before")

	// events, damaged: one byte flipped in the object.
	eventsStore := openStore(t, ctx, backups.Events.Store)
	data := readAll(t, ctx, eventsStore, backups.Events.Backup+"/"+etcdmanager.DataFile)
	data[len(data)/2] ^= 0xff
	_, err = eventsStore.Put(ctx, backups.Events.Backup+"/"+etcdmanager.DataFile, bytes.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)

	run, err = tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.DrillScheduleID(k.name), TaskQueue: temporalconn.TaskQueue},
		workflows.ClusterDrill, api.ClusterDrillInput{Cluster: k.name, StateStore: "s3://" + bucket})
	require.NoError(t, err)
	err = temporalconn.Await(ctx, run, nil)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.Equal(t, api.ErrTypeDrillFailed, appErr.Type())
	require.Contains(t, appErr.Error(), "test.my.clusters events: 1 of 1 backups failed the drill: "+backups.Events.Backup+" (verify: ")
	require.Contains(t, appErr.Error(), "does not verify")
	stack.RecordHistory(t, ctx, tp.Client, run.GetID(), run.GetRunID(), "cluster-drill-failed")
	stack.RecordHistory(t, ctx, tp.Client, run.GetID()+"/events", "", "restore-drill-failed")
	failed, ok, err := drill.ReadResult(ctx, eventsStore, backups.Events.Backup)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, failed.Passed)
	require.Equal(t, "verify", failed.Failures[0].Check)

	require.Equal(t, revMain, revision(t, k.main), "drills never write to the live cluster")
	require.Equal(t, revEvents, revision(t, k.events), "drills never write to the live cluster")
	entries, err := filepath.Glob(filepath.Join(tmp, drill.ScratchPrefix+"*"))
	require.NoError(t, err)
	require.Empty(t, entries, "no scratch data left")

	// Every run is found by its cluster, etcd cluster and backup: the
	// drills and their children (visibility lags a little behind).
	// main's backup, its drill and the cluster drill's main child; and
	// when main and events were backed up in the same second, so under one
	// name, events' backup and drill too.
	named := 3
	if backups.Events.Backup == backups.Main.Backup {
		named = 5
	}
	queries := map[string]int{
		fmt.Sprintf("%s = '%s' AND WorkflowType = 'RestoreDrill'", api.SearchAttrKopsCluster, k.name): 3,
		fmt.Sprintf("%s = '%s' AND %s = 'events' AND ExecutionStatus = 'Failed'",
			api.SearchAttrKopsCluster, k.name, api.SearchAttrEtcdCluster): 1, // ClusterDrill, of both, has no EtcdCluster
		fmt.Sprintf("%s = '%s'", api.SearchAttrBackupName, backups.Main.Backup): named,
	}
	got := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		for q := range queries {
			got[q] = countRuns(t, ctx, tp, q)
		}
		if maps.Equal(got, queries) || time.Now().After(deadline) {
			break
		}
	}
	require.Equal(t, queries, got, "runs by KopsCluster, EtcdCluster and BackupName")
}

// TestDrillSurvivesWorkerKill kills the worker process mid-download, with
// the scratch dir half written; the next worker retries the drill, removes
// what the dead one left, and the drill passes with no scratch data left.
// The CLI starts the drill and lists the result.
func TestDrillSurvivesWorkerKill(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	var slow atomic.Bool
	s3srv := s3test.StartGoFakeS3Wrapped(t, slowDownloads(&slow, 1<<20), bucket)
	etcd := etcdtest.Start(t, 1)
	putKubernetesBasics(t, etcd.Client(t))
	putRandom(t, etcd, "/registry/secrets/", 8, 1<<20) // ~8 MiB gzip cannot shrink: 8 s at 1 MiB/s
	tmp := t.TempDir()
	env := append(s3srv.Env(), "TMPDIR="+tmp)
	ctx := testenv.Context(t, 5*time.Minute)
	kopsdr := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), s3srv.Env(), append(tp.ConnFlags(), args...)...)
		require.NoError(t, err, "kopsdr %v: %s", args, stderr)
		return stdout
	}
	store := "s3://" + bucket + "/c.example.com/backups/etcd/main"

	w1 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env, tp.ConnFlags()...)
	w1.WaitOutput(t, "kopsdr worker started", time.Minute)
	c := etcd.ConnConfig()
	kopsdr("backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", strings.Join(etcd.Endpoints, ","),
		"--cacert", c.CACert, "--cert", c.Cert, "--key", c.Key, "--backup-store", store, "--wait")

	slow.Store(true)
	var started map[string]string
	require.NoError(t, json.Unmarshal([]byte(kopsdr("drill", "--cluster", "c.example.com", "--backup-store", store, "-o", "json")), &started))
	var scratch string
	require.Eventually(t, func() bool {
		snaps, _ := filepath.Glob(filepath.Join(tmp, drill.ScratchPrefix+"*", "snapshot.db"))
		if len(snaps) == 1 {
			if fi, err := os.Stat(snaps[0]); err == nil && fi.Size() > 2<<20 {
				scratch = filepath.Dir(snaps[0])
				return true
			}
		}
		return false
	}, time.Minute, 50*time.Millisecond, "the drill downloads into its scratch dir")
	w1.Kill()
	require.DirExists(t, scratch, "the killed worker left its scratch dir")

	slow.Store(false)
	w2 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env, tp.ConnFlags()...)
	w2.WaitOutput(t, "kopsdr worker started", time.Minute)
	var res api.RestoreDrillResult
	require.NoError(t, temporalconn.Await(ctx, tp.Client.GetWorkflow(ctx, started["workflowId"], ""), &res))
	require.Len(t, res.Drills, 1)
	require.True(t, res.Drills[0].Passed, "%v", res.Drills[0].Failures)
	require.NoDirExists(t, scratch)
	entries, err := filepath.Glob(filepath.Join(tmp, drill.ScratchPrefix+"*"))
	require.NoError(t, err)
	require.Empty(t, entries, "no scratch data left after the resumed drill")

	var listed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(kopsdr("list-backups", "--backup-store", store, "-o", "json")), &listed))
	require.Len(t, listed, 1)
	require.Equal(t, "passed", listed[0]["verified"])
	require.Positive(t, listed[0]["rtoSeconds"])
	require.Contains(t, kopsdr("list-backups", "--backup-store", store), "verified ")
}

// putKubernetesBasics writes what etcd main of a running Kubernetes holds
// and a drill looks for: the first namespaces, the service IP range, a
// master lease (on a long etcd lease, so it does not expire mid-test).
func putKubernetesBasics(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := t.Context()
	for _, k := range []string{"/registry/namespaces/default", "/registry/namespaces/kube-system", "/registry/ranges/serviceips", "/registry/health"} {
		_, err := cli.Put(ctx, k, `{"kind":"x"}`)
		require.NoError(t, err)
	}
	lease, err := cli.Grant(ctx, 3600)
	require.NoError(t, err)
	_, err = cli.Put(ctx, "/registry/masterleases/10.0.1.10", "x", clientv3.WithLease(lease.ID))
	require.NoError(t, err)
}

// slowDownloads serves backup objects at most bytesPerSec while on is set:
// a store behind a slow link, so a drill is still downloading when killed.
func slowDownloads(on *atomic.Bool, bytesPerSec int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, etcdmanager.DataFile) && on.Load() {
				w = &slowWriter{ResponseWriter: w, rate: bytesPerSec}
			}
			next.ServeHTTP(w, r)
		})
	}
}

type slowWriter struct {
	http.ResponseWriter
	rate int
}

func (s *slowWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		n, err := s.ResponseWriter.Write(chunk)
		written += n
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if err != nil {
			return written, err
		}
		time.Sleep(time.Duration(n) * time.Second / time.Duration(s.rate))
		p = p[n:]
	}
	return written, nil
}

func revision(t *testing.T, c *etcdtest.Cluster) int64 {
	t.Helper()
	resp, err := c.Client(t).Get(t.Context(), "\x00", clientv3.WithCountOnly())
	require.NoError(t, err)
	return resp.Header.Revision
}

func openStore(t *testing.T, ctx context.Context, url string) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(ctx, url, backupstore.Options{})
	require.NoError(t, err)
	return s
}

func countRuns(t *testing.T, ctx context.Context, tp *stack.Temporal, query string) int {
	t.Helper()
	resp, err := tp.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: tp.Namespace, Query: query})
	require.NoError(t, err, query)
	return len(resp.GetExecutions())
}
