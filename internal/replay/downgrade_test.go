package replay_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/schema"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// The output is marked for the etcd version the base's meta names, which
// etcd-manager restores it with: storage and cluster version lowered with
// etcd's migration, nothing else changed, and etcd 3.7 still restores and
// serves it. (The base comes from an etcd 3.7; its meta is rewritten to
// name the version under test.)
func TestOutputIsMarkedForTheBaseEtcd(t *testing.T) {
	ctx := testCtx(t)
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	etcdtest.Fill(t, cli, "/registry/pods/default/", 40, 300)
	l, err := cli.Grant(ctx, 600)
	require.NoError(t, err)
	put(t, cli, "/registry/masterleases/10.0.0.1", "m1", clientv3.WithLease(l.ID))
	b := backUp(t, c, cli)
	baseRev := b.facts.Revision
	rec := record(t, cli, baseRev)
	var last int64
	for i := range 10 {
		last = put(t, cli, fmt.Sprintf("/registry/pods/default/new-%d", i), "new")
	}
	_, err = cli.Delete(ctx, etcdtest.Key("/registry/pods/default/", 3))
	require.NoError(t, err)
	last = put(t, cli, "/registry/masterleases/10.0.0.1", "m1 renewed", clientv3.WithLease(l.ID))
	txns := rec.until(t, last)

	var marked35 []byte // the output at the base's revision, marked 3.5
	for _, tc := range []struct {
		base   string // the meta's etcd version
		target int64  // replay to
		output string // Result.OutputVersion
		// The marks in the output's database ("" absent).
		storage, cluster string
	}{
		{base: "3.5.9", target: last, output: "3.5", storage: "", cluster: "3.5.0"},
		{base: "3.5.9", target: baseRev, output: "3.5", storage: "", cluster: "3.5.0"}, // nothing replayed
		{base: "3.6.4", target: last, output: "3.6", storage: "3.6.0", cluster: "3.6.0"},
		{base: "3.4.13", target: last, output: "3.5", storage: "", cluster: "3.5.0"},
		{base: "3.7.3", target: last, output: "", storage: "3.7.0", cluster: "3.7.0"},
	} {
		t.Run(fmt.Sprintf("base %s to %d", tc.base, tc.target), func(t *testing.T) {
			setBaseEtcdVersion(t, b, tc.base)
			want := readAll(t, cli, tc.target)
			res, out, err := makeTo(t, b, memSource(txns), tc.target, nil)
			require.NoError(t, err)
			t.Logf("%+v", res)
			assert.Equal(t, tc.base, res.BaseEtcdVersion)
			assert.Equal(t, tc.base, res.Snapshot.EtcdVersion, "the meta must name the base's version")
			assert.Equal(t, tc.output, res.OutputVersion)
			assert.Equal(t, tc.target, res.Snapshot.Revision)

			storage, cluster := versionMarks(t, out)
			// etcd writes the storage version a while after it starts; a
			// short replay can stop it before that. Absent reads as 3.5,
			// older than every target, which the target's etcd upgrades.
			if tc.storage == "" {
				assert.Empty(t, storage, "meta/storageVersion")
			} else {
				assert.Contains(t, []string{"", tc.storage}, storage, "meta/storageVersion: absent or the target, never newer")
			}
			assert.Equal(t, tc.cluster, cluster, "cluster/clusterVersion")

			// etcd's own restore, hash check on, and etcd 3.7 serves it
			// all: every key as the original had it at the target.
			_, rcli, v := restoreOutput(t, out)
			assert.Equal(t, res.Snapshot.RawSHA256, v.RawSHA256)
			got := readAll(t, rcli, 0)
			assert.Equal(t, want.Revision, got.Revision)
			assert.Equal(t, want.Kvs, got.Kvs)
			assertLeases(t, rcli, got)
			if tc.base == "3.5.9" && tc.target == baseRev {
				marked35 = readFile(t, out)
			}
		})
	}

	// A base whose database is marked 3.5, as one from an etcd 3.5
	// cluster is (no storage version, cluster version 3.5.0): the scratch
	// etcd 3.7 starts on it, and the output is marked 3.5 again.
	t.Run("base database marked 3.5", func(t *testing.T) {
		require.NotEmpty(t, marked35)
		name := etcdmanager.BackupName(time.Now().Add(time.Hour), 1)
		_, err := b.store.Put(ctx, name+"/"+etcdmanager.DataFile, bytes.NewReader(marked35), backupstore.PutOptions{})
		require.NoError(t, err)
		require.NoError(t, etcdmanager.WriteBackupInfo(ctx, b.store, name, etcdmanager.BackupInfo{
			EtcdVersion: "3.5.9", Timestamp: time.Now().Unix(),
			ClusterSpec: &etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: "3.5.9"},
		}, backupstore.PutOptions{}))
		b35 := *b
		b35.backup = name
		res, out, err := makeTo(t, &b35, memSource(txns), last, nil)
		require.NoError(t, err)
		assert.Equal(t, baseRev, res.BaseRevision)
		assert.Equal(t, "3.5", res.OutputVersion)
		storage, cluster := versionMarks(t, out)
		assert.Empty(t, storage)
		assert.Equal(t, "3.5.0", cluster)
		_, rcli, _ := restoreOutput(t, out)
		assert.Equal(t, readAll(t, cli, last), readAll(t, rcli, 0))
	})
}

// setBaseEtcdVersion rewrites the base's meta to name etcd version v.
func setBaseEtcdVersion(t *testing.T, b *base, v string) {
	ctx := testCtx(t)
	meta, err := etcdmanager.ReadBackupInfo(ctx, b.store, b.backup)
	require.NoError(t, err)
	meta.EtcdVersion = v
	if meta.ClusterSpec != nil {
		meta.ClusterSpec.EtcdVersion = v
	}
	require.NoError(t, etcdmanager.WriteBackupInfo(ctx, b.store, b.backup, meta, backupstore.PutOptions{}))
}

// versionMarks reads the storage and cluster version from the database in
// the gzip at path with bolt, read-only ("" when absent).
func versionMarks(t *testing.T, path string) (storage, cluster string) {
	in, err := os.Open(path)
	require.NoError(t, err)
	defer in.Close()
	raw := filepath.Join(t.TempDir(), "snapshot.db")
	f, err := os.Create(raw)
	require.NoError(t, err)
	v, err := snapshot.VerifyGzipTo(in, f)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(v.RawBytes-sha256.Size)) // the trailer off: a bolt file
	require.NoError(t, f.Close())
	db, err := bolt.Open(raw, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		storage = string(tx.Bucket(schema.Meta.Name()).Get(schema.MetaStorageVersionName))
		cluster = string(tx.Bucket(schema.Cluster.Name()).Get(schema.ClusterClusterVersionKeyName))
		return nil
	}))
	return storage, cluster
}
