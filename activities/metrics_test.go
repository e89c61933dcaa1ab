package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

// recorded is every call the interceptor made, as text.
type recorded struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorded) add(f string, a ...any) {
	r.mu.Lock()
	r.calls = append(r.calls, fmt.Sprintf(f, a...))
	r.mu.Unlock()
}
func (r *recorded) BackupSucceeded(c, e string, at time.Time, took time.Duration, n int64) {
	r.add("backup ok %s/%s at %s took %s bytes %d", c, e, at.Format(time.RFC3339), took.Round(time.Hour), n)
}
func (r *recorded) BackupFailed(c, e string) { r.add("backup failed %s/%s", c, e) }
func (r *recorded) RestoreStep(c, e, s string, took time.Duration) {
	r.add("restore step %s/%s %q took %s", c, e, s, took)
}
func (r *recorded) RestoreFailed(c, e string) { r.add("restore failed %s/%s", c, e) }

func (r *recorded) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// TestMetricsInterceptorRunsOnActivities runs two real backup activities
// through a worker with the interceptor: one that succeeds, one that fails
// for good.
func TestMetricsInterceptorRunsOnActivities(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir() + "/a.example.com/backups/etcd/main"
	s, err := backupstore.Open(ctx, url, backupstore.Options{})
	require.NoError(t, err)
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour) // the workflow started an hour ago
	name := etcdmanager.BackupName(at, 1)
	// Already finalized, with kopsdr.json recording this upload: FinalizeBackup
	// then succeeds without reading the data.
	facts, _ := json.Marshal(Facts{Backup: name, GzipBytes: 777})
	_, err = s.Put(ctx, name+"/"+etcdmanager.KopsdrFile, bytes.NewReader(facts), backupstore.PutOptions{})
	require.NoError(t, err)
	require.NoError(t, etcdmanager.WriteBackupInfo(ctx, s, name, etcdmanager.BackupInfo{EtcdVersion: "3.5.9", Timestamp: at.Unix()}, backupstore.PutOptions{}))

	rec := &recorded{}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{NewMetricsInterceptor(rec)}})
	a := &Backup{}
	env.RegisterActivity(a)

	_, err = env.ExecuteActivity(a.FinalizeBackup, FinalizeInput{Store: url, Name: name, Timestamp: at,
		Upload: UploadResult{Result: snapshot.Result{GzipBytes: 777}}})
	require.NoError(t, err)
	calls := rec.take()
	require.Equal(t, []string{"backup ok a.example.com/main at " + at.Format(time.RFC3339) + " took 1h0m0s bytes 777"}, calls)

	// A file:// root whose parent is missing is refused, non-retryably.
	missing := "file://" + t.TempDir() + "/nope/a.example.com/backups/etcd/main"
	_, err = env.ExecuteActivity(a.PrepareBackup, PrepareInput{Store: missing, Now: at, Root: missing, RootField: "backupStore"})
	require.Error(t, err)
	require.Equal(t, []string{"backup failed a.example.com/main"}, rec.take())
}

// TestRecord covers what record derives from an attempt: the cluster and
// etcd cluster from the store or the workflow id, and whether a failure is
// the last attempt.
func TestRecord(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	info := func(typ, wfID string, attempt, max int32) activity.Info {
		i := activity.Info{ActivityType: activity.Type{Name: typ}, Attempt: attempt, StartedTime: now.Add(-90 * time.Second)}
		i.WorkflowExecution.ID = wfID
		if max > 0 {
			i.RetryPolicy = &temporal.RetryPolicy{MaximumAttempts: max, NonRetryableErrorTypes: []string{ErrTypeAccessDenied}}
		}
		return i
	}
	retryable := errors.New("connection reset")
	final := temporal.NewNonRetryableApplicationError("bad input", ErrTypeInvalidInput, nil)
	denied := temporal.NewApplicationError("denied", ErrTypeAccessDenied)
	custom := "s3://bucket/somewhere" // a backup store not in kops's layout
	for _, c := range []struct {
		name string
		info activity.Info
		arg  any
		err  error
		want []string
	}{
		{"a retried failure is not yet a failed backup", info("UploadSnapshot", "backup/c1/main/20260301T100000Z", 1, 8), UploadInput{Store: custom}, retryable, nil},
		{"the last attempt is", info("UploadSnapshot", "backup/c1/main/20260301T100000Z", 8, 8), UploadInput{Store: custom}, retryable, []string{"backup failed c1/main"}},
		{"a non-retryable error is", info("PrepareBackup", "backup/c1-2026-03-01T10:00:00Z/events", 1, 8), PrepareInput{Store: custom}, final, []string{"backup failed c1/events"}},
		{"so is an error type the policy excludes", info("ReadClusterSpec", "restore/c1/safety-backup/main", 1, 8), SpecInput{Store: custom}, denied, []string{"backup failed c1/main"}},
		{"no policy: only non-retryable errors count", info("UploadSnapshot", "backup/c1/main/x", 99, 0), UploadInput{Store: custom}, retryable, nil},
		{"a workflow id of unknown shape", info("FinalizeBackup", "someone-elses-id", 1, 8), FinalizeInput{Store: custom, Timestamp: now.Add(-time.Hour)}, nil,
			[]string{"backup ok unknown/unknown at 2026-03-01T11:00:00Z took 1h0m0s bytes 0"}},
		{"other backup activities succeed silently", info("PrepareBackup", "backup/c1/main/x", 1, 8), PrepareInput{Store: custom}, nil, nil},
		{"a restore step", info("WaitRestored", "restore/c1", 1, 8), WaitInput{EtcdCluster: "events"}, nil, []string{`restore step c1/events "wait for etcd-manager" took 1m30s`}},
		{"a restore step over both etcd clusters", info("RestartEtcdManagers", "restore/c1", 1, 8), RestartInput{}, nil, []string{`restore step c1/ "restart etcd-manager" took 1m30s`}},
		{"the restore command names its etcd cluster by its store", info("WriteRestoreCommand", "restore/c1", 1, 8), CommandInput{Store: "s3://st/c1/backups/etcd/main"}, nil,
			[]string{`restore step c1/main "write restore commands" took 1m30s`}},
		{"a failed restore step", info("Preflight", "restore/c1", 1, 1), PreflightInput{}, retryable, []string{"restore failed c1/"}},
		{"a restore activity outside a restore workflow", info("Preflight", "elsewhere", 1, 1), PreflightInput{}, retryable, nil},
		{"PendingCommands is no step", info("PendingCommands", "restore/c1", 1, 1), nil, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorded{}
			record(rec, c.info, c.arg, c.err, now)
			require.Equal(t, c.want, rec.take())
		})
	}
}

func TestBackupTargetFromStore(t *testing.T) {
	c, e := backupTarget("ignored", "s3://state/a.example.com/backups/etcd/events/")
	require.Equal(t, []string{"a.example.com", "events"}, []string{c, e})
}
