package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
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
	port, uiPort := freePort(t), freePort(t)
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
	ctx := stack.Context(t, time.Minute)
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
	require.ErrorContains(t, run.Get(ctx, nil), "etcdCluster")
}

// TestWorkerImageFromScratch builds the worker image FROM scratch from the
// static binary, as docker-compose does, and runs it on the machine's engine.
func TestWorkerImageFromScratch(t *testing.T) {
	bin := stack.Binaries(t)
	cli := stack.Docker(t)
	ctx := stack.Context(t, 3*time.Minute)
	tag := "kopsdr-worker:test"
	stack.BuildScratchImage(t, cli, tag, map[string]string{"/kopsdr-worker": filepath.Join(bin, "kopsdr-worker")}, "/kopsdr-worker")
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

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
