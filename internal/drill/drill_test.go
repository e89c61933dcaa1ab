package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/backuptest"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// fixture is a live cluster with Kubernetes-like keys and one backup of it
// in a file:// store, taken by kopsdr's own backup activities.
type fixture struct {
	cli    *clientv3.Client
	store  backupstore.Store
	url    string
	backup string
	facts  activities.Facts
}

const (
	pods       = 40
	configMaps = 30
	valueSize  = 1000
)

// newFixture fills a fresh cluster and backs it up; the keys in skip are
// left out, to make a backup of a broken cluster.
func newFixture(t testing.TB, skip ...string) *fixture {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	fillKubernetes(t, cli, skip...)
	return backUp(t, c, cli)
}

func fillKubernetes(t testing.TB, cli *clientv3.Client, skip ...string) {
	ctx := testCtx(t)
	for _, k := range []string{
		"/registry/namespaces/default", "/registry/namespaces/kube-system",
		"/registry/ranges/serviceips", "/registry/health",
	} {
		if !contains(skip, k) {
			_, err := cli.Put(ctx, k, `{"kind":"x"}`)
			require.NoError(t, err)
		}
	}
	// Master leases live on a short etcd lease in real clusters; a long one
	// here keeps the live cluster's counts still while the test runs.
	lease, err := cli.Grant(ctx, 600)
	require.NoError(t, err)
	_, err = cli.Put(ctx, "/registry/masterleases/10.0.0.1", "x", clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	etcdtest.Fill(t, cli, "/registry/pods/kube-system/", pods, valueSize)
	etcdtest.Fill(t, cli, "/registry/configmaps/default/", configMaps, valueSize)
}

// totalKeys is what newFixture writes without skips.
const totalKeys = 4 + 1 + pods + configMaps

func backUp(t testing.TB, c *etcdtest.Cluster, cli *clientv3.Client) *fixture {
	b := backuptest.Take(testCtx(t), t, c)
	return &fixture{cli: cli, store: b.Store, url: b.URL, backup: b.Name, facts: b.Facts}
}

func TestGoodBackupPasses(t *testing.T) {
	f := newFixture(t)
	tmp := t.TempDir()
	stages := map[string]int64{}
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{
		TempDir:  tmp,
		Progress: func(stage string, n int64) { stages[stage] = max(stages[stage], n) },
	})
	require.NoError(t, err)
	logJSON(t, res)

	assert.True(t, res.Passed, "%v", res.Failures)
	assert.Empty(t, res.Failures)
	assert.True(t, res.CountsCompared, "compared with the counts the backup recorded")
	assert.Equal(t, int64(totalKeys), res.Counts.Total)
	assert.Equal(t, map[string]int64{
		"/registry/namespaces/":   2,
		"/registry/ranges/":       1,
		"/registry/masterleases/": 1,
		"/registry/pods/":         pods,
		"/registry/configmaps/":   configMaps,
	}, res.Counts.ByPrefix)
	assert.Greater(t, res.Counts.Bytes, int64((pods+configMaps)*valueSize))
	assert.Equal(t, f.facts.Revision, res.Revision)
	assert.Equal(t, f.facts.EtcdVersion, res.BackupEtcdVersion)
	assert.Equal(t, f.facts.GzipBytes, res.DownloadedBytes)
	assert.Equal(t, f.facts.RawBytes, res.SnapshotBytes)
	assert.NotEmpty(t, res.EtcdVersion)
	assert.NotEmpty(t, res.StorageVersion)

	tm := res.Timings
	assert.Positive(t, tm.DownloadSeconds)
	assert.Positive(t, tm.RestoreSeconds)
	assert.Positive(t, tm.StartSeconds)
	assert.Positive(t, tm.CheckSeconds)
	assert.InDelta(t, tm.DownloadSeconds+tm.RestoreSeconds+tm.StartSeconds, tm.RTOSeconds, 1e-9)

	assert.Equal(t, f.facts.GzipBytes, stages["download"])
	assert.Equal(t, res.Counts.Bytes, stages["check"])
	assert.Contains(t, stages, "restore")
	assert.Contains(t, stages, "start")
	assertNoScratch(t, tmp)

	// The result round-trips beside the backup, where etcd-manager still
	// lists the backup as before.
	_, ok, err := drill.ReadResult(testCtx(t), f.store, f.backup)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, drill.WriteResult(testCtx(t), f.store, f.backup, res))
	got, ok, err := drill.ReadResult(testCtx(t), f.store, f.backup)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, res.Counts, got.Counts)
	assert.Equal(t, res.Revision, got.Revision)
	assert.True(t, got.At.Equal(res.At))
	names, err := etcdmanager.ListBackups(testCtx(t), f.store)
	require.NoError(t, err)
	assert.Equal(t, []string{f.backup}, names)
}

func TestDamagedObjectFailsVerification(t *testing.T) {
	f := newFixture(t)
	good := readObject(t, f)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"truncated":    {good[:len(good)/2], "unexpected EOF"},
		"flipped byte": {flipped, "does not verify"},
	} {
		t.Run(name, func(t *testing.T) {
			writeObject(t, f, tc.data)
			tmp := t.TempDir()
			res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: tmp})
			require.NoError(t, err)
			logJSON(t, res)
			assert.False(t, res.Passed)
			require.Len(t, res.Failures, 1)
			assert.Equal(t, "verify", res.Failures[0].Check)
			assert.Contains(t, res.Failures[0].Reason, f.backup+"/etcd.backup.gz does not verify")
			assert.Contains(t, res.Failures[0].Reason, tc.want)
			assert.Zero(t, res.Timings.RestoreSeconds, "no restore of a bad backup")
			assert.Zero(t, res.Timings.RTOSeconds, "no RTO without a restore")
			assertNoScratch(t, tmp)
		})
	}
}

func TestMissingKubeSystemFails(t *testing.T) {
	f := newFixture(t, "/registry/namespaces/kube-system")
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	logJSON(t, res)
	assert.False(t, res.Passed)
	assert.Equal(t, []drill.Failure{{Check: "required", Reason: "missing /registry/namespaces/kube-system"}}, res.Failures)
}

// TestExpectedCountsDisagree: kopsdr.json says two more pods than the
// snapshot holds, as when the data object is another backup's.
func TestExpectedCountsDisagree(t *testing.T) {
	f := newFixture(t)
	require.NotNil(t, f.facts.Counts)
	rec := *f.facts.Counts
	rec.Counts.Total += 2
	rec.Counts.ByPrefix["/registry/pods/"] += 2
	writeFacts(t, f, rec)
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	logJSON(t, res)
	assert.False(t, res.Passed)
	assert.True(t, res.CountsCompared)
	assert.Equal(t, []drill.Failure{
		{Check: "count", Reason: "key count 75, expected 77"},
		{Check: "count", Reason: "/registry/pods/: 40 keys, expected 42"},
	}, res.Failures)
}

// TestCountsAtTheSnapshotsRevision: writes that land while the snapshot
// streams are recorded as changes, and the drill compares at the revision
// the snapshot holds, whichever that is.
func TestCountsAtTheSnapshotsRevision(t *testing.T) {
	f := newFixture(t)
	rec := *f.facts.Counts
	rev := f.facts.Revision
	// As if the counts were taken two revisions before the snapshot and a
	// pod was created, then a config map deleted, before it started, and a
	// pod was created after: only the first two count.
	rec.Revision, rec.UpTo = rev-2, rev+1
	rec.Counts.ByPrefix["/registry/pods/"] = pods - 1 // the total stays: one pod fewer, one config map more
	rec.Counts.ByPrefix["/registry/configmaps/"] = configMaps + 1
	rec.Changes = []drill.Change{
		{Rev: rev - 1, Prefix: "/registry/pods/", Delta: 1},
		{Rev: rev, Prefix: "/registry/configmaps/", Delta: -1},
		{Rev: rev + 1, Prefix: "/registry/pods/", Delta: 1},
	}
	writeFacts(t, f, rec)
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	assert.True(t, res.Passed, "%v", res.Failures)
	assert.True(t, res.CountsCompared)

	// Recorded for revisions the snapshot is not at: not this snapshot.
	rec.Revision, rec.UpTo = rev+1, rev+5
	writeFacts(t, f, rec)
	res, err = drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	assert.False(t, res.Passed)
	assert.Equal(t, []drill.Failure{{Check: "count", Reason: fmt.Sprintf(
		"the restored data is at revision %d; the backup recorded revisions %d to %d", rev, rev+1, rev+5)}}, res.Failures)
}

// writeFacts replaces the counts in the backup's kopsdr.json.
func writeFacts(t *testing.T, f *fixture, rec drill.Recorded) {
	facts := f.facts
	facts.Counts = &rec
	data, err := json.Marshal(facts)
	require.NoError(t, err)
	_, err = f.store.Put(testCtx(t), f.backup+"/"+etcdmanager.KopsdrFile, bytes.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
}

func TestNotEnoughScratchSpace(t *testing.T) {
	f := newFixture(t)
	tmp := t.TempDir()
	_, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{
		TempDir:   tmp,
		FreeSpace: func(string) (uint64, error) { return 5 << 20, nil },
	})
	require.Error(t, err)
	t.Log(err)
	assert.Contains(t, err.Error(), tmp+" has 5 MiB free, a drill of this backup needs")
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestCleanStale(t *testing.T) {
	tmp := t.TempDir()
	old := filepath.Join(tmp, drill.ScratchPrefix+"old")
	oldNoMarker := filepath.Join(tmp, drill.ScratchPrefix+"crashed-early")
	fresh := filepath.Join(tmp, drill.ScratchPrefix+"fresh")
	other := filepath.Join(tmp, "someone-else")
	for _, d := range []string{old, oldNoMarker, fresh, other} {
		require.NoError(t, os.MkdirAll(filepath.Join(d, "data"), 0o700))
	}
	writeMarker(t, old, time.Now().Add(-2*time.Hour))
	writeMarker(t, fresh, time.Now())
	twoHoursAgo := time.Now().Add(-2 * time.Hour)
	for _, d := range []string{oldNoMarker, other} {
		require.NoError(t, os.Chtimes(d, twoHoursAgo, twoHoursAgo))
	}

	// Fresh dirs of this host: a process that is gone, and this process's
	// own id on a dir it does not use (a worker restarted in a container
	// gets its old PID back) are orphans; a live process's dir is not.
	host, _ := os.Hostname()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	goneDir := filepath.Join(tmp, drill.ScratchPrefix+"gone")
	selfDir := filepath.Join(tmp, drill.ScratchPrefix+"self")
	liveDir := filepath.Join(tmp, drill.ScratchPrefix+"live")
	for d, pid := range map[string]int{goneDir: dead.Process.Pid, selfDir: os.Getpid(), liveDir: os.Getppid()} {
		require.NoError(t, os.MkdirAll(d, 0o700))
		writeMarkerOf(t, d, time.Now(), pid, host)
	}

	removed, err := drill.CleanStale(tmp, time.Hour)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{old, oldNoMarker, goneDir, selfDir}, removed)
	assert.NoDirExists(t, old)
	assert.NoDirExists(t, oldNoMarker)
	assert.DirExists(t, fresh)
	assert.DirExists(t, other)
	assert.DirExists(t, liveDir)
}

// CountKeys on the live cluster, at the backup's revision, agrees with what
// the drill read from the restored one, even after the cluster moved on.
func TestCountKeysMatchesDrill(t *testing.T) {
	f := newFixture(t)
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	require.True(t, res.Passed, "%v", res.Failures)

	etcdtest.Fill(t, f.cli, "/registry/secrets/", 5, 100)
	_, err = f.cli.Delete(testCtx(t), "/registry/pods/", clientv3.WithPrefix())
	require.NoError(t, err)

	live, err := drill.CountKeys(testCtx(t), f.cli, f.facts.Revision)
	require.NoError(t, err)
	assert.Equal(t, res.Counts.Total, live.Total)
	assert.Equal(t, res.Counts.ByPrefix, live.ByPrefix)
	assert.Zero(t, live.Bytes, "no values read")

	now, err := drill.CountKeys(testCtx(t), f.cli, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(totalKeys-pods+5), now.Total)
	assert.Equal(t, int64(5), now.ByPrefix["/registry/secrets/"])
	assert.NotContains(t, now.ByPrefix, "/registry/pods/")
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func logJSON(t testing.TB, res drill.Result) {
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
}

func assertNoScratch(t testing.TB, dir string) {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), drill.ScratchPrefix), "scratch dir %s left behind", e.Name())
	}
}

func readObject(t testing.TB, f *fixture) []byte {
	rc, err := f.store.Get(testCtx(t), f.backup+"/"+etcdmanager.DataFile)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func writeObject(t testing.TB, f *fixture, data []byte) {
	_, err := f.store.Put(testCtx(t), f.backup+"/"+etcdmanager.DataFile, bytes.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
}

func writeMarker(t testing.TB, dir string, created time.Time) {
	writeMarkerOf(t, dir, created, 1, "another-host")
}

func writeMarkerOf(t testing.TB, dir string, created time.Time, pid int, host string) {
	b, err := json.Marshal(map[string]any{"pid": pid, "host": host, "created": created.UTC()})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, drill.MarkerFile), b, 0o600))
}

// TestEventsHoldOnlyEvents: etcd events has none of main's required keys,
// and its drill does not look for them.
func TestEventsHoldOnlyEvents(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	etcdtest.Fill(t, cli, "/registry/events/default/", 20, 100)
	f := backUp(t, c, cli)
	res, err := drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir(), Events: true})
	require.NoError(t, err)
	assert.True(t, res.Passed, "%v", res.Failures)
	assert.Equal(t, map[string]int64{"/registry/events/": 20}, res.Counts.ByPrefix)

	res, err = drill.Run(testCtx(t), f.store, f.backup, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	assert.False(t, res.Passed, "as main, it lacks the namespaces")
}
