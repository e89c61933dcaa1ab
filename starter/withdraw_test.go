package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
)

func TestWithdrawIsWired(t *testing.T) {
	c, _, err := newApp(&bytes.Buffer{}, &bytes.Buffer{}).root().Find([]string{"restore", "withdraw"})
	require.NoError(t, err)
	assert.Equal(t, "withdraw", c.Name())
}

// runWithdraw runs "kopsdr restore withdraw args..." and returns stdout.
func runWithdraw(t *testing.T, output string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newApp(&out, &bytes.Buffer{}).root()
	root.SetArgs(append([]string{"restore", "withdraw", "-o", output}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestWithdrawCommand(t *testing.T) {
	t.Setenv("KOPS_STATE_STORE", "")
	ctx := context.Background()
	dir := t.TempDir()
	state := "file://" + dir + "/state"
	spec := etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: "3.5.9"}
	const backup = "2026-11-20T10:00:00Z-000042"
	at := time.Date(2026, 11, 21, 22, 54, 59, 0, time.UTC)
	open := func(ec string) backupstore.Store {
		s, err := backupstore.Open(ctx, state+"/c.example.com/backups/etcd/"+ec, backupstore.Options{})
		require.NoError(t, err)
		return s
	}
	mainS, eventsS := open("main"), open("events")
	for _, s := range []backupstore.Store{mainS, eventsS} {
		_, err := s.Put(ctx, backup+"/"+etcdmanager.DataFile, strings.NewReader("x"), backupstore.PutOptions{})
		require.NoError(t, err)
		require.NoError(t, etcdmanager.WriteBackupInfo(ctx, s, backup, etcdmanager.BackupInfo{EtcdVersion: "3.5.9"}, backupstore.PutOptions{}))
	}
	ours, err := etcdmanager.WriteMarkedRestoreCommand(ctx, mainS, at, spec, backup, etcdmanager.Marker{WorkflowID: "restore/c.example.com"})
	require.NoError(t, err)
	theirs, err := etcdmanager.WriteRestoreCommand(ctx, eventsS, at, spec, backup)
	require.NoError(t, err)

	out, err := runWithdraw(t, "text", "--cluster", "c.example.com", "--state-store", state)
	require.NoError(t, err)
	assert.Contains(t, out, "main: would withdraw control/"+ours.Name+" (restores "+backup)
	assert.Contains(t, out, "events: left alone control/"+theirs.Name)
	assert.Contains(t, out, "etcd-manager-ctl --backup-store="+eventsS.URL()+" delete-command "+backup)
	assert.Contains(t, out, "add --yes")
	pending, err := etcdmanager.ListPending(ctx, mainS)
	require.NoError(t, err)
	require.Len(t, pending, 1, "the dry run deleted nothing")

	out, err = runWithdraw(t, "json", "--cluster", "c.example.com", "--state-store", state, "--yes")
	require.NoError(t, err)
	var rep withdrawReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.False(t, rep.DryRun)
	require.Len(t, rep.Stores, 2)
	require.Len(t, rep.Stores[0].Withdrawn, 1)
	assert.Equal(t, "control/"+ours.Name, rep.Stores[0].Withdrawn[0].Folder)
	assert.Equal(t, "restore/c.example.com", rep.Stores[0].Withdrawn[0].WorkflowID)
	assert.Empty(t, rep.Stores[1].Withdrawn)
	require.Len(t, rep.Stores[1].LeftAlone, 1)
	pending, err = etcdmanager.ListPending(ctx, mainS)
	require.NoError(t, err)
	assert.Empty(t, pending)
	pending, err = etcdmanager.ListPending(ctx, eventsS)
	require.NoError(t, err)
	assert.Len(t, pending, 1, "someone else's command stays")

	out, err = runWithdraw(t, "text", "--cluster", "c.example.com", "--etcd", "main", "--backup-store", mainS.URL(), "--yes")
	require.NoError(t, err)
	assert.Contains(t, out, "main: no pending restore command in "+mainS.URL())
}

func TestWithdrawRefusesBadInput(t *testing.T) {
	t.Setenv("KOPS_STATE_STORE", "")
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		args  []string
		field string
	}{
		"no cluster":                {[]string{"--state-store", "file://" + dir}, "cluster"},
		"no store":                  {[]string{"--cluster", "c"}, "stateStore"},
		"bad etcd":                  {[]string{"--cluster", "c", "--state-store", "file://" + dir, "--etcd", "all"}, "etcd"},
		"backup store without etcd": {[]string{"--cluster", "c", "--backup-store", "file://" + dir}, "etcd"},
		"both stores": {[]string{"--cluster", "c", "--etcd", "main", "--backup-store", "file://" + dir,
			"--state-store", "file://" + dir}, "backup-store"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runWithdraw(t, "text", append(tc.args, "--yes")...)
			e, ok := inputerr.As(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, tc.field, e.Field)
			assert.NotEmpty(t, e.Fix)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was written")
	_, err = os.Stat(filepath.Join(dir, "c"))
	assert.True(t, os.IsNotExist(err))
}
