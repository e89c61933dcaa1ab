package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// TestDevModeSurvivesRestart runs `kopsdr-worker --dev` (embedded Temporal,
// SQLite file, Web UI), takes a backup through it, kills it, starts it again
// on the same data dir and finds the finished workflow still there.
func TestDevModeSurvivesRestart(t *testing.T) {
	bin := stack.Binaries(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	etcd := etcdtest.Start(t, 1)
	dataDir := t.TempDir()
	ports := loopback.Ports(t, 2)
	port, uiPort := ports[0], ports[1]
	args := []string{"--dev", "--data-dir", dataDir, "--dev-port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort)}
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	dev := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), s3.Env(), args...)
	dev.WaitOutput(t, "kopsdr worker started", 2*time.Minute)
	require.Contains(t, dev.Output(), fmt.Sprintf("Temporal on %s (namespace default), Web UI on http://127.0.0.1:%d", addr, uiPort))

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", uiPort))
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, strings.ToLower(string(page)), "<html")

	stdout, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(), "--address", addr,
		"backup", "--cluster", "dev.example.com", "--etcd", "main", "--endpoints", etcd.Endpoints[0],
		"--cacert", etcd.CACert, "--cert", etcd.ClientCert, "--key", etcd.ClientKey,
		"--backup-store", "s3://"+bucket+"/dev", "--wait")
	require.NoError(t, err, stderr)
	backup := strings.TrimSpace(stdout)
	require.NotEmpty(t, backup)

	dev.Kill()
	dev2 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), s3.Env(), args...)
	dev2.WaitOutput(t, "kopsdr worker started", 2*time.Minute)
	c, err := client.Dial(client.Options{HostPort: addr})
	require.NoError(t, err)
	defer c.Close()
	ctx := testenv.Context(t, time.Minute)
	var found bool
	require.Eventually(t, func() bool {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range resp.GetExecutions() {
			if strings.HasPrefix(e.GetExecution().GetWorkflowId(), "backup/dev.example.com/main/") {
				found = true
			}
		}
		return found
	}, 30*time.Second, 500*time.Millisecond, "the backup workflow survives the restart")

	// And the restarted server still runs work.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup,
		workflows.EtcdBackupInput{Cluster: "dev.example.com", EtcdCluster: "bogus"})
	require.NoError(t, err)
	require.ErrorContains(t, temporalconn.Await(ctx, run, nil), "etcdCluster")
}

// TestWorkerImageFromScratch builds the worker image FROM scratch from the
// static binary, as docker-compose does, and runs it on the machine's engine.
func TestWorkerImageFromScratch(t *testing.T) {
	bin := stack.Binaries(t)
	cli := testenv.Docker(t)
	tag := "kopsdr-worker:test"
	testenv.BuildScratchImage(t, cli, tag, map[string]string{"/kopsdr-worker": filepath.Join(bin, "kopsdr-worker")}, "/kopsdr-worker")
	// Counted from here, not from before the build (which has its own 5
	// minutes): on a loaded machine the build took most of the 3 minutes,
	// and the create ran out of them.
	ctx := testenv.Context(t, 5*time.Minute)
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: tag, Cmd: []string{"--help"}}, nil, nil, nil, "")
	require.NoError(t, err)
	defer cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	require.NoError(t, cli.ContainerStart(ctx, created.ID, container.StartOptions{}))
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		require.Zero(t, w.StatusCode)
	case err := <-errC:
		t.Fatal(err)
	}
	logs, err := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	require.NoError(t, err)
	out, _ := io.ReadAll(logs)
	require.Contains(t, string(out), "kopsdr-worker [flags]")
}

// TestDevModeResumesAfterCrash kills `kopsdr-worker --dev` (server and worker
// in one process) while a backup uploads over a slow link, starts it again
// on the same data dir, and requires the status query to answer and the
// upload to be running again within 15 s of the restart.
func TestDevModeResumesAfterCrash(t *testing.T) {
	bin := stack.Binaries(t)
	s3srv := s3test.StartGoFakeS3(t, bucket)
	slow, received := throttledProxy(t, s3srv.Endpoint, 1<<20)
	env := append(s3srv.Env(), "S3_ENDPOINT="+slow)
	etcd := etcdtest.Start(t, 1)
	putRandom(t, etcd, "/registry/secrets/", 24, 1<<20) // ~24 MiB: most of half a minute on the slow link
	dataDir := t.TempDir()
	port := loopback.Ports(t, 1)[0]
	args := []string{"--dev", "--data-dir", dataDir, "--dev-port", fmt.Sprint(port), "--ui-port", "-1"}
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	dev := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env, args...)
	dev.WaitOutput(t, "kopsdr worker started", 2*time.Minute)
	c, err := client.Dial(client.Options{HostPort: addr})
	require.NoError(t, err)
	defer c.Close()
	ctx := testenv.Context(t, 5*time.Minute)
	in := workflows.EtcdBackupInput{Cluster: "dev.example.com", EtcdCluster: "main", BackupStore: "s3://" + bucket + "/dev",
		Endpoints: etcd.Endpoints, BackupOptions: tlsOf(etcd.ConnConfig())}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "backup/dev.example.com/main/crash", TaskQueue: temporalconn.TaskQueue},
		workflows.EtcdBackup, in)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return received.Load() > 3<<20 }, time.Minute, 50*time.Millisecond)
	// The status query works before the crash.
	_, err = c.QueryWorkflow(ctx, run.GetID(), "", workflows.QueryStatus)
	require.NoError(t, err)

	dev.Kill()
	dev2 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env, args...)
	dev2.WaitOutput(t, "kopsdr worker started", 2*time.Minute)
	restarted := time.Now()

	var queried, resumed time.Duration
	for queried == 0 || resumed == 0 {
		if time.Since(restarted) > time.Minute {
			break
		}
		if queried == 0 {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if _, err := c.QueryWorkflow(qctx, run.GetID(), "", workflows.QueryStatus); err == nil {
				queried = time.Since(restarted)
			}
			cancel()
		}
		if resumed == 0 {
			// A new attempt of the upload has started (bytes still drained
			// from the dead connection's buffers prove nothing).
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if d, err := c.DescribeWorkflowExecution(dctx, run.GetID(), ""); err == nil {
				for _, pa := range d.GetPendingActivities() {
					if pa.GetActivityType().GetName() == "UploadSnapshot" && pa.GetAttempt() > 1 &&
						pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
						resumed = time.Since(restarted)
					}
				}
			}
			cancel()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after the restart: status answered in %v, the upload resumed in %v", queried, resumed)
	require.NotZero(t, queried, "status never answered")
	require.NotZero(t, resumed, "the upload never resumed")
	require.Less(t, queried, 15*time.Second, "status answers within 15 s of the restart")
	require.Less(t, resumed, 15*time.Second, "the upload resumes within 15 s of the restart")
	var res workflows.EtcdBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	require.NotEmpty(t, res.Backup)
}
