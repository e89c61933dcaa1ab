package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/benchtable"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// fleetUploadRate is how fast the workers' uploads reach the S3 server, per
// request: a backup of main (about 20 MiB of etcd, a few MiB gzipped) then
// uploads for several seconds, so the test can kill a worker mid-upload
// however fast or loaded the machine is.
const fleetUploadRate = 256 << 10

// TestWorkersShareAndSurviveAKill runs three kopsdr-worker processes on one
// Temporal server and task queue and starts twelve backups at once (main
// and events of six kops clusters, each into its own store). It SIGKILLs a
// worker while it uploads a backup: that upload times out on its heartbeat
// and is retried by one of the other two, every backup finishes exactly
// once (one complete folder per store, nothing partial left), every backup
// verifies, and the surviving workers both did some of the work.
func TestWorkersShareAndSurviveAKill(t *testing.T) {
	bin := stack.Binaries(t)
	tp := stack.StartTemporal(t)
	s3srv := s3test.StartVersityGW(t, bucket)
	s3srv.Setenv(t) // the test's own reads go straight to the gateway
	env := append(s3srv.Env(), "S3_ENDPOINT="+slowUploads(t, s3srv.Endpoint, fleetUploadRate))
	k := startKopsCluster(t, 3)
	etcdtest.Fill(t, k.main.Client(t), "/registry/configmaps/fleet/", 10000, 2048) // 20 MiB
	etcdtest.Fill(t, k.events.Client(t), "/registry/events/fleet/", 4000, 1024)    // 4 MiB
	ctx := testenv.Context(t, 5*time.Minute)

	// Three workers, at most 6 activities each: twelve uploads at once
	// need at least two of them.
	workers := map[string]*stack.Proc{}
	for range 3 {
		p := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), env,
			append(tp.ConnFlags(), "--max-concurrent-activities", "6")...)
		p.WaitOutput(t, "kopsdr worker started", time.Minute)
		workers[workerIdentity(t, p)] = p
	}
	require.Len(t, workers, 3, "three distinct worker identities")

	type backup struct {
		id, etcd string
		run      client.WorkflowRun
	}
	var backups []backup
	now := time.Now()
	for i := 1; i <= 6; i++ {
		cluster := fmt.Sprintf("c%d.fleet.example.com", i)
		for _, ec := range []struct {
			name string
			c    *etcdtest.Cluster
		}{{"main", k.main}, {"events", k.events}} {
			in := workflows.EtcdBackupInput{Cluster: cluster, EtcdCluster: ec.name, StateStore: "s3://" + bucket,
				Endpoints: ec.c.Endpoints, BackupOptions: tlsOf(ec.c.ConnConfig())}
			in.NoPrune = true
			id := api.BackupWorkflowID(cluster, ec.name, now)
			run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: temporalconn.TaskQueue},
				workflows.EtcdBackup, in)
			require.NoError(t, err)
			backups = append(backups, backup{id, ec.name, run})
		}
	}

	// Wait until every backup is past PrepareBackup and ReadClusterSpec
	// (no heartbeat: a dead worker's attempt of those waits out their
	// 2-minute start-to-close) and a worker is uploading a backup of main;
	// that worker is the one to kill, with everything it is running.
	pastSpec := map[string]bool{}
	var victim string
	var held []pendingActivity
	waitFor(t, 2*time.Minute, "every backup past its cluster spec, and an upload of main running", func() bool {
		for _, b := range backups {
			if !pastSpec[b.id] && len(activitiesScheduled(t, ctx, tp, b.id, "UploadSnapshot")) > 0 {
				pastSpec[b.id] = true
			}
		}
		if len(pastSpec) < len(backups) {
			return false
		}
		running := map[string][]pendingActivity{}
		var candidates []string
		for _, b := range backups {
			for _, a := range pendingActivities(t, ctx, tp, b.id) {
				if a.state != enumspb.PENDING_ACTIVITY_STATE_STARTED {
					continue
				}
				running[a.worker] = append(running[a.worker], a)
				if b.etcd == "main" && a.activity == "UploadSnapshot" && a.attempt == 1 && workers[a.worker] != nil {
					candidates = append(candidates, a.worker)
				}
			}
		}
		if len(candidates) == 0 {
			return false
		}
		victim = candidates[0]
		held = running[victim]
		return true
	})
	killedAt := time.Now()
	workers[victim].Kill()
	for _, a := range held {
		require.Contains(t, []string{"UploadSnapshot", "FinalizeBackup"}, a.activity,
			"the killed worker held only activities a heartbeat timeout frees")
		t.Logf("killed %s while it ran %s of %s (attempt %d)", victim, a.activity, a.workflowID, a.attempt)
	}

	// Each of them starts again on another worker once its heartbeat
	// timeout (20 s) and the retry's backoff (2 s) have passed.
	retried := map[string]pendingActivity{}
	waitFor(t, 2*time.Minute, "the killed worker's activities started elsewhere", func() bool {
		for _, h := range held {
			if _, ok := retried[h.workflowID+"/"+h.activityID]; ok {
				continue
			}
			gone := true
			for _, a := range pendingActivities(t, ctx, tp, h.workflowID) {
				if a.activityID == h.activityID {
					gone = false
					// A later attempt than the one killed: under load, the
					// victim may have been running a second attempt already.
					if a.state == enumspb.PENDING_ACTIVITY_STATE_STARTED && a.attempt > h.attempt {
						retried[h.workflowID+"/"+h.activityID] = a
					}
				}
			}
			if gone { // finished between two looks: the history tells the rest
				retried[h.workflowID+"/"+h.activityID] = pendingActivity{}
			}
		}
		return len(retried) == len(held)
	})
	for _, h := range held {
		if a := retried[h.workflowID+"/"+h.activityID]; a.worker != "" {
			require.NotEqual(t, victim, a.worker)
			t.Logf("%s of %s: attempt %d started on %s %.1fs after the kill", h.activity, h.workflowID,
				a.attempt, a.worker, a.started.Sub(killedAt).Seconds())
		}
	}

	for _, b := range backups {
		var res workflows.EtcdBackupResult
		require.NoError(t, temporalconn.Await(ctx, b.run, &res), b.id)
	}
	finishedAt := time.Now()

	// Histories: who ran each activity's last attempt, and when; the
	// killed worker's activities were retried by the others after a
	// heartbeat timeout.
	perWorker := map[string]map[string]int{} // identity -> activity type -> count
	var retryAfter []time.Duration           // when each held activity started again, after the kill
	uploads := map[string][]string{}         // identity -> workflow ids of the uploads it finished
	for _, b := range backups {
		for _, s := range activityStarts(t, ctx, tp, b.id) {
			if perWorker[s.worker] == nil {
				perWorker[s.worker] = map[string]int{}
			}
			perWorker[s.worker][s.activity]++
			if s.activity == "UploadSnapshot" {
				uploads[s.worker] = append(uploads[s.worker], b.id)
			}
			for _, h := range held {
				if h.workflowID != b.id || h.activityID != s.activityID {
					continue
				}
				if s.worker == victim && s.attempt == h.attempt {
					// It finished between the last look and the kill (a
					// loaded machine widens that gap): the victim reported
					// it done before SIGKILL landed, so there was nothing
					// to retry. Exactly once still holds; the stores below
					// check it.
					t.Logf("history: %s of %s finished by %s before the kill", s.activity, b.id, s.worker)
					continue
				}
				require.NotEqual(t, victim, s.worker, "%s of %s", s.activity, b.id)
				require.Contains(t, workers, s.worker)
				require.Greater(t, s.attempt, h.attempt, "%s of %s was retried", s.activity, b.id)
				require.Equal(t, enumspb.TIMEOUT_TYPE_HEARTBEAT, s.lastFailure,
					"%s of %s: the killed worker's attempt timed out on its heartbeat", s.activity, b.id)
				t.Logf("history: %s of %s finished by %s on attempt %d, started %.1fs after the kill",
					s.activity, b.id, s.worker, s.attempt, s.at.Sub(killedAt).Seconds())
				retryAfter = append(retryAfter, s.at.Sub(killedAt))
			}
		}
	}
	require.NotEmpty(t, retryAfter, "at least one of the killed worker's activities was retried elsewhere")
	for _, h := range held {
		found := false
		for _, s := range activityStarts(t, ctx, tp, h.workflowID) {
			found = found || s.activityID == h.activityID
		}
		require.True(t, found, "%s of %s completed", h.activity, h.workflowID)
	}
	var survivors []string
	ids := make([]string, 0, len(workers))
	for id := range workers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		role := "survived"
		if id == victim {
			role = "killed"
		} else if len(perWorker[id]) > 0 {
			survivors = append(survivors, id)
		}
		t.Logf("worker %s (%s): activities %v, uploads of %v", id, role, perWorker[id], uploads[id])
	}
	for id := range perWorker {
		require.Contains(t, workers, id, "only the three workers ran activities")
	}
	require.Len(t, survivors, 2, "both surviving workers ran activities")
	t.Logf("kill at +%.1fs after the start, all %d backups finished %.1fs after the kill",
		killedAt.Sub(now).Seconds(), len(backups), finishedAt.Sub(killedAt).Seconds())

	// The stores: one complete backup each, the one its workflow names;
	// no folder without its meta, no upload left open, nothing else.
	want := map[string]bool{}
	for _, b := range backups {
		var res workflows.EtcdBackupResult
		require.NoError(t, temporalconn.Await(ctx, b.run, &res))
		store := openStore(t, ctx, res.Store)
		names, err := etcdmanager.ListBackups(ctx, store)
		require.NoError(t, err)
		require.Equal(t, []string{res.Backup}, names, "%s holds exactly its one backup", res.Store)
		data := readAll(t, ctx, store, res.Backup+"/"+etcdmanager.DataFile)
		v, err := snapshot.VerifyGzip(bytes.NewReader(data))
		require.NoError(t, err, "%s/%s verifies", res.Store, res.Backup)
		require.Equal(t, res.SHA256, v.GzipSHA256)
		require.Equal(t, res.RawSHA256, v.RawSHA256)
		want[strings.TrimPrefix(res.Store, "s3://"+bucket+"/")+"/"+res.Backup] = true
	}
	require.Len(t, want, len(backups))
	folders := map[string][]string{}
	for _, key := range allObjects(t, ctx, s3srv) {
		folders[path.Dir(key)] = append(folders[path.Dir(key)], path.Base(key))
	}
	for dir, files := range folders {
		require.True(t, want[dir], "object folder %s is one of the backups", dir)
		slices.Sort(files)
		require.Equal(t, []string{etcdmanager.MetaFile, etcdmanager.DataFile, etcdmanager.ReservationFile, etcdmanager.KopsdrFile}, files, dir)
	}
	require.Len(t, folders, len(want))
	mp, err := s3srv.Client(t).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	require.Empty(t, mp.Uploads, "no multipart upload left open")

	// make bench's row, once every check above has passed.
	if os.Getenv(benchtable.Env) != "" {
		slices.Sort(retryAfter)
		moved := 0
		for _, a := range held {
			if a.activity == "UploadSnapshot" {
				moved++
			}
		}
		require.NoError(t, benchtable.Record(benchtable.Row{Group: "workers",
			What: "3 workers, one SIGKILLed mid-upload",
			Size: fmt.Sprintf("%d backups (6 clusters, main and events)", len(backups)),
			Time: fmt.Sprintf("retried elsewhere %.1f-%.1f s after the kill; all %d done %.1f s after it",
				retryAfter[0].Seconds(), retryAfter[len(retryAfter)-1].Seconds(), len(backups), finishedAt.Sub(killedAt).Seconds()),
			Note: fmt.Sprintf("%d uploads moved from the killed worker (of the %d activities it held; 20 s heartbeat timeout + 2 s backoff); "+
				"exactly once: %d complete backups, no partial folder, no open multipart upload", moved, len(held), len(want)),
		}))
	}
}

// slowUploads serves the S3 server at endpoint through a reverse proxy
// that passes each PUT's body at rate bytes a second, and returns its URL.
func slowUploads(t *testing.T, endpoint string, rate int64) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	require.NoError(t, err)
	p := httputil.NewSingleHostReverseProxy(u) // keeps the Host header the client signed
	p.ErrorLog = log.New(io.Discard, "", 0)    // a killed worker's upload ends mid-body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Body != nil {
			r.Body = &slowBody{ReadCloser: r.Body, start: time.Now(), rate: rate}
		}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type slowBody struct {
	io.ReadCloser
	start time.Time
	n     int64
	rate  int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	time.Sleep(time.Until(b.start.Add(time.Duration(b.n * int64(time.Second) / b.rate))))
	return n, err
}

var workerIDRE = regexp.MustCompile(`msg="Started Worker".* WorkerID=("(?:[^"\\]|\\.)*"|\S+)`)

// workerIdentity is the identity a kopsdr-worker process polls with, as
// the Temporal SDK logged it when the worker started.
func workerIdentity(t *testing.T, p *stack.Proc) string {
	t.Helper()
	m := workerIDRE.FindStringSubmatch(p.Output())
	require.NotNil(t, m, "no Started Worker line with a WorkerID:\n%s", p.Output())
	id := m[1]
	if strings.HasPrefix(id, `"`) {
		var err error
		id, err = strconv.Unquote(id)
		require.NoError(t, err)
	}
	return id
}

// waitFor polls cond, in the test's goroutine, until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: no %s", d, what)
		}
	}
}

// pendingActivity is an activity of a workflow not finished yet; when it
// is started, worker runs its attempt.
type pendingActivity struct {
	workflowID, activityID, activity, worker string
	state                                    enumspb.PendingActivityState
	attempt                                  int32
	started                                  time.Time
}

func pendingActivities(t *testing.T, ctx context.Context, tp *stack.Temporal, workflowID string) []pendingActivity {
	t.Helper()
	d, err := tp.Client.DescribeWorkflowExecution(ctx, workflowID, "")
	require.NoError(t, err)
	var out []pendingActivity
	for _, pa := range d.GetPendingActivities() {
		out = append(out, pendingActivity{workflowID, pa.GetActivityId(), pa.GetActivityType().GetName(),
			pa.GetLastWorkerIdentity(), pa.GetState(), pa.GetAttempt(), pa.GetLastStartedTime().AsTime()})
	}
	return out
}

// activitiesScheduled are the ids of a workflow's activities of type name
// scheduled so far.
func activitiesScheduled(t *testing.T, ctx context.Context, tp *stack.Temporal, workflowID, name string) []string {
	t.Helper()
	var ids []string
	it := tp.Client.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == name {
			ids = append(ids, a.GetActivityId())
		}
	}
	return ids
}

// activityStart is the last attempt of an activity, as the history
// records it: who ran it, which attempt, when it started, and how the
// attempt before it ended if it timed out.
type activityStart struct {
	activityID, activity, worker string
	attempt                      int32
	at                           time.Time
	lastFailure                  enumspb.TimeoutType
}

func activityStarts(t *testing.T, ctx context.Context, tp *stack.Temporal, workflowID string) []activityStart {
	t.Helper()
	type sched struct{ id, name string }
	scheduled := map[int64]sched{}
	var out []activityStart
	it := tp.Client.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.GetEventId()] = sched{a.GetActivityId(), a.GetActivityType().GetName()}
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
			s := scheduled[a.GetScheduledEventId()]
			out = append(out, activityStart{s.id, s.name, a.GetIdentity(), a.GetAttempt(), e.GetEventTime().AsTime(),
				a.GetLastFailure().GetTimeoutFailureInfo().GetTimeoutType()})
		}
	}
	return out
}

// allObjects lists every key in the bucket.
func allObjects(t *testing.T, ctx context.Context, srv *s3test.Server) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(srv.Client(t), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}
