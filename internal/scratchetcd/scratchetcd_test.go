package scratchetcd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

const prefix = "kopsdr-test-"

// backupOf streams a snapshot of a small live cluster into a file:// store
// as <backup>/etcd.backup.gz and returns the store and what was written.
func backupOf(t *testing.T, backup string) (backupstore.Store, snapshot.Result, *clientv3.Client) {
	ctx := testCtx(t)
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	etcdtest.Fill(t, cli, "/registry/pods/", 50, 500)
	var buf bytes.Buffer
	res, err := snapshot.Stream(ctx, cli, c.Endpoints[0], &buf, 1, nil)
	require.NoError(t, err)
	store, err := backupstore.Open(ctx, "file://"+t.TempDir()+"/store", backupstore.Options{})
	require.NoError(t, err)
	_, err = store.Put(ctx, backup+"/"+etcdmanager.DataFile, &buf, backupstore.PutOptions{})
	require.NoError(t, err)
	return store, res, cli
}

func TestDownloadRestoreStart(t *testing.T) {
	ctx := testCtx(t)
	store, snap, live := backupOf(t, "b1")
	tmp := t.TempDir()
	require.NoError(t, scratchetcd.CheckSpace(tmp, scratchetcd.Space{Bytes: scratchetcd.Need(snap.RawBytes, 0)}, nil))
	dir, err := scratchetcd.NewDir(tmp, prefix)
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dir.Path, scratchetcd.MarkerFile))
	assert.True(t, strings.HasPrefix(filepath.Base(dir.Path), prefix))

	var reported int64
	d, err := scratchetcd.Download(ctx, store, "b1", dir.RawSnapshotPath(), scratchetcd.DownloadOptions{
		RawSHA256: snap.RawSHA256,
		Progress:  func(n int64) { reported = n },
	})
	require.NoError(t, err)
	assert.Equal(t, snap.GzipBytes, d.GzipBytes)
	assert.Equal(t, snap.GzipBytes, reported)
	assert.Equal(t, snap.RawBytes, d.Verified.RawBytes)
	assert.Equal(t, snap.GzipSHA256, d.Verified.GzipSHA256)

	require.NoError(t, dir.Restore(dir.RawSnapshotPath(), scratchetcd.Options{}))
	// A revoked lease can delete thousands of keys at one revision, and
	// replay writes them as one transaction: the options raise etcd's limits.
	srv, err := dir.Start(ctx, scratchetcd.Options{MaxTxnOps: 1 << 20, MaxRequestBytes: 64 << 20})
	require.NoError(t, err)
	defer srv.Close()

	want, err := live.Get(ctx, "/registry/", clientv3.WithPrefix())
	require.NoError(t, err)
	got, err := srv.Client.Get(ctx, "/registry/", clientv3.WithPrefix())
	require.NoError(t, err)
	assert.Equal(t, want.Header.Revision, got.Header.Revision)
	assert.Equal(t, want.Kvs, got.Kvs)

	ops := make([]clientv3.Op, 5000)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("/big/%05d", i), strings.Repeat("x", 2000)) // ~10 MiB in all
	}
	resp, err := srv.Client.Txn(ctx).Then(ops...).Commit()
	require.NoError(t, err)
	assert.Equal(t, got.Header.Revision+1, resp.Header.Revision, "one transaction, one revision")
	srv.Close()

	// Without the options etcd's defaults hold.
	srv, err = dir.Start(ctx, scratchetcd.Options{})
	require.NoError(t, err)
	defer srv.Close()
	_, err = srv.Client.Txn(ctx).Then(ops[:200]...).Commit()
	require.ErrorIs(t, err, rpctypes.ErrTooManyOps)
	_, err = etcdconn.Status(ctx, srv.Client, srv.Endpoint)
	require.NoError(t, err)
	srv.Close()

	dir.Remove()
	assert.NoDirExists(t, dir.Path)
}

func TestDownloadErrors(t *testing.T) {
	ctx := testCtx(t)
	store, snap, _ := backupOf(t, "b1")

	path := filepath.Join(t.TempDir(), "missing.db")
	_, err := scratchetcd.Download(ctx, store, "nope", path, scratchetcd.DownloadOptions{})
	var bad *scratchetcd.BackupError
	require.ErrorAs(t, err, &bad)
	assert.ErrorIs(t, err, backupstore.ErrNotFound)
	assert.Equal(t, "missing nope/etcd.backup.gz", err.Error())

	path = filepath.Join(t.TempDir(), "sha.db")
	d, err := scratchetcd.Download(ctx, store, "b1", path, scratchetcd.DownloadOptions{RawSHA256: "00"})
	require.ErrorAs(t, err, &bad)
	assert.Equal(t, fmt.Sprintf("snapshot sha256 %s, kopsdr.json says 00", snap.RawSHA256), err.Error())
	assert.Equal(t, snap.RawBytes, d.Verified.RawBytes)

	rc, err := store.Get(ctx, "b1/"+etcdmanager.DataFile)
	require.NoError(t, err)
	var data bytes.Buffer
	_, err = data.ReadFrom(rc)
	rc.Close()
	require.NoError(t, err)
	_, err = store.Put(ctx, "b2/"+etcdmanager.DataFile, bytes.NewReader(data.Bytes()[:data.Len()/2]), backupstore.PutOptions{})
	require.NoError(t, err)
	path = filepath.Join(t.TempDir(), "truncated.db")
	d, err = scratchetcd.Download(ctx, store, "b2", path, scratchetcd.DownloadOptions{})
	require.ErrorAs(t, err, &bad)
	assert.Contains(t, err.Error(), "b2/etcd.backup.gz does not verify: ")
	assert.Equal(t, int64(data.Len()/2), d.GzipBytes)
	assert.Zero(t, d.Verified.RawBytes)

	// Not the backup's fault: the target exists (our disk), the context ends.
	_, err = scratchetcd.Download(ctx, store, "b1", path, scratchetcd.DownloadOptions{})
	assert.ErrorIs(t, err, scratchetcd.ErrScratch)
	assert.False(t, errors.As(err, &bad))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = scratchetcd.Download(cctx, store, "b1", filepath.Join(t.TempDir(), "x.db"), scratchetcd.DownloadOptions{})
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, errors.As(err, &bad))
}

func TestCheckSpace(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "sub")
	err := scratchetcd.CheckSpace(tmp, scratchetcd.Space{Bytes: 100 << 20, For: "a test", Why: "because"},
		func(string) (uint64, error) { return 5 << 20, nil })
	require.ErrorIs(t, err, scratchetcd.ErrScratch)
	assert.Equal(t, "scratch space: "+tmp+" has 5 MiB free, a test needs 100 MiB (because); free some or set a larger temp dir", err.Error())
	assert.DirExists(t, tmp)
	assert.NoError(t, scratchetcd.CheckSpace(tmp, scratchetcd.Space{Bytes: 1}, nil))
	assert.Equal(t, uint64(2*1000*11/10)+scratchetcd.WALReserve, scratchetcd.Need(1000, 0))
	assert.Equal(t, scratchetcd.Need(1000, 0), scratchetcd.Need(0, 100), "10x the gzip size without the raw size")
}

// CleanStale only looks at its own prefix and never at dirs in use here.
func TestCleanStalePrefix(t *testing.T) {
	tmp := t.TempDir()
	mine, err := scratchetcd.NewDir(tmp, prefix)
	require.NoError(t, err)
	defer mine.Remove()
	other := filepath.Join(tmp, "kopsdr-other-x")
	old := filepath.Join(tmp, prefix+"old")
	for _, d := range []string{other, old} {
		require.NoError(t, os.MkdirAll(d, 0o700))
		ago := time.Now().Add(-2 * time.Hour)
		require.NoError(t, os.Chtimes(d, ago, ago))
	}
	ago := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(mine.Path, ago, ago))
	removed, err := scratchetcd.CleanStale(tmp, prefix, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, []string{old}, removed)
	assert.DirExists(t, mine.Path, "in use by this process; its marker names this process")
	assert.DirExists(t, other)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
