package snapshot_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/datadir"

	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// StreamFile of the database a server streams writes exactly what Stream
// wrote: the same raw snapshot, trailer and all, the same gzip, the same
// revision. The store's newest revision is a delete that a compaction
// removed, so the revision has to come from the compaction, not the keys.
func TestStreamFileEqualsStream(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
	cli := c.Client(t)
	etcdtest.Fill(t, cli, prefix, 300, 1000)
	_, err := cli.Put(ctx(t), "/gone", "soon")
	require.NoError(t, err)
	del, err := cli.Delete(ctx(t), "/gone")
	require.NoError(t, err)
	_, err = cli.Compact(ctx(t), del.Header.Revision, clientv3.WithCompactPhysical())
	require.NoError(t, err)

	var fromServer bytes.Buffer
	want, err := snapshot.Stream(ctx(t), cli, c.Endpoints[0], &fromServer, gzip.BestSpeed, nil)
	require.NoError(t, err)
	require.Equal(t, del.Header.Revision, want.Revision)
	raw := gunzipBytes(t, fromServer.Bytes())
	db := filepath.Join(t.TempDir(), "db")
	require.NoError(t, os.WriteFile(db, raw[:len(raw)-32], 0o600))

	var fromFile bytes.Buffer
	var last [2]int64
	got, err := snapshot.StreamFile(ctx(t), db, want.EtcdVersion, &fromFile, gzip.BestSpeed, func(raw, gz int64) { last = [2]int64{raw, gz} })
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, [2]int64{got.RawBytes, got.GzipBytes}, last)
	assert.True(t, bytes.Equal(raw, gunzipBytes(t, fromFile.Bytes())), "the same raw snapshot")
	assert.True(t, bytes.Equal(fromServer.Bytes(), fromFile.Bytes()), "the same gzip")
	v, err := snapshot.VerifyGzip(bytes.NewReader(fromFile.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, got.RawSHA256, v.RawSHA256)
}

// The database of a stopped member, streamed, restores with etcd's own
// restore (hash check on) into a cluster serving every key at the
// member's revision.
func TestStreamFileOfAStoppedMember(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
	cli := c.Client(t)
	etcdtest.Fill(t, cli, prefix, 500, 1000)
	cur, err := cli.Get(ctx(t), "/none")
	require.NoError(t, err)
	db := datadir.ToBackendFileName(c.Members[0].Dir)

	// In use: refused.
	_, err = snapshot.StreamFile(ctx(t), db, "3.5.9", &bytes.Buffer{}, gzip.BestSpeed, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "an etcd still has it open")

	c.StopMember(0)
	gz := filepath.Join(t.TempDir(), "etcd.backup.gz")
	f, err := os.Create(gz)
	require.NoError(t, err)
	res, err := snapshot.StreamFile(ctx(t), db, "3.5.9", f, gzip.DefaultCompression, nil)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	t.Logf("%+v", res)
	assert.Equal(t, cur.Header.Revision, res.Revision)
	assert.Equal(t, "3.5.9", res.EtcdVersion)
	assert.Equal(t, fileSHA(t, gz), res.GzipSHA256)

	rawPath := filepath.Join(t.TempDir(), "snapshot.db")
	gunzip(t, gz, rawPath)
	assert.Equal(t, res.RawSHA256, dataSHA(t, rawPath))
	assert.Equal(t, etcdtest.SnapshotRevision(t, rawPath), res.Revision)
	restored := etcdtest.StartFromSnapshot(t, rawPath, etcdtest.WithoutTLS())
	got, err := restored.Client(t).Get(ctx(t), prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, got.Kvs, 500)
	for i, kv := range got.Kvs {
		require.Equal(t, etcdtest.Key(prefix, i), string(kv.Key))
		require.True(t, bytes.Equal(etcdtest.Value(prefix, i, 1000), kv.Value), "value of %s", kv.Key)
	}
	assert.Equal(t, res.Revision, got.Header.Revision)
}

func TestStreamFileRefuses(t *testing.T) {
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(notBolt, bytes.Repeat([]byte("junk"), 4096), 0o600))
	emptyBolt := filepath.Join(dir, "empty.db")
	b, err := bolt.Open(emptyBolt, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close())

	for name, tc := range map[string]struct{ path, want string }{
		"missing":          {filepath.Join(dir, "none"), "no such file"},
		"not bolt":         {notBolt, "not an etcd database"},
		"bolt but no etcd": {emptyBolt, "no key or meta bucket"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := snapshot.StreamFile(ctx(t), tc.path, "", &out, gzip.BestSpeed, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Zero(t, out.Len())
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		c := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
		etcdtest.Fill(t, c.Client(t), prefix, 1000, 2000)
		c.StopMember(0)
		cctx, cancel := context.WithCancel(ctx(t))
		defer cancel()
		var out bytes.Buffer
		_, err := snapshot.StreamFile(cctx, datadir.ToBackendFileName(c.Members[0].Dir), "", &out, gzip.BestSpeed, func(int64, int64) { cancel() })
		require.ErrorIs(t, err, context.Canceled)
		_, err = snapshot.VerifyGzip(&out)
		require.Error(t, err)
	})
}
