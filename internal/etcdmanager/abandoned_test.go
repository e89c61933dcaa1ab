package etcdmanager_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// TestListAndRemoveIncomplete: only folders named like backups, without a
// meta and untouched since the cutoff are listed; removing one removes all
// it holds, and removing one that got its meta since removes nothing.
func TestListAndRemoveIncomplete(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		const (
			left     = "2026-11-20T10:00:00Z-000001"
			finished = "2026-11-20T10:00:00Z-000002"
			late     = "2026-11-20T10:00:00Z-000003"
		)
		putObj(t, s, left+"/"+etcdmanager.ReservationFile, "{}")
		putObj(t, s, left+"/"+etcdmanager.DataFile, "half a snapshot")
		putObj(t, s, finished+"/"+etcdmanager.DataFile, "a snapshot")
		putObj(t, s, finished+"/"+etcdmanager.MetaFile, "{}")
		putObj(t, s, late+"/"+etcdmanager.DataFile, "a snapshot")
		putObj(t, s, "control/etcd-cluster-spec", "{}")
		putObj(t, s, "not-a-backup/"+etcdmanager.DataFile, "x")

		none, err := etcdmanager.ListIncomplete(ctx, s, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Empty(t, none, "everything was written after the cutoff")

		found, err := etcdmanager.ListIncomplete(ctx, s, time.Now().Add(time.Hour))
		require.NoError(t, err)
		require.Len(t, found, 2)
		require.Equal(t, left, found[0].Name)
		require.False(t, found[0].Newest.IsZero())
		require.Equal(t, late, found[1].Name)

		// late's backup finishes between the listing and the removal.
		putObj(t, s, late+"/"+etcdmanager.MetaFile, "{}")
		for _, f := range found {
			n, incomplete, err := etcdmanager.RemoveIncomplete(ctx, s, f.Name)
			require.NoError(t, err)
			require.Equal(t, f.Name == left, incomplete, f.Name)
			if incomplete {
				require.Equal(t, 2, n)
			}
		}
		objs, err := s.List(ctx, "")
		require.NoError(t, err)
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		require.ElementsMatch(t, []string{
			finished + "/" + etcdmanager.DataFile, finished + "/" + etcdmanager.MetaFile,
			late + "/" + etcdmanager.DataFile, late + "/" + etcdmanager.MetaFile,
			"control/etcd-cluster-spec", "not-a-backup/" + etcdmanager.DataFile,
		}, keys)
	})
}
