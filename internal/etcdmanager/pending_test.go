package etcdmanager_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// recordPuts is a real store that records the keys it is asked to write.
type recordPuts struct {
	backupstore.Store
	keys []string
}

func (r *recordPuts) Put(ctx context.Context, key string, rd io.Reader, o backupstore.PutOptions) (int64, error) {
	r.keys = append(r.keys, key)
	return r.Store.Put(ctx, key, rd, o)
}

func TestWithdrawRemovesOnlyKopsdrCommands(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		for _, b := range []string{"2026-11-20T10:00:00Z-000042", "2026-11-21T08:00:00Z-000002", "2026-11-21T09:00:00Z-000003"} {
			addBackup(t, s, b)
		}
		require.NoError(t, etcdmanager.WriteClusterSpec(ctx, s, spec359))
		at := time.Unix(0, 1795301699486996173)

		// kopsdr's command: the marker goes first, and the command is byte for
		// byte what etcd-manager-ctl writes (no extra field in it).
		rec := &recordPuts{Store: s}
		ours, err := etcdmanager.WriteMarkedRestoreCommand(ctx, rec, at, spec359, "2026-11-20T10:00:00Z-000042",
			etcdmanager.Marker{WorkflowID: "restore/test.example.com", RunID: "run-1"})
		require.NoError(t, err)
		assert.Equal(t, []string{
			"control/2026-11-21T22:54:59Z-000000/kopsdr.json",
			"control/2026-11-21T22:54:59Z-000000/_command.json",
		}, rec.keys)
		assert.Equal(t, formatsCommand, getObj(t, s, "control/2026-11-21T22:54:59Z-000000/_command.json"))

		// An operator's command (etcd-manager-ctl restore-backup), unmarked.
		theirs, err := etcdmanager.WriteRestoreCommand(ctx, s, at.Add(-time.Hour), spec359, "2026-11-21T08:00:00Z-000002")
		require.NoError(t, err)

		// kopsdr marked this folder, but someone wrote another command over
		// kopsdr's in the same second: the marker no longer matches.
		over, err := etcdmanager.WriteMarkedRestoreCommand(ctx, s, at.Add(time.Hour), spec359, "2026-11-21T08:00:00Z-000002", etcdmanager.Marker{WorkflowID: "w"})
		require.NoError(t, err)
		overwritten := etcdmanager.MarshalCommand(etcdmanager.Command{
			Timestamp:     at.Add(time.Hour + 300*time.Millisecond).UnixNano(),
			RestoreBackup: &etcdmanager.RestoreBackupCommand{ClusterSpec: &spec359, Backup: "2026-11-21T09:00:00Z-000003"},
		})
		putObj(t, s, "control/"+over.Name+"/_command.json", string(overwritten))

		pending, err := etcdmanager.ListPending(ctx, s)
		require.NoError(t, err)
		require.Len(t, pending, 3)
		assert.Equal(t, theirs.Name, pending[0].Name)
		assert.False(t, pending[0].ByKopsdr())
		assert.Equal(t, ours.Name, pending[1].Name)
		require.True(t, pending[1].ByKopsdr())
		assert.Equal(t, "restore/test.example.com", pending[1].Marker.WorkflowID)
		assert.Equal(t, "2026-11-20T10:00:00Z-000042", pending[1].Backup())
		assert.Equal(t, over.Name, pending[2].Name)
		assert.False(t, pending[2].ByKopsdr(), "a command written over kopsdr's is not kopsdr's")

		loc := etcdmanager.Location{Cluster: "test.example.com", StateStore: "s3://clusters", Etcd: "main"}
		msg := etcdmanager.DescribePending(s.URL(), loc, pending)
		assert.Contains(t, msg, "3 restore command(s) still queued in "+s.URL())
		assert.Contains(t, msg, "control/"+ours.Name+" restores 2026-11-20T10:00:00Z-000042")
		assert.Contains(t, msg, "by kopsdr (workflow restore/test.example.com)")
		assert.Contains(t, msg, "kopsdr restore withdraw --cluster test.example.com --state-store s3://clusters --etcd main --yes")
		assert.Contains(t, msg, "etcd-manager-ctl --backup-store="+s.URL()+" delete-command 2026-11-21T08:00:00Z-000002")
		assert.Contains(t, msg, "etcd-manager-ctl --backup-store="+s.URL()+" delete-command 2026-11-21T09:00:00Z-000003")
		assert.Empty(t, etcdmanager.DescribePending(s.URL(), loc, nil))

		before, err := s.List(ctx, "")
		require.NoError(t, err)
		dry, err := etcdmanager.Withdraw(ctx, s, true)
		require.NoError(t, err)
		require.Len(t, dry.Removed, 1)
		assert.Equal(t, ours.Name, dry.Removed[0].Name)
		assert.Len(t, dry.Kept, 2)
		after, err := s.List(ctx, "")
		require.NoError(t, err)
		assert.Equal(t, objKeys(before), objKeys(after), "a dry run deletes nothing")

		res, err := etcdmanager.Withdraw(ctx, s, false)
		require.NoError(t, err)
		assert.Equal(t, objNames(dry.Removed), objNames(res.Removed))
		assert.Equal(t, objNames(dry.Kept), objNames(res.Kept))
		pending, err = etcdmanager.ListPending(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{theirs.Name, over.Name}, objNames(pending))
		left, err := s.List(ctx, "control/"+ours.Name+"/")
		require.NoError(t, err)
		assert.Empty(t, left, "command and marker are gone")
		assert.Equal(t, string(overwritten), getObj(t, s, "control/"+over.Name+"/_command.json"), "others' commands are untouched")

		again, err := etcdmanager.Withdraw(ctx, s, false)
		require.NoError(t, err)
		assert.Empty(t, again.Removed, "withdrawing is idempotent")
	})
}

func TestMarkCommandAfterACrash(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		addBackup(t, s, "2026-11-20T10:00:00Z-000042")
		// An earlier attempt (or kopsdr before markers) wrote the command only.
		c, err := etcdmanager.WriteRestoreCommand(ctx, s, time.Unix(1795301699, 0), spec359, "2026-11-20T10:00:00Z-000042")
		require.NoError(t, err)
		require.NoError(t, etcdmanager.MarkCommand(ctx, s, c, etcdmanager.Marker{WorkflowID: "w"}))
		pending, err := etcdmanager.ListPending(ctx, s)
		require.NoError(t, err)
		require.Len(t, pending, 1)
		assert.True(t, pending[0].ByKopsdr())
		// A marker that is not kopsdr's JSON marks nothing.
		putObj(t, s, etcdmanager.MarkerKey(c.Name), "not json")
		pending, err = etcdmanager.ListPending(ctx, s)
		require.NoError(t, err)
		assert.False(t, pending[0].ByKopsdr())
	})
}

func objNames(ps []etcdmanager.Pending) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}
