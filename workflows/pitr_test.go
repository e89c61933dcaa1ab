package workflows

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/workflows/api"
)

var captureIn = api.ChangeCaptureInput{Cluster: "c.example.com", StateStore: "s3://state", Endpoints: []string{"https://127.0.0.1:4001"}}

// captureEnv stubs the capture activities: a chain is open, and every
// turn of capture ends normally.
func captureEnv(t *testing.T, open activities.OpenChainResult) (*testsuite.TestWorkflowEnvironment, *activities.PITR) {
	env := newEnv()
	a := &activities.PITR{}
	env.RegisterActivity(a)
	env.RegisterWorkflow(EtcdBackup)
	env.OnActivity(a.OpenChain, mock.Anything, mock.Anything).Return(open, nil)
	env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(activities.CaptureResult{Head: changelog.Head{Revision: 42}}, nil)
	env.OnActivity(a.PruneChanges, mock.Anything, mock.Anything).Return(changelog.RetentionPlan{}, nil)
	return env, a
}

// A run continued from yesterday's takes one full backup first, so every
// day of changes has a base near it; then it captures for a day and
// continues as new.
func TestCaptureTakesADailyBase(t *testing.T) {
	env, _ := captureEnv(t, activities.OpenChainResult{Chain: "chain-1", LastRevision: 41})
	env.SetContinuedExecutionRunID("yesterday")
	backups := 0
	env.OnWorkflow(EtcdBackup, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in api.EtcdBackupInput) (*api.EtcdBackupResult, error) {
		backups++
		require.True(t, in.NoPrune)
		return &api.EtcdBackupResult{Backup: "2026-11-30T00:00:00Z-000001", Revision: 41}, nil
	})
	env.ExecuteWorkflow(ChangeCapture, captureIn)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "%v", env.GetWorkflowError())
	require.Equal(t, 1, backups, "one daily base per run")
}

// The first run on an open chain (a worker upgrade, not a new day) takes
// no extra backup.
func TestCaptureFirstRunTakesNoExtraBase(t *testing.T) {
	env, _ := captureEnv(t, activities.OpenChainResult{Chain: "chain-1", LastRevision: 41})
	backups := 0
	env.OnWorkflow(EtcdBackup, mock.Anything, mock.Anything).Return(func(workflow.Context, api.EtcdBackupInput) (*api.EtcdBackupResult, error) {
		backups++
		return &api.EtcdBackupResult{}, nil
	})
	env.ExecuteWorkflow(ChangeCapture, captureIn)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "%v", env.GetWorkflowError())
	require.Zero(t, backups)
}

// etcd down while a chain must start: capture waits and tries again
// instead of ending; bad input ends it.
func TestCaptureRetriesAChainStart(t *testing.T) {
	env, a := captureEnv(t, activities.OpenChainResult{})
	attempts := 0
	env.OnWorkflow(EtcdBackup, mock.Anything, mock.Anything).Return(func(workflow.Context, api.EtcdBackupInput) (*api.EtcdBackupResult, error) {
		attempts++
		if attempts == 1 {
			return nil, temporal.NewApplicationError("etcd at [https://127.0.0.1:4001] is unreachable", api.ErrTypeEtcdUnreachable)
		}
		return &api.EtcdBackupResult{Backup: "2026-11-30T00:00:00Z-000001", Revision: 41}, nil
	})
	started := 0
	env.OnActivity(a.StartChain, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StartChainInput) (string, error) {
		started++
		require.EqualValues(t, 41, in.BaseRevision)
		return "chain-1", nil
	})
	env.ExecuteWorkflow(ChangeCapture, captureIn)
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "%v", env.GetWorkflowError())
	require.GreaterOrEqual(t, attempts, 2, "the failed start was tried again")
	require.Positive(t, started)

	env, _ = captureEnv(t, activities.OpenChainResult{})
	env.OnWorkflow(EtcdBackup, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("invalid cacert", api.ErrTypeInvalidInput, nil))
	env.ExecuteWorkflow(ChangeCapture, captureIn)
	require.ErrorContains(t, env.GetWorkflowError(), "invalid cacert", "bad input ends capture")
}

// TestMakeBackupDiscardsItsNameWhenTheSpecCannotBeRead: the name is
// reserved (an object in its folder) before the spec is read, so a spec
// read that fails for good discards that folder before the run fails.
func TestMakeBackupDiscardsItsNameWhenTheSpecCannotBeRead(t *testing.T) {
	env := newEnv()
	p, b := &activities.PITR{}, &activities.Backup{}
	env.RegisterActivity(p)
	env.RegisterActivity(b)
	env.OnActivity(p.ResolvePoint, mock.Anything, mock.Anything).Return(api.PointPlan{Revision: 42}, nil)
	env.OnActivity(b.PrepareBackup, mock.Anything, mock.Anything).Return(activities.PrepareResult{Name: "2026-11-30T07:15:00Z-000001"}, nil)
	env.OnActivity(b.ReadClusterSpec, mock.Anything, mock.Anything).Return(activities.ClusterSpecInfo{},
		temporal.NewNonRetryableApplicationError("access denied", activities.ErrTypeAccessDenied, nil))
	var discarded []activities.DiscardInput
	env.OnActivity(b.DiscardIncomplete, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DiscardInput) (int, error) {
		discarded = append(discarded, in)
		return 1, nil
	})
	env.ExecuteWorkflow(MakeBackup, api.MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://state", Revision: 42})
	require.True(t, env.IsWorkflowCompleted())
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, activities.ErrTypeAccessDenied, ae.Type())
	require.Equal(t, []activities.DiscardInput{{Store: "s3://state/c.example.com/backups/etcd/main", Name: "2026-11-30T07:15:00Z-000001"}}, discarded)
}
