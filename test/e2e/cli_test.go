package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// TestCLIBackupAndList is the operator's path: the worker binary, the CLI
// binary, a real S3 server that checks signatures (versitygw) and TLS etcd.
func TestCLIBackupAndList(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	s3 := s3test.StartVersityGW(t, bucket)
	etcd := etcdtest.Start(t, 3)
	etcdtest.Fill(t, etcd.Client(t), "/registry/pods/default/", 50, 1024)
	w := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), s3.Env(), tp.ConnFlags()...)
	w.WaitOutput(t, "kopsdr worker started", time.Minute)

	store := "s3://" + bucket + "/test.my.clusters/backups/etcd/main"
	args := append(tp.ConnFlags(), "backup", "--cluster", "test.my.clusters", "--etcd", "main",
		"--endpoints", strings.Join(etcd.Endpoints, ","), "--cacert", etcd.CACert, "--cert", etcd.ClientCert,
		"--key", etcd.ClientKey, "--backup-store", store, "--wait", "-o", "json")
	stdout, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(), args...)
	require.NoError(t, err, "stderr: %s", stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res), stdout)
	for _, f := range []string{"backup", "bytes", "sha256", "revision"} {
		require.NotEmpty(t, res[f], "field %s in %s", f, stdout)
	}

	stdout, stderr, err = stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(), "list-backups", "--backup-store", store)
	require.NoError(t, err, stderr)
	require.Equal(t, []string{res["backup"].(string), "never", "drilled"}, strings.Fields(stdout))
	stdout, _, err = stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(),
		"list-backups", "--state-store", "s3://"+bucket, "--cluster", "test.my.clusters", "--etcd", "main", "-o", "json")
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`[{"name": %q, "verified": "never"}]`, res["backup"]), stdout)
}

// TestScheduleFiresAndBacksUp creates a schedule with the CLI and waits for
// it to back up main and events on its own.
func TestScheduleFiresAndBacksUp(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	s3.Setenv(t)
	k := startKopsCluster(t, 1)
	ctx := testenv.Context(t, 3*time.Minute)
	cli := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), s3.Env(), append(tp.ConnFlags(), args...)...)
		require.NoError(t, err, "kopsdr %v: %s", args, stderr)
		return stdout
	}
	c := k.main.ConnConfig()
	cli("schedule", "create", "--cluster", k.name, "--state-store", "s3://"+bucket,
		"--main-endpoints", k.main.Endpoints[0], "--events-endpoints", k.events.Endpoints[0],
		"--cacert", c.CACert, "--cert", c.Cert, "--key", c.Key, "--every", "5s")

	for _, ec := range []string{"main", "events"} {
		store, err := backupstore.Open(ctx, fmt.Sprintf("s3://%s/%s/backups/etcd/%s", bucket, k.name, ec), backupstore.Options{})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			names, err := etcdmanager.ListBackups(ctx, store)
			return err == nil && len(names) > 0
		}, 2*time.Minute, 500*time.Millisecond, "the schedule backs up %s", ec)
	}
	var desc struct {
		Paused  bool              `json:"paused"`
		Actions int64             `json:"actions"`
		Recent  []json.RawMessage `json:"recent"`
	}
	require.NoError(t, json.Unmarshal([]byte(cli("schedule", "describe", k.name, "-o", "json")), &desc))
	require.GreaterOrEqual(t, desc.Actions, int64(1))
	require.Contains(t, cli("schedule", "list"), "backup/"+k.name)
	// describe says how each recent run ended; the first one completes.
	var runs struct {
		Recent []struct {
			WorkflowID string `json:"workflowId"`
			Outcome    string `json:"outcome"`
		} `json:"recent"`
	}
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(cli("schedule", "describe", k.name, "-o", "json")), &runs))
		return len(runs.Recent) > 0 && runs.Recent[0].Outcome == "completed"
	}, time.Minute, 500*time.Millisecond, "the first scheduled backup completes: %+v", runs.Recent)
	// A backup that read its retention from the state store (a version
	// marker in its history), for the replay tests.
	stack.RecordHistory(t, ctx, tp.Client, runs.Recent[0].WorkflowID, "", "scheduled-cluster-backup")
	stack.RecordHistory(t, ctx, tp.Client, runs.Recent[0].WorkflowID+"/main", "", "scheduled-etcd-backup")

	cli("schedule", "pause", k.name, "--note", "maintenance")
	require.NoError(t, json.Unmarshal([]byte(cli("schedule", "describe", k.name, "-o", "json")), &desc))
	require.True(t, desc.Paused)
	cli("schedule", "delete", k.name)
	require.NotContains(t, cli("schedule", "list"), "backup/"+k.name)
}

// TestWorkerKilledMidUpload kills the worker process while the snapshot is
// being uploaded (a multipart upload is open), starts a new one, and checks
// the workflow finishes with exactly one backup and nothing partial left.
func TestWorkerKilledMidUpload(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	s3srv := s3test.StartGoFakeS3(t, bucket)
	// A slow link to the store makes "mid-upload" last long enough to hit.
	slow, received := throttledProxy(t, s3srv.Endpoint, 1<<20)
	env := append(s3srv.Env(), "S3_ENDPOINT="+slow)
	etcd := etcdtest.Start(t, 1)
	putRandom(t, etcd, "/registry/secrets/", 12, 1<<20) // ~12 MiB that gzip cannot shrink: two parts
	ctx := testenv.Context(t, 5*time.Minute)

	w1 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env, tp.ConnFlags()...)
	w1.WaitOutput(t, "kopsdr worker started", time.Minute)
	store := "s3://" + bucket + "/c/backups/etcd/main"
	in := workflows.EtcdBackupInput{Cluster: "c", EtcdCluster: "main", BackupStore: store, Endpoints: etcd.Endpoints,
		BackupOptions: tlsOf(etcd.ConnConfig())}
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "backup/c/main/kill", TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup, in)
	require.NoError(t, err)

	require.Eventually(t, func() bool { return received.Load() > 3<<20 }, time.Minute, 50*time.Millisecond)
	w1.Kill()
	ups, err := s3srv.Client(t).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	require.NotEmpty(t, ups.Uploads, "the worker died with a multipart upload open")

	w2 := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), s3srv.Env(), tp.ConnFlags()...)
	w2.WaitOutput(t, "kopsdr worker started", time.Minute)
	var res workflows.EtcdBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))

	s3srv.Setenv(t)
	st, err := backupstore.Open(ctx, store, backupstore.Options{})
	require.NoError(t, err)
	names, err := etcdmanager.ListBackups(ctx, st)
	require.NoError(t, err)
	require.Equal(t, []string{res.Backup}, names)
	objs, err := st.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, objs, 4, "only the backup's data, meta, kopsdr.json and reservation: %v", objs)
	for _, o := range objs {
		require.True(t, strings.HasPrefix(o.Key, res.Backup+"/"), o.Key)
	}
	ups, err = s3srv.Client(t).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	require.Empty(t, ups.Uploads, "incomplete multipart uploads are aborted")
	v, err := snapshot.VerifyGzip(bytes.NewReader(readAll(t, ctx, st, res.Backup+"/etcd.backup.gz")))
	require.NoError(t, err)
	require.Equal(t, res.SHA256, v.GzipSHA256)
}

// putRandom puts n keys of size random bytes: data gzip cannot shrink.
func putRandom(t *testing.T, c *etcdtest.Cluster, prefix string, n, size int) {
	cli := c.Client(t)
	for i := range n {
		buf := make([]byte, size)
		_, _ = rand.Read(buf)
		_, err := cli.Put(t.Context(), fmt.Sprintf("%s%04d", prefix, i), string(buf))
		require.NoError(t, err)
	}
}

// throttledProxy forwards to target, reading request bodies at most
// bytesPerSec: a real S3 server behind a slow network. received counts the
// body bytes that went through.
func throttledProxy(t *testing.T, target string, bytesPerSec int) (string, *atomic.Int64) {
	received := &atomic.Int64{}
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = io.NopCloser(&slowReader{r: r.Body, rate: bytesPerSec, n: received})
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, received
}

type slowReader struct {
	r    io.Reader
	rate int
	n    *atomic.Int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	n, err := s.r.Read(p)
	s.n.Add(int64(n))
	time.Sleep(time.Duration(n) * time.Second / time.Duration(s.rate))
	return n, err
}
