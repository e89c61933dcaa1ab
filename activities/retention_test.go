package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadDailyRetention(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "c.example.com"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.example.com", "config"), []byte(`kind: Cluster
metadata:
  name: c.example.com
spec:
  etcdClusters:
  - name: main
    etcdMembers: [{name: a}]
    manager: {backupRetentionDays: 30}
  - name: events
    etcdMembers: [{name: a}]
`), 0o644))
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
