package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/activities"
)

// backupEnv stubs every backup activity; prune records what it got.
func backupEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Backup, *activities.RetainAndPruneInput) {
	env := newEnv()
	a := &activities.Backup{}
	env.RegisterActivity(a)
	env.OnActivity(a.PrepareBackupAndReadSpec, mock.Anything, mock.Anything).Return(activities.PreparedBackup{Name: "2026-11-21T12:00:00Z-000001"}, nil)
	env.OnActivity(a.UploadSnapshot, mock.Anything, mock.Anything).Return(activities.UploadResult{}, nil)
	env.OnActivity(a.FinalizeBackup, mock.Anything, mock.Anything).Return(activities.Facts{}, nil)
	got := &activities.RetainAndPruneInput{}
	env.OnActivity(a.RetainAndPrune, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RetainAndPruneInput) (activities.RetainAndPruneResult, error) {
		*got = in
		if in.ReadDaily != nil { // as ReadDailyRetention finds a spec with 14 days
			return activities.RetainAndPruneResult{Pruned: []string{}, Rule: "daily retention 14 days from the cluster spec"}, nil
		}
		return activities.RetainAndPruneResult{Pruned: []string{}}, nil
	})
	return env, a, got
}

func TestBackupPrunesWithTheClusterSpecRetention(t *testing.T) {
	env, _, got := backupEnv(t)
	env.ExecuteWorkflow(EtcdBackup, EtcdBackupInput{Cluster: "c.example.com", EtcdCluster: "main", StateStore: "s3://state",
		Endpoints: []string{"https://127.0.0.1:4001"}})
	require.NoError(t, env.GetWorkflowError())
	var res EtcdBackupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assert.Equal(t, &activities.RetentionInput{StateStore: "s3://state", Cluster: "c.example.com", EtcdCluster: "main"},
		got.ReadDaily, "the prune reads the daily retention from the cluster spec")
	assert.Equal(t, 7*24*time.Hour, got.Retention.HourlyFor, "the other rules stay etcd-manager's")
	assert.Equal(t, "daily retention 14 days from the cluster spec", res.RetentionRule)
}

func TestBackupRetentionFromInputOrDefault(t *testing.T) {
	for name, tc := range map[string]struct {
		in   EtcdBackupInput
		days time.Duration
		rule string
	}{
		"input wins": {EtcdBackupInput{StateStore: "s3://state", BackupOptions: BackupOptions{Retention: &Retention{DailyFor: "720h"}}},
			30 * 24 * time.Hour, "daily retention 30 days from the input (retention.dailyFor)"},
		"no state store": {EtcdBackupInput{BackupStore: "s3://my.clusters/c/backups/etcd/main"},
			90 * 24 * time.Hour, "daily retention 90 days, kops's default (no state store to read the cluster spec from)"},
	} {
		t.Run(name, func(t *testing.T) {
			env, _, got := backupEnv(t)
			in := tc.in
			in.Cluster, in.EtcdCluster, in.Endpoints = "c.example.com", "main", []string{"https://127.0.0.1:4001"}
			env.ExecuteWorkflow(EtcdBackup, in)
			require.NoError(t, env.GetWorkflowError())
			var res EtcdBackupResult
			require.NoError(t, env.GetWorkflowResult(&res))
			assert.Nil(t, got.ReadDaily, "nothing to read")
			assert.Equal(t, tc.days, got.Retention.DailyFor)
			assert.Equal(t, tc.rule, res.RetentionRule)
		})
	}
}
