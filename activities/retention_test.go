package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

func TestReadDailyRetention(t *testing.T) {
	dir := kopsStateStore(t, `
  - name: events
    etcdMembers: [{name: a}]
`)
	a := &Backup{}
	ctx := context.Background()
	r, err := a.ReadDailyRetention(ctx, RetentionInput{StateStore: "file://" + dir, Cluster: "c.example.com", EtcdCluster: "main"})
	require.NoError(t, err)
	assert.Equal(t, RetentionResult{Days: 30, FromSpec: true,
		Rule: "daily retention 30 days from the cluster spec (etcdClusters[main].manager.backupRetentionDays)"}, r)
	r, err = a.ReadDailyRetention(ctx, RetentionInput{StateStore: "file://" + dir, Cluster: "c.example.com", EtcdCluster: "events"})
	require.NoError(t, err)
	assert.Equal(t, 90, r.Days)
	assert.False(t, r.FromSpec)
	r, err = a.ReadDailyRetention(ctx, RetentionInput{StateStore: "file://" + dir, Cluster: "other.example.com", EtcdCluster: "main"})
	require.NoError(t, err, "no spec: kops's default")
	assert.Equal(t, 90, r.Days)

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bad.example.com"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.example.com", "config"), []byte("spec: ["), 0o644))
	_, err = a.ReadDailyRetention(ctx, RetentionInput{StateStore: "file://" + dir, Cluster: "bad.example.com", EtcdCluster: "main"})
	assert.Equal(t, ErrTypeInvalidInput, appErrType(err))
}

// RetainAndPrune prunes with the daily retention it read: a backup of 40
// days ago goes under the spec's 30 days, though kops's default (90) and
// the policy it was given would keep it.
func TestRetainAndPruneReadsTheDailyRetention(t *testing.T) {
	dir := kopsStateStore(t, "")
	backups := filepath.Join(dir, "c.example.com", "backups", "etcd", "main")
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	old := etcdmanager.BackupName(now.Add(-40*24*time.Hour), 1)
	for _, name := range []string{old, etcdmanager.BackupName(now.Add(-2*time.Hour), 1)} { // the newest always stays
		require.NoError(t, os.MkdirAll(filepath.Join(backups, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(backups, name, etcdmanager.MetaFile), []byte("{}"), 0o644))
	}

	a := &Backup{}
	in := RetainAndPruneInput{PruneInput: PruneInput{Store: "file://" + backups, Now: now,
		Retention: etcdmanager.DefaultRetention(), DryRun: true}}
	res, err := a.RetainAndPrune(context.Background(), in)
	require.NoError(t, err)
	assert.Empty(t, res.Pruned, "90 days keep it")
	assert.Empty(t, res.Rule)

	in.ReadDaily = &RetentionInput{StateStore: "file://" + dir, Cluster: "c.example.com", EtcdCluster: "main"}
	res, err = a.RetainAndPrune(context.Background(), in)
	require.NoError(t, err)
	assert.Equal(t, []string{old}, res.Pruned, "30 days from the spec prune it")
	assert.Contains(t, res.Rule, "30 days from the cluster spec")
}

// kopsStateStore is a state-store folder holding c.example.com's cluster
// spec: main keeps daily backups 30 days, then whatever more etcd clusters
// more lists.
func kopsStateStore(t *testing.T, more string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "c.example.com"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.example.com", "config"), []byte(`kind: Cluster
metadata:
  name: c.example.com
spec:
  etcdClusters:
  - name: main
    etcdMembers: [{name: a}]
    manager: {backupRetentionDays: 30}`+more), 0o644))
	return dir
}
