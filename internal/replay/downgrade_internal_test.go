package replay

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/coreos/go-semver/semver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
)

func TestTargetVersion(t *testing.T) {
	for base, want := range map[string]string{
		"3.5.9":        "3.5",
		"v3.5.21":      "3.5",
		"3.5":          "3.5",
		"3.6.4":        "3.6",
		" 3.6.0-rc.1 ": "3.6",
		"3.4.13":       "3.5", // never below what etcd's migration knows
		"3.1.0":        "3.5",
		"3.7.3":        "", // the scratch etcd's own: nothing to lower
		"3.7.0":        "",
		"3.8.1":        "",
		"4.0.0":        "",
		"2.2.5":        "",
		"":             "",
		"latest":       "",
	} {
		got, ok := targetVersion(base)
		if want == "" {
			assert.False(t, ok, "%q gave %v", base, got)
			continue
		}
		if assert.True(t, ok, base) {
			assert.Equal(t, want, minor(got), base)
			assert.Zero(t, got.Patch, base)
		}
	}
}

// lowerVersions lowers, and only lowers, both marks.
func TestLowerVersions(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		storage, cluster, target string // "" absent
		wantStorage, wantCluster string
	}{
		{"3.7 to 3.5", "3.7.0", "3.7.0", "3.5", "", "3.5.0"},
		{"3.7 to 3.6", "3.7.0", "3.7.0", "3.6", "3.6.0", "3.6.0"},
		{"3.6 to 3.5", "3.6.0", "3.6.0", "3.5", "", "3.5.0"},
		{"no cluster version", "3.7.0", "", "3.5", "", ""},
		{"3.5 stays 3.5", "", "3.5.0", "3.5", "", "3.5.0"},
		{"never raised", "", "3.5.0", "3.6", "", "3.5.0"},
		{"storage lowered, cluster already lower", "3.7.0", "3.5.0", "3.6", "3.6.0", "3.5.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db")
			be := backend.NewDefaultBackend(zap.NewNop(), path)
			tx := be.BatchTx()
			tx.LockOutsideApply()
			schema.UnsafeCreateMetaBucket(tx)
			tx.UnsafeCreateBucket(schema.Cluster)
			schema.UnsafeUpdateConsistentIndex(tx, 42, 3)
			if tc.storage != "" {
				schema.UnsafeSetStorageVersion(tx, semver.New(tc.storage))
			}
			if tc.cluster != "" {
				tx.UnsafePut(schema.Cluster, schema.ClusterClusterVersionKeyName, []byte(tc.cluster))
			}
			tx.Unlock()
			be.ForceCommit()
			require.NoError(t, be.Close())

			target, ok := targetVersion(tc.target)
			require.True(t, ok)
			require.NoError(t, lowerVersions(zap.NewNop(), path, target))

			db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, db.View(func(tx *bolt.Tx) error {
				assert.Equal(t, tc.wantStorage, string(tx.Bucket(schema.Meta.Name()).Get(schema.MetaStorageVersionName)), "storage version")
				assert.Equal(t, tc.wantCluster, string(tx.Bucket(schema.Cluster.Name()).Get(schema.ClusterClusterVersionKeyName)), "cluster version")
				return nil
			}))
		})
	}
	t.Run("not a database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("junk"), 4096), 0o600))
		err := lowerVersions(zap.NewNop(), path, version.V3_5)
		require.Error(t, err)
		t.Log(err)
	})
}
