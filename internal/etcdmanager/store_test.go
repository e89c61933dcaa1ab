package etcdmanager_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// stores runs f against a file:// store and an S3 (gofakes3) store.
func stores(t *testing.T, f func(t *testing.T, s backupstore.Store)) {
	t.Run("file", func(t *testing.T) {
		s, err := backupstore.Open(context.Background(), "file://"+t.TempDir()+"/backups/etcd/main", backupstore.Options{})
		require.NoError(t, err)
		f(t, s)
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.StartGoFakeS3(t, "clusters")
		srv.Setenv(t)
		s, err := backupstore.Open(context.Background(), "s3://clusters/test.example.com/backups/etcd/main", backupstore.Options{})
		require.NoError(t, err)
		f(t, s)
	})
}

func putObj(t *testing.T, s backupstore.Store, key, data string) {
	t.Helper()
	_, err := s.Put(context.Background(), key, strings.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
}

func getObj(t *testing.T, s backupstore.Store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

// addBackup writes a backup the way etcd-manager does: data, then meta.
func addBackup(t *testing.T, s backupstore.Store, name string) {
	t.Helper()
	putObj(t, s, name+"/"+etcdmanager.DataFile, "gzip of "+name)
	tm, _, _ := etcdmanager.ParseBackupName(name)
	require.NoError(t, etcdmanager.WriteBackupInfo(context.Background(), s, name, etcdmanager.BackupInfo{
		EtcdVersion: "3.5.9", Timestamp: tm.Unix(), ClusterSpec: &spec359,
	}, backupstore.PutOptions{}))
}

func TestListBackups(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		names, err := etcdmanager.ListBackups(ctx, s)
		require.NoError(t, err)
		assert.Empty(t, names)

		addBackup(t, s, "2026-11-21T22:52:16Z-000003")
		addBackup(t, s, "2026-11-20T10:00:00Z-000042")
		addBackup(t, s, "2026-11-21T08:00:00Z-000002")
		putObj(t, s, "manual/"+etcdmanager.MetaFile, `{"etcdVersion": "3.5.9"}`)
		putObj(t, s, "nested/deeper/"+etcdmanager.MetaFile, `{"etcdVersion": "3.5.9"}`)
		// Not backups: data without meta (in progress), meta at the root, control files.
		putObj(t, s, "2026-11-21T23:00:00Z-000004/"+etcdmanager.DataFile, "half")
		putObj(t, s, etcdmanager.MetaFile, "x")
		require.NoError(t, etcdmanager.WriteClusterSpec(ctx, s, spec359))

		names, err = etcdmanager.ListBackups(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{
			"2026-11-20T10:00:00Z-000042",
			"2026-11-21T08:00:00Z-000002",
			"2026-11-21T22:52:16Z-000003",
			"deeper",
			"manual",
		}, names)

		info, err := etcdmanager.ReadBackupInfo(ctx, s, "2026-11-20T10:00:00Z-000042")
		require.NoError(t, err)
		assert.Equal(t, int64(1795168800), info.Timestamp)
		assert.Equal(t, `{"etcdVersion": "3.5.9", "timestamp": "1795168800", "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}}`,
			getObj(t, s, "2026-11-20T10:00:00Z-000042/"+etcdmanager.MetaFile))
		_, err = etcdmanager.ReadBackupInfo(ctx, s, "2026-11-21T23:00:00Z-000004")
		assert.ErrorIs(t, err, backupstore.ErrNotFound)
		_, err = etcdmanager.ReadBackupInfo(ctx, s, "../escape")
		_, isInput := inputerr.As(err)
		assert.True(t, isInput, "%v", err)
	})
}

func TestClusterSpec(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		_, err := etcdmanager.ReadClusterSpec(ctx, s)
		assert.ErrorIs(t, err, etcdmanager.ErrNoClusterSpec)
		assert.ErrorIs(t, err, backupstore.ErrNotFound)

		require.NoError(t, etcdmanager.WriteClusterSpec(ctx, s, spec359))
		assert.Equal(t, formatsSpec, getObj(t, s, "control/etcd-cluster-spec"))
		spec, err := etcdmanager.ReadClusterSpec(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, spec359, spec)

		putObj(t, s, "control/etcd-cluster-spec", `{"memberCount": 3, "etcdVersion": "3.5.9", "extra": 1}`)
		_, err = etcdmanager.ReadClusterSpec(ctx, s)
		assert.ErrorContains(t, err, "unknown field")
	})
}

func TestRestoreCommands(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		cmds, err := etcdmanager.ListCommands(ctx, s)
		require.NoError(t, err)
		assert.Empty(t, cmds)

		addBackup(t, s, "2026-11-20T10:00:00Z-000042")
		addBackup(t, s, "2026-11-21T08:00:00Z-000002")
		require.NoError(t, etcdmanager.WriteClusterSpec(ctx, s, spec359))

		at := time.Unix(0, 1795301699486996173)
		cmd, err := etcdmanager.WriteRestoreCommand(ctx, s, at, spec359, "2026-11-20T10:00:00Z-000042")
		require.NoError(t, err)
		assert.Equal(t, "2026-11-21T22:54:59Z-000000", cmd.Name)
		assert.Equal(t, formatsCommand, getObj(t, s, "control/2026-11-21T22:54:59Z-000000/_command.json"))

		// Same second: it would overwrite the first command.
		_, err = etcdmanager.WriteRestoreCommand(ctx, s, at.Add(time.Millisecond), spec359, "2026-11-21T08:00:00Z-000002")
		assert.ErrorIs(t, err, etcdmanager.ErrCommandExists)
		assert.Equal(t, formatsCommand, getObj(t, s, "control/2026-11-21T22:54:59Z-000000/_command.json"))

		// A backup that does not exist: etcd-manager would stop etcd and fail.
		_, err = etcdmanager.WriteRestoreCommand(ctx, s, at.Add(time.Hour), spec359, "2026-11-19T00:00:00Z-000001")
		e, ok := inputerr.As(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, "backup", e.Field)
		assert.Equal(t, "2026-11-19T00:00:00Z-000001", e.Value)
		_, err = etcdmanager.WriteRestoreCommand(ctx, s, at.Add(time.Hour), spec359, "../control")
		_, ok = inputerr.As(err)
		assert.True(t, ok, "%v", err)
		_, err = etcdmanager.WriteRestoreCommand(ctx, s, at.Add(time.Hour), etcdmanager.ClusterSpec{}, "2026-11-21T08:00:00Z-000002")
		assert.Error(t, err)

		// An older command written later still sorts first: by timestamp.
		earlier := at.Add(-time.Hour)
		_, err = etcdmanager.WriteRestoreCommand(ctx, s, earlier, spec359, "2026-11-21T08:00:00Z-000002")
		require.NoError(t, err)

		cmds, err = etcdmanager.ListCommands(ctx, s)
		require.NoError(t, err)
		require.Len(t, cmds, 2)
		assert.Equal(t, "2026-11-21T21:54:59Z-000000", cmds[0].Name)
		assert.Equal(t, earlier.UnixNano(), cmds[0].Timestamp)
		assert.Equal(t, "2026-11-21T08:00:00Z-000002", cmds[0].RestoreBackup.Backup)
		assert.Equal(t, etcdmanager.Command{
			Name: "2026-11-21T22:54:59Z-000000", Timestamp: 1795301699486996173,
			RestoreBackup: &etcdmanager.RestoreBackupCommand{ClusterSpec: &spec359, Backup: "2026-11-20T10:00:00Z-000042"},
		}, cmds[1])

		require.NoError(t, etcdmanager.DeleteCommand(ctx, s, cmds[0].Name))
		require.NoError(t, etcdmanager.DeleteCommand(ctx, s, cmds[0].Name), "deleting twice is fine")
		cmds, err = etcdmanager.ListCommands(ctx, s)
		require.NoError(t, err)
		require.Len(t, cmds, 1)
		assert.Equal(t, "2026-11-21T22:54:59Z-000000", cmds[0].Name)
		_, ok = inputerr.As(etcdmanager.DeleteCommand(ctx, s, "../../x"))
		assert.True(t, ok)

		// A command etcd-manager could not parse fails the listing, as in etcd-manager.
		putObj(t, s, "control/2026-11-22T00:00:00Z-000000/_command.json", `{"timestamp": "1", "bogus": true}`)
		_, err = etcdmanager.ListCommands(ctx, s)
		assert.ErrorContains(t, err, "bogus")
	})
}

func TestPruneBackups(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 21, 12, 30, 0, 0, time.UTC)
		all := []string{
			"2026-08-01T00:00:00Z-000001", // > 90 days: removed
			"2026-08-02T00:00:00Z-000001", // > 90 days, but a pending command restores it
			"2026-11-01T03:00:00Z-000001", // daily: first of the day
			"2026-11-01T04:00:00Z-000001", // daily: same day, removed
			"2026-11-21T09:00:00Z-000001", // hourly: first of the hour
			"2026-11-21T09:30:00Z-000001", // hourly: same hour, removed
			"2026-11-21T12:00:00Z-000001", // younger than 1 h
		}
		for _, n := range all {
			addBackup(t, s, n)
		}
		putObj(t, s, "2026-08-01T00:00:00Z-000001/"+etcdmanager.KopsdrFile, `{"sha256": "x"}`)
		putObj(t, s, "keep-me/"+etcdmanager.MetaFile, `{"etcdVersion": "3.5.9"}`)
		require.NoError(t, etcdmanager.WriteClusterSpec(ctx, s, spec359))
		_, err := etcdmanager.WriteRestoreCommand(ctx, s, now, spec359, "2026-08-02T00:00:00Z-000001")
		require.NoError(t, err)
		before, err := s.List(ctx, "")
		require.NoError(t, err)

		want := []string{"2026-08-01T00:00:00Z-000001", "2026-11-01T04:00:00Z-000001", "2026-11-21T09:30:00Z-000001"}
		removed, err := etcdmanager.PruneBackups(ctx, s, now, etcdmanager.DefaultRetention(), true)
		require.NoError(t, err)
		assert.Equal(t, want, removed)
		after, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, objKeys(before), objKeys(after), "a dry run deletes nothing")

		removed, err = etcdmanager.PruneBackups(ctx, s, now, etcdmanager.DefaultRetention(), false)
		require.NoError(t, err)
		assert.Equal(t, want, removed)
		names, err := etcdmanager.ListBackups(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{
			"2026-08-02T00:00:00Z-000001", "2026-11-01T03:00:00Z-000001",
			"2026-11-21T09:00:00Z-000001", "2026-11-21T12:00:00Z-000001", "keep-me",
		}, names)
		for _, n := range want {
			left, err := s.List(ctx, n+"/")
			require.NoError(t, err)
			assert.Empty(t, left, "every object of %s is gone, kopsdr's own included", n)
		}

		removed, err = etcdmanager.PruneBackups(ctx, s, now, etcdmanager.DefaultRetention(), false)
		require.NoError(t, err)
		assert.Empty(t, removed, "pruning is idempotent")
	})
}

// failingDeletes is a real store whose Delete calls are recorded and, from
// call failFrom on, fail: a prune interrupted mid-way.
type failingDeletes struct {
	backupstore.Store
	calls    [][]string
	failFrom int
}

func (f *failingDeletes) Delete(ctx context.Context, keys ...string) error {
	f.calls = append(f.calls, keys)
	if len(f.calls) >= f.failFrom {
		return errors.New("connection reset")
	}
	return f.Store.Delete(ctx, keys...)
}

// TestPruneDeletesMetaFirst: a prune interrupted after the meta is gone
// leaves a folder that no longer lists, never a listed backup without data.
func TestPruneDeletesMetaFirst(t *testing.T) {
	s, err := backupstore.Open(context.Background(), "file://"+t.TempDir(), backupstore.Options{})
	require.NoError(t, err)
	ctx := context.Background()
	addBackup(t, s, "2026-01-01T00:00:00Z-000001")
	putObj(t, s, "2026-01-01T00:00:00Z-000001/"+etcdmanager.KopsdrFile, "{}")
	addBackup(t, s, "2026-11-21T12:00:00Z-000001")
	now := time.Date(2026, 11, 21, 12, 30, 0, 0, time.UTC)

	rec := &failingDeletes{Store: s, failFrom: 2}
	removed, err := etcdmanager.PruneBackups(ctx, rec, now, etcdmanager.DefaultRetention(), false)
	require.ErrorContains(t, err, "connection reset")
	assert.Empty(t, removed)
	assert.Equal(t, [][]string{
		{"2026-01-01T00:00:00Z-000001/_etcd_backup.meta"},
		{"2026-01-01T00:00:00Z-000001/etcd.backup.gz", "2026-01-01T00:00:00Z-000001/kopsdr.json"},
	}, rec.calls)
	names, err := etcdmanager.ListBackups(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []string{"2026-11-21T12:00:00Z-000001"}, names, "the half-deleted backup no longer lists")
}

func objKeys(infos []backupstore.ObjectInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Key)
	}
	return out
}
