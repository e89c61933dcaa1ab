// Package backuptest takes real kopsdr backups for tests, with the backup
// activities themselves (no workflow): what drills and replays start from.
package backuptest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// Backup is one backup taken.
type Backup struct {
	URL   string // the backup store
	Store backupstore.Store
	Name  string
	Facts activities.Facts
}

// Take backs up c into a fresh file:// store laid out as kops lays it out
// (<dir>/c.example.com/backups/etcd/main).
func Take(ctx context.Context, t testing.TB, c *etcdtest.Cluster) Backup {
	t.Helper()
	url := "file://" + t.TempDir() + "/c.example.com/backups/etcd/main"
	store, err := backupstore.Open(ctx, url, backupstore.Options{})
	require.NoError(t, err)
	a := &activities.Backup{}
	now := time.Now().UTC()
	prep, err := a.PrepareBackup(ctx, activities.PrepareInput{Store: url, Now: now})
	require.NoError(t, err)
	up, err := a.UploadSnapshot(ctx, activities.UploadInput{Store: url, Name: prep.Name, Etcd: c.ConnConfig()})
	require.NoError(t, err)
	facts, err := a.FinalizeBackup(ctx, activities.FinalizeInput{
		Store: url, Name: prep.Name, Upload: up, MemberCount: up.MemberCount, Timestamp: now,
	})
	require.NoError(t, err)
	return Backup{URL: url, Store: store, Name: prep.Name, Facts: facts}
}
