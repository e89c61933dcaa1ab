package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// TestPreflightHeartbeatsThroughout takes a real backup into an S3 store
// and pre-flights its restore with a 1 ms heartbeat: it passes, reports
// the backup's facts, and heartbeats (under -race, without racing the
// progress it updates as it reads). The store holds back the backup's
// data until the first heartbeat has arrived (a minute at most), so that
// a pre-flight over before its first tick, as on a loaded machine, cannot
// pass or fail the test by timing.
func TestPreflightHeartbeatsThroughout(t *testing.T) {
	saved := preflightBeat
	preflightBeat = time.Millisecond
	t.Cleanup(func() { preflightBeat = saved })

	beat := make(chan struct{})
	var beatOnce sync.Once
	var hold atomic.Bool // off while the backup is taken: it reads its data back
	var held atomic.Int32
	srv := s3test.StartGoFakeS3Wrapped(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if hold.Load() && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/"+etcdmanager.DataFile) {
				held.Add(1)
				select {
				case <-beat:
				case <-time.After(time.Minute):
				}
			}
			h.ServeHTTP(w, req)
		})
	}, "preflight")
	srv.Setenv(t)
	etcd := etcdtest.Start(t, 1)
	store := "s3://preflight/c.example.com/backups/etcd/main"
	name, up := takeBackup(t, etcd, store, 200)
	hold.Store(true)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	r := &Restore{}
	env.RegisterActivity(r)
	var beats atomic.Int64
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) {
		beats.Add(1)
		beatOnce.Do(func() { close(beat) })
	})
	v, err := env.ExecuteActivity(r.Preflight, PreflightInput{Clusters: []PreflightCluster{{
		EtcdCluster: "main", Field: "main.backup", Store: store, Backup: "latest", Etcd: etcd.ConnConfig(),
	}}})
	require.NoError(t, err)
	var res PreflightResult
	require.NoError(t, v.Get(&res))
	require.Len(t, res.Clusters, 1)
	require.Equal(t, name, res.Clusters[0].Backup)
	require.Equal(t, up.GzipBytes, res.Clusters[0].Bytes)
	require.Equal(t, up.Revision, res.Clusters[0].Revision)
	require.True(t, res.Clusters[0].EtcdAnswers)
	require.Positive(t, held.Load(), "the pre-flight read the backup's data from the store")
	require.Positive(t, beats.Load(), "pre-flight heartbeated")
}

// TestPreflightChecksEveryBackupOnce pre-flights the same real backup three
// ways: as kopsdr took it (checked against kopsdr.json's sha256 in one
// plain read), with one stored byte flipped (refused, naming the recorded
// checksums), and as etcd-manager would have written it, without
// kopsdr.json (decompressed and its trailer checked: the flipped byte is
// found there too).
func TestPreflightChecksEveryBackupOnce(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	dir := t.TempDir() + "/backups/main"
	store := "file://" + dir
	name, up := takeBackup(t, etcd, store, 100)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	r := &Restore{}
	env.RegisterActivity(r)
	preflight := func() (PreflightResult, error) {
		v, err := env.ExecuteActivity(r.Preflight, PreflightInput{Clusters: []PreflightCluster{{
			EtcdCluster: "main", Field: "main.backup", Store: store, Backup: name, Etcd: etcd.ConnConfig(),
		}}})
		var res PreflightResult
		if err == nil {
			require.NoError(t, v.Get(&res))
		}
		return res, err
	}

	res, err := preflight()
	require.NoError(t, err)
	require.Equal(t, up.GzipBytes, res.Clusters[0].Bytes)
	require.Equal(t, up.Revision, res.Clusters[0].Revision)

	data := dir + "/" + name + "/" + etcdmanager.DataFile
	raw, err := os.ReadFile(data)
	require.NoError(t, err)
	raw[len(raw)/2] ^= 0x40
	require.NoError(t, os.WriteFile(data, raw, 0o644))
	_, err = preflight()
	require.ErrorContains(t, err, "does not match the checksums kopsdr recorded")
	require.ErrorContains(t, err, up.GzipSHA256)

	require.NoError(t, os.Remove(dir+"/"+name+"/"+etcdmanager.KopsdrFile))
	_, err = preflight()
	require.ErrorContains(t, err, "is corrupt")
}

// takeBackup fills etcd with keys configmaps and backs it up into store as
// kopsdr does (upload, then finalize), with a cluster spec beside it, as a
// restore needs.
func takeBackup(t *testing.T, etcd *etcdtest.Cluster, store string, keys int) (string, UploadResult) {
	t.Helper()
	etcdtest.Fill(t, etcd.Client(t), "/registry/configmaps/", keys, 4000)
	ctx := context.Background()
	name := etcdmanager.BackupName(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), 1)
	b := &Backup{}
	up, err := b.UploadSnapshot(ctx, UploadInput{Store: store, Name: name, Etcd: etcd.ConnConfig()})
	require.NoError(t, err)
	_, err = b.FinalizeBackup(ctx, FinalizeInput{Store: store, Name: name, Upload: up, MemberCount: 1, Timestamp: time.Now()})
	require.NoError(t, err)
	st, err := backupstore.Open(ctx, store, backupstore.Options{})
	require.NoError(t, err)
	require.NoError(t, etcdmanager.WriteClusterSpec(ctx, st, etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: up.EtcdVersion}))
	return name, up
}

// TestSHA256StreamMatchesOnePass: hashing on a second goroutine gives the
// digest and length of hashing in one pass, for sizes around its buffers.
func TestSHA256StreamMatchesOnePass(t *testing.T) {
	for _, size := range []int{0, 1, 256<<10 - 1, 256 << 10, 256<<10 + 1, 5<<20 + 7} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		n, sum, err := sha256Stream(iotest.HalfReader(bytes.NewReader(data)))
		require.NoError(t, err)
		want := sha256.Sum256(data)
		require.Equal(t, int64(size), n)
		require.Equal(t, hex.EncodeToString(want[:]), sum, "size %d", size)
	}
	_, _, err := sha256Stream(iotest.TimeoutReader(bytes.NewReader(make([]byte, 1<<20))))
	require.ErrorIs(t, err, iotest.ErrTimeout, "a read error is returned, not hidden")
}
