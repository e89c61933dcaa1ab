package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/restart"
)

// These unit tests use Temporal's test environment with the activities
// stubbed, to check the workflow's own decisions quickly; the end-to-end
// tests in test/e2e run the real activities against real systems.

func restoreInput() EtcdManagerRestoreInput {
	return EtcdManagerRestoreInput{
		Cluster: "c.example.com", StateStore: "s3://state",
		Main:    RestoreTarget{Endpoints: []string{"https://10.0.1.10:4001"}},
		Events:  RestoreTarget{Endpoints: []string{"https://10.0.1.10:4002"}},
		Masters: []MasterInput{{Name: "ip-10-0-1-10", Docker: "tcp://10.0.1.10:2376", IP: "10.0.1.10"}},
	}
}

// newEnv is Temporal's test environment with the deadlock detector's
// limit raised: it measures wall time, so a loaded machine (make test runs
// packages in parallel) trips its 1 s default though no workflow blocks.
func newEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	return env
}

func restoreEnv(t *testing.T, id string) (*testsuite.TestWorkflowEnvironment, *activities.Restore) {
	env := newEnv()
	env.RegisterWorkflow(EtcdBackup)
	a := &activities.Restore{}
	env.RegisterActivity(a)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: id})
	env.OnActivity(a.Preflight, mock.Anything, mock.Anything).Return(activities.PreflightResult{
		Clusters: []activities.ClusterFacts{
			{EtcdCluster: "main", Store: "s3://state/c.example.com/backups/etcd/main", Backup: "2026-11-20T10:00:00Z-000001", ClusterSpec: etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: "3.5.9"}},
			{EtcdCluster: "events", Store: "s3://state/c.example.com/backups/etcd/events", Backup: "2026-11-20T10:00:00Z-000001", ClusterSpec: etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: "3.5.9"}},
		},
	}, nil)
	return env, a
}

func requireAppErr(t *testing.T, err error, typ string) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.Equal(t, typ, appErr.Type(), "%v", err)
	return appErr
}

func TestRestoreRefusesAnotherWorkflowID(t *testing.T) {
	env, _ := restoreEnv(t, "my-restore")
	env.ExecuteWorkflow(EtcdManagerRestore, restoreInput())
	appErr := requireAppErr(t, env.GetWorkflowError(), "InvalidInput")
	require.Contains(t, appErr.Error(), `"restore/c.example.com"`)
}

func TestRestoreInputErrors(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*EtcdManagerRestoreInput)
		field  string
	}{
		{func(in *EtcdManagerRestoreInput) { in.Masters = nil }, "masters"},
		{func(in *EtcdManagerRestoreInput) { in.Masters[0].Docker = "" }, "masters[0].docker"},
		{func(in *EtcdManagerRestoreInput) { in.Events.Endpoints = nil }, "events.endpoints"},
		{func(in *EtcdManagerRestoreInput) { in.StateStore = "" }, "stateStore"},
		{func(in *EtcdManagerRestoreInput) { in.Masters[0].IP = "" }, "liveMasterIPs"},
		{func(in *EtcdManagerRestoreInput) { in.ApprovalTimeout = "tomorrow" }, "approvalTimeout"},
	} {
		env, _ := restoreEnv(t, "restore/c.example.com")
		in := restoreInput()
		tc.mutate(&in)
		env.ExecuteWorkflow(EtcdManagerRestore, in)
		appErr := requireAppErr(t, env.GetWorkflowError(), "InvalidInput")
		require.True(t, appErr.NonRetryable())
		require.Contains(t, appErr.Error(), "invalid "+tc.field)
	}
}

// Without approval the restore ends at the timeout having written nothing.
func TestRestoreApprovalTimesOut(t *testing.T) {
	env, a := restoreEnv(t, "restore/c.example.com")
	env.OnActivity(a.WriteRestoreCommand, mock.Anything, mock.Anything).Return(nil, errors.New("must not be called")).Maybe()
	in := restoreInput()
	in.ApprovalTimeout = "1h"
	env.ExecuteWorkflow(EtcdManagerRestore, in)
	requireAppErr(t, env.GetWorkflowError(), ErrTypeApprovalTimedOut)
	env.AssertNotCalled(t, "WriteRestoreCommand", mock.Anything, mock.Anything)
}

// An approval signal sent while the restore waits is taken and recorded,
// and the restore goes on through every step.
func TestRestoreApprovedBySignal(t *testing.T) {
	env, a := restoreEnv(t, "restore/c.example.com")
	env.OnActivity(a.WriteRestoreCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{Command: "2026-11-20T10:05:00Z-000000"}, nil)
	base := []activities.Baseline{{Master: "a", EtcdCluster: "main", Containers: []restart.Container{{ID: "c1", Running: true}}}}
	env.OnActivity(a.RecordBaseline, mock.Anything, mock.Anything).Return(activities.BaselineResult{Baselines: base}, nil)
	// Every restart attempt proves against the baseline in history.
	env.OnActivity(a.RestartEtcdManagers, mock.Anything, mock.MatchedBy(func(in activities.RestartInput) bool {
		return len(in.Baselines) == 1 && in.Baselines[0].Containers[0].ID == "c1"
	})).Return(activities.RestartResult{}, nil)
	env.OnActivity(a.WaitRestored, mock.Anything, mock.Anything).Return(activities.WaitResult{Members: 1}, nil)
	env.OnActivity(a.CleanMasterLeases, mock.Anything, mock.Anything).Return(activities.LeaseResult{Deleted: []string{"/registry/masterleases/10.0.0.9"}}, nil)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalApprove, Approval{By: "alice", Comment: "first look"})
	}, time.Minute)
	in := restoreInput()
	in.NoSafetyBackup = true
	env.ExecuteWorkflow(EtcdManagerRestore, in)
	require.NoError(t, env.GetWorkflowError())
	var res EtcdManagerRestoreResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "alice", res.Approval.By)
	require.Equal(t, []string{"/registry/masterleases/10.0.0.9"}, res.LeasesDeleted)
	require.Equal(t, "2026-11-20T10:05:00Z-000000", res.Commands["main"])
}

// TestRestoreOnlyMain: etcdClusters ["main"] checks, plans and restarts
// main alone; events is not even asked for endpoints.
func TestRestoreOnlyMain(t *testing.T) {
	env := newEnv()
	a := &activities.Restore{}
	env.RegisterActivity(a)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "restore/c.example.com"})
	onlyMain := mock.MatchedBy(func(in activities.PreflightInput) bool {
		return len(in.Clusters) == 1 && in.Clusters[0].EtcdCluster == "main"
	})
	env.OnActivity(a.Preflight, mock.Anything, onlyMain).Return(activities.PreflightResult{
		Clusters: []activities.ClusterFacts{{EtcdCluster: "main", Store: "s3://state/c.example.com/backups/etcd/main",
			Backup: "2026-11-20T10:00:00Z-000001", ClusterSpec: etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: "3.5.9"}}},
	}, nil)
	in := restoreInput()
	in.EtcdClusters, in.Events, in.DryRun = []string{"main"}, RestoreTarget{}, true
	env.ExecuteWorkflow(EtcdManagerRestore, in)
	require.NoError(t, env.GetWorkflowError())
	var res EtcdManagerRestoreResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Len(t, res.Plan.Backups, 1)
	require.Equal(t, "main", res.Plan.Backups[0].EtcdCluster)
}

// TestRestoreFailureNamesQueuedCommands: a restore that fails after it
// queued its commands says which are still queued and how to withdraw
// them, and keeps its error type.
func TestRestoreFailureNamesQueuedCommands(t *testing.T) {
	env, a := restoreEnv(t, "restore/c.example.com")
	env.OnActivity(a.WriteRestoreCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{Command: "2026-11-20T10:05:00Z-000000"}, nil)
	env.OnActivity(a.RecordBaseline, mock.Anything, mock.Anything).Return(activities.BaselineResult{}, nil)
	env.OnActivity(a.RestartEtcdManagers, mock.Anything, mock.Anything).Return(activities.RestartResult{}, nil)
	env.OnActivity(a.WaitRestored, mock.Anything, mock.Anything).Return(activities.WaitResult{},
		temporal.NewNonRetryableApplicationError("etcd main not restored after 15m0s", activities.ErrTypeRestoreTimeout, nil))
	env.OnActivity(a.PendingCommands, mock.Anything, mock.MatchedBy(func(in activities.PendingCommandsInput) bool {
		return in.Cluster == "c.example.com" && len(in.Stores) == 2
	})).Return(activities.PendingCommandsResult{Message: "a restore command is still queued in s3://state/c.example.com/backups/etcd/main: kopsdr restore withdraw --cluster c.example.com"}, nil)
	in := restoreInput()
	in.NoSafetyBackup, in.Approve = true, true
	env.ExecuteWorkflow(EtcdManagerRestore, in)
	appErr := requireAppErr(t, env.GetWorkflowError(), activities.ErrTypeRestoreTimeout)
	require.Contains(t, appErr.Error(), "etcd main not restored")
	require.Contains(t, appErr.Error(), "kopsdr restore withdraw --cluster c.example.com")
}
