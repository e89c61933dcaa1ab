package activities

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

func TestRestoreCommandIsMarkedAndReported(t *testing.T) {
	ctx := context.Background()
	root := "file://" + t.TempDir() + "/state"
	mainURL, eventsURL := root+"/c.example.com/backups/etcd/main", root+"/c.example.com/backups/etcd/events"
	spec := etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: "3.5.9"}
	const backup = "2026-11-20T10:00:00Z-000042"
	stores := map[string]backupstore.Store{}
	for _, u := range []string{mainURL, eventsURL} {
		s, err := backupstore.Open(ctx, u, backupstore.Options{})
		require.NoError(t, err)
		_, err = s.Put(ctx, backup+"/"+etcdmanager.DataFile, strings.NewReader("x"), backupstore.PutOptions{})
		require.NoError(t, err)
		require.NoError(t, etcdmanager.WriteBackupInfo(ctx, s, backup, etcdmanager.BackupInfo{EtcdVersion: "3.5.9", Timestamp: 1}, backupstore.PutOptions{}))
		stores[u] = s
	}

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &Restore{}
	env.RegisterActivity(a)
	at := time.Date(2026, 11, 21, 22, 54, 59, 0, time.UTC)
	in := CommandInput{Store: mainURL, Backup: backup, Spec: spec, At: at}
	v, err := env.ExecuteActivity(a.WriteRestoreCommand, in)
	require.NoError(t, err)
	var res CommandResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, "2026-11-21T22:54:59Z-000000", res.Command)
	// The retry after a crash finds it, and it stays marked.
	v, err = env.ExecuteActivity(a.WriteRestoreCommand, in)
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	assert.True(t, res.AlreadyWritten)

	// Someone else's command in events.
	_, err = etcdmanager.WriteRestoreCommand(ctx, stores[eventsURL], at, spec, backup)
	require.NoError(t, err)

	got, err := a.PendingCommands(ctx, PendingCommandsInput{Cluster: "c.example.com", StateStore: root, Stores: []PendingCommandStore{
		{EtcdCluster: "main", Store: mainURL}, {EtcdCluster: "events", Store: eventsURL},
	}})
	require.NoError(t, err)
	require.Len(t, got.Commands, 2)
	assert.Equal(t, PendingCommand{
		EtcdCluster: "main", Store: mainURL, Folder: "control/2026-11-21T22:54:59Z-000000", Backup: backup,
		QueuedAt: at, ByKopsdr: true, WorkflowID: "default-test-workflow-id",
		Withdraw: "kopsdr restore withdraw --cluster c.example.com --state-store " + root + " --etcd main --yes",
	}, got.Commands[0])
	assert.False(t, got.Commands[1].ByKopsdr)
	assert.Equal(t, "etcd-manager-ctl --backup-store="+eventsURL+" delete-command "+backup, got.Commands[1].Withdraw)
	assert.Contains(t, got.Message, "still queued in "+mainURL)
	assert.Contains(t, got.Message, "still queued in "+eventsURL)
	assert.Contains(t, got.Message, got.Commands[0].Withdraw)
	assert.Contains(t, got.Message, got.Commands[1].Withdraw)

	none, err := a.PendingCommands(ctx, PendingCommandsInput{Cluster: "c.example.com", Stores: []PendingCommandStore{{EtcdCluster: "main", Store: root + "/other"}}})
	require.NoError(t, err)
	assert.Empty(t, none.Commands)
	assert.Empty(t, none.Message)
}
