package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// checkpoint is the exact state of main's keyspace at one revision, and,
// for the checkpoints restored by time, a time at which kopsdr had
// observed that revision and no later one.
type checkpoint struct {
	rev  int64
	at   time.Time // zero: restored by revision
	kvs  map[string]*mvccpb.KeyValue
	note string
}

// TestPointInTimeCheckpoints captures main while a workload writes,
// overwrites and deletes keys in transactions, and makes a backup at each
// of 24 checkpoints, by revision or by time: each must hold exactly the
// checkpoint's keys, values and revisions. On the way: a full backup in
// the middle (later points start from it), the worker stopped and a new
// one started, a leader change and a member restart. Then a compaction
// while capture is stopped ends the chain: the gap is recorded, a new
// chain starts after a new full backup, and a point inside the gap is
// refused naming the nearest restorable points. Bad points are refused
// with nothing written.
func TestPointInTimeCheckpoints(t *testing.T) {
	tp := stack.StartTemporal(t)
	t.Setenv("TMPDIR", t.TempDir())
	w := tp.StartWorker(t)
	// versitygw, a real S3 server (capture's own tests and the README's
	// examples run on gofakes3).
	s3 := s3test.StartVersityGW(t, bucket)
	s3.Setenv(t)
	k := startKopsCluster(t, 3)
	cli := k.main.Client(t)
	putKubernetesBasics(t, cli)
	ctx := testenv.Context(t, 12*time.Minute)
	state := "s3://" + bucket
	conn := k.main.ConnConfig()
	capIn := api.ChangeCaptureInput{Cluster: k.name, StateStore: state, Endpoints: k.main.Endpoints,
		CACert: conn.CACert, Cert: conn.Cert, Key: conn.Key, Interval: "1s"}
	stores, err := capIn.Stores()
	require.NoError(t, err)
	changes := openStore(t, ctx, stores.Change)
	backups := openStore(t, ctx, stores.Backup)

	capRun, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.CaptureWorkflowID(k.name, "main"), TaskQueue: temporalconn.TaskQueue},
		workflows.ChangeCapture, capIn)
	require.NoError(t, err)
	waitChains(t, ctx, changes, 1)

	// Enabled twice: Temporal refuses the second start.
	_, err = tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.CaptureWorkflowID(k.name, "main"), TaskQueue: temporalconn.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true}, workflows.ChangeCapture, capIn)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	require.True(t, errors.As(err, &started), "%v", err)

	wl := &workload{t: t, cli: cli, rnd: rand.New(rand.NewPCG(1, 2))}
	var cps []checkpoint
	for i := range 24 {
		note := ""
		switch i {
		case 6: // a full backup: the later points start from it
			runBackup(t, ctx, tp, k, state)
			note = "after a second full backup"
		case 9: // the worker goes away mid-capture; another takes over
			w.Stop()
			wl.step(15)
			w = tp.StartWorker(t)
			note = "worker replaced"
		case 13: // a leader change and a member restart
			leader := k.main.LeaderIndex(t)
			k.main.StopMember(leader)
			wl.step(10)
			k.main.RestartMember(t, leader)
			note = "leader stopped and restarted"
		}
		rev := wl.step(10 + i%7)
		cp := checkpoint{rev: rev, kvs: wl.keyspace(rev), note: note}
		if i%5 == 2 { // restored by time: quiet until kopsdr has observed rev
			waitDurable(t, ctx, changes, rev)
			cp.at = time.Now().UTC()
			time.Sleep(50 * time.Millisecond)
		}
		cps = append(cps, cp)
	}
	waitDurable(t, ctx, changes, cps[len(cps)-1].rev)

	// Newest first: a made backup is a base for later points (its revision
	// is exact), so going backwards makes every point from a full backup,
	// replaying across the worker change, the leader change and the
	// member restart.
	for i := len(cps) - 1; i >= 0; i-- {
		cp := cps[i]
		in := api.MakeBackupInput{Cluster: k.name, StateStore: state}
		by := fmt.Sprintf("revision %d", cp.rev)
		if cp.at.IsZero() {
			in.Revision = cp.rev
		} else {
			in.At = cp.at.Format(time.RFC3339Nano)
			by = "time " + in.At
		}
		res := makeBackup(t, ctx, tp, in, fmt.Sprintf("cp%02d", i))
		if i == 22 { // by time
			stack.RecordHistory(t, ctx, tp.Client, "make-backup/cp22", "", "make-backup")
		}
		require.Equal(t, cp.rev, res.Revision, "checkpoint %d by %s", i, by)
		got := restoredKeyspace(t, ctx, backups, res.Backup)
		requireSameKeyspace(t, cp.kvs, got, "checkpoint %d (%s, %s, base %s)", i, by, cp.note, res.BaseBackup)
		t.Logf("checkpoint %2d %-38s rev %4d keys %3d base %s (rev %d) replayed %3d txns %s", i, by, cp.rev, len(cp.kvs), res.BaseBackup, res.BaseRevision, res.Txns, cp.note)
	}

	// Bad points: refused, nothing written.
	before, err := etcdmanager.ListBackups(ctx, backups)
	require.NoError(t, err)
	for _, bad := range []struct {
		in  api.MakeBackupInput
		typ string
		msg string
	}{
		{api.MakeBackupInput{At: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, api.ErrTypePointNotRestorable, "is in the future"},
		{api.MakeBackupInput{Revision: 2}, api.ErrTypePointNotRestorable, "is before the earliest captured change"},
		{api.MakeBackupInput{Revision: cps[len(cps)-1].rev + 10000}, api.ErrTypePointNotRestorable, "has not been captured"},
		{api.MakeBackupInput{Revision: 5, At: time.Now().UTC().Format(time.RFC3339)}, api.ErrTypeInvalidInput, "not both"},
	} {
		bad.in.Cluster, bad.in.StateStore = k.name, state
		err := makeBackupErr(t, ctx, tp, bad.in)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "%v", err)
		require.Equal(t, bad.typ, appErr.Type(), "%v", err)
		require.Contains(t, appErr.Error(), bad.msg)
	}

	// A gap: capture stops, etcd compacts past it, capture resumes.
	w.Stop()
	gapRev := wl.step(20)
	_, err = cli.Compact(ctx, gapRev, clientv3.WithCompactPhysical())
	require.NoError(t, err)
	tp.StartWorker(t)
	waitChains(t, ctx, changes, 2)
	chains, err := changelog.ListChains(ctx, changes)
	require.NoError(t, err)
	require.NotNil(t, chains[0].End)
	require.Equal(t, changelog.EndCompacted, chains[0].End.Reason)
	require.Less(t, chains[0].LastRevision, gapRev)
	require.GreaterOrEqual(t, chains[1].StartRevision, gapRev)
	err = makeBackupErr(t, ctx, tp, api.MakeBackupInput{Cluster: k.name, StateStore: state, Revision: gapRev - 1})
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.Equal(t, api.ErrTypePointNotRestorable, appErr.Type())
	require.Contains(t, appErr.Error(), "falls in a gap of the change log")
	require.Contains(t, appErr.Error(), "compacted")
	require.Contains(t, appErr.Error(), "the nearest restorable points are revision")
	after, err := etcdmanager.ListBackups(ctx, backups)
	require.NoError(t, err)
	require.Len(t, after, len(before)+1, "refused points wrote nothing; only the new chain's full backup was added")

	// The new chain restores too.
	rev := wl.step(12)
	waitDurable(t, ctx, changes, rev)
	res := makeBackup(t, ctx, tp, api.MakeBackupInput{Cluster: k.name, StateStore: state, Revision: rev}, "after-gap")
	requireSameKeyspace(t, wl.keyspace(rev), restoredKeyspace(t, ctx, backups, res.Backup), "after the gap")

	// Disabled: the chain ends as disabled.
	require.NoError(t, tp.Client.CancelWorkflow(ctx, capRun.GetID(), ""))
	require.Eventually(t, func() bool {
		cs, err := changelog.ListChains(ctx, changes)
		return err == nil && cs[len(cs)-1].End != nil && cs[len(cs)-1].End.Reason == changelog.EndDisabled
	}, time.Minute, 200*time.Millisecond)
	// The run holds a chain start, a worker change, a compaction gap and a
	// new chain, and its cancellation.
	require.Error(t, temporalconn.Await(ctx, capRun, nil))
	stack.RecordHistory(t, ctx, tp.Client, capRun.GetID(), capRun.GetRunID(), "change-capture")
}

// workload writes a Kubernetes-like mix: creates, updates, deletes,
// multi-key transactions and lease-attached keys.
type workload struct {
	t    *testing.T
	cli  *clientv3.Client
	rnd  *rand.Rand
	n    int
	keys []string
}

// step makes n changes and returns the revision of the last.
func (w *workload) step(n int) int64 {
	ctx := w.t.Context()
	var rev int64
	for range n {
		var hdr int64
		switch r := w.rnd.IntN(10); {
		case r < 4 || len(w.keys) < 5: // create
			w.n++
			k := fmt.Sprintf("/registry/configmaps/ns-%d/cm-%05d", w.n%4, w.n)
			resp, err := w.cli.Put(ctx, k, fmt.Sprintf(`{"v":%d,"pad":"%x"}`, w.n, w.rnd.Uint64()))
			require.NoError(w.t, err)
			w.keys, hdr = append(w.keys, k), resp.Header.Revision
		case r < 7: // update
			k := w.keys[w.rnd.IntN(len(w.keys))]
			resp, err := w.cli.Put(ctx, k, fmt.Sprintf(`{"updated":%d}`, w.rnd.Uint64()))
			require.NoError(w.t, err)
			hdr = resp.Header.Revision
		case r < 8: // delete
			i := w.rnd.IntN(len(w.keys))
			resp, err := w.cli.Delete(ctx, w.keys[i])
			require.NoError(w.t, err)
			w.keys, hdr = append(w.keys[:i], w.keys[i+1:]...), resp.Header.Revision
		case r < 9: // a transaction: two creates, an update and a delete at one revision
			w.n += 2
			a, b := fmt.Sprintf("/registry/pods/default/p-%05d", w.n-1), fmt.Sprintf("/registry/pods/default/p-%05d", w.n)
			upd := w.keys[0]
			del := w.keys[len(w.keys)-1]
			resp, err := w.cli.Txn(ctx).Then(clientv3.OpPut(a, "pa"), clientv3.OpPut(b, "pb"), clientv3.OpPut(upd, "txn"), clientv3.OpDelete(del)).Commit()
			require.NoError(w.t, err)
			w.keys = append(w.keys[:len(w.keys)-1], a, b)
			hdr = resp.Header.Revision
		default: // a key on a lease, as Kubernetes events and master leases are
			l, err := w.cli.Grant(ctx, 3600)
			require.NoError(w.t, err)
			w.n++
			k := fmt.Sprintf("/registry/events/default/ev-%05d", w.n)
			resp, err := w.cli.Put(ctx, k, "event", clientv3.WithLease(l.ID))
			require.NoError(w.t, err)
			w.keys, hdr = append(w.keys, k), resp.Header.Revision
		}
		rev = max(rev, hdr)
	}
	return rev
}

// keyspace reads every key at rev.
func (w *workload) keyspace(rev int64) map[string]*mvccpb.KeyValue {
	resp, err := w.cli.Get(w.t.Context(), "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev))
	require.NoError(w.t, err)
	return kvMap(resp.Kvs)
}

func kvMap(kvs []*mvccpb.KeyValue) map[string]*mvccpb.KeyValue {
	m := make(map[string]*mvccpb.KeyValue, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv
	}
	return m
}

// requireSameKeyspace compares keys, values and the revisions Kubernetes
// sees (resourceVersion is the mod revision).
func requireSameKeyspace(t *testing.T, want, got map[string]*mvccpb.KeyValue, msg string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(msg, args...)
	require.Equal(t, len(want), len(got), "%s: key count", what)
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "%s: %s missing", what, k)
		require.Equal(t, string(w.Value), string(g.Value), "%s: value of %s", what, k)
		require.Equal(t, w.ModRevision, g.ModRevision, "%s: mod revision of %s", what, k)
		require.Equal(t, w.CreateRevision, g.CreateRevision, "%s: create revision of %s", what, k)
		require.Equal(t, w.Version, g.Version, "%s: version of %s", what, k)
	}
}

// restoredKeyspace restores a backup as etcd-manager would (etcd's restore
// with the hash check) and reads every key.
func restoredKeyspace(t *testing.T, ctx context.Context, store backupstore.Store, name string) map[string]*mvccpb.KeyValue {
	t.Helper()
	path := downloadSnapshot(t, ctx, store, name)
	c := etcdtest.StartFromSnapshot(t, path, etcdtest.WithoutTLS())
	defer c.Stop()
	resp, err := c.Client(t).Get(ctx, "\x00", clientv3.WithFromKey())
	require.NoError(t, err)
	return kvMap(resp.Kvs)
}

func makeBackup(t *testing.T, ctx context.Context, tp *stack.Temporal, in api.MakeBackupInput, id string) api.MakeBackupResult {
	t.Helper()
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "make-backup/" + id, TaskQueue: temporalconn.TaskQueue},
		workflows.MakeBackup, in)
	require.NoError(t, err)
	var res api.MakeBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	return res
}

func makeBackupErr(t *testing.T, ctx context.Context, tp *stack.Temporal, in api.MakeBackupInput) error {
	t.Helper()
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.MakeBackup, in)
	require.NoError(t, err)
	return temporalconn.Await(ctx, run, nil)
}

func runBackup(t *testing.T, ctx context.Context, tp *stack.Temporal, k *kopsCluster, state string) {
	t.Helper()
	in := workflows.EtcdBackupInput{Cluster: k.name, EtcdCluster: "main", StateStore: state, Endpoints: k.main.Endpoints,
		BackupOptions: tlsOf(k.main.ConnConfig())}
	in.NoPrune = true
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup, in)
	require.NoError(t, err)
	require.NoError(t, temporalconn.Await(ctx, run, nil))
}

// waitChains waits until the change store holds n chains and the newest
// has a head (capture is running on it).
func waitChains(t *testing.T, ctx context.Context, s backupstore.Store, n int) {
	t.Helper()
	var cs []changelog.ChainState
	var err error
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cs, err = changelog.ListChains(ctx, s)
		// Ready: n chains, and the open one has written its head. Not
		// cs[n-1]: chains are ordered by start revision, not age.
		if err == nil && len(cs) == n && !slices.ContainsFunc(cs, func(c changelog.ChainState) bool { return c.End == nil && c.Head == nil }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d chains with a head; the last listing: %+v, %v", n, cs, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitDurable waits until capture has made rev durable.
func waitDurable(t *testing.T, ctx context.Context, s backupstore.Store, rev int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		cs, err := changelog.ListChains(ctx, s)
		return err == nil && len(cs) > 0 && cs[len(cs)-1].LastRevision >= rev
	}, 3*time.Minute, 100*time.Millisecond, "waiting for revision %d to be durable", rev)
}

// TestPointInTimeRestore is the disaster the feature is for: capture runs
// on main, a good change is made, then a bad one (every configmap deleted
// at once, a `kubectl delete` in the wrong namespace). The restore goes
// to the second between them through the etcd-manager stand-ins on three
// masters: the plan names the base backup and the replay, the backup at
// the point is made after approval, and etcd-manager restores it. events,
// which has no captured changes, goes to its newest backup before that
// second. Capture notices the restored cluster and starts a new chain.
func TestPointInTimeRestore(t *testing.T) {
	f := newRestoreFixture(t, true)
	ctx := testenv.Context(t, 8*time.Minute)
	capIn := api.ChangeCaptureInput{Cluster: f.c.Name, BackupStore: f.c.MainStore, Endpoints: f.c.MainEndpoints,
		CACert: f.c.CACert, Cert: f.c.ClientCert, Key: f.c.ClientKey, Interval: "1s"}
	stores, err := capIn.Stores()
	require.NoError(t, err)
	changes := openStore(t, ctx, stores.Change)
	capRun, err := f.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.CaptureWorkflowID(f.c.Name, "main"), TaskQueue: temporalconn.TaskQueue},
		workflows.ChangeCapture, capIn)
	require.NoError(t, err)
	waitChains(t, ctx, changes, 1)

	main := f.c.Client(t, masters.Main)
	good, err := main.Put(ctx, "/registry/configmaps/default/good-change", "kept")
	require.NoError(t, err)
	waitDurable(t, ctx, changes, good.Header.Revision)
	point := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond) // the bad change comes a second later
	bad, err := main.Delete(ctx, "/registry/configmaps/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Positive(t, bad.Deleted)
	waitDurable(t, ctx, changes, bad.Header.Revision)

	in := f.input()
	in.Main.Backup, in.Events.Backup = "", ""
	in.At, in.Approve = point.Format(time.RFC3339Nano), true
	run := f.start(t, ctx, in)
	var res workflows.EtcdManagerRestoreResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	stack.RecordHistory(t, ctx, f.tp.Client, run.GetID(), run.GetRunID(), "etcd-manager-restore-point-in-time")

	pit := res.Plan.Backups[0].PointInTime
	require.NotNil(t, pit, "main is restored to a point")
	// The live apiservers renew their master leases meanwhile, so the
	// point is the good change or a lease write after it, never the bad one.
	require.GreaterOrEqual(t, pit.Revision, good.Header.Revision, "the point holds the good change")
	require.Less(t, pit.Revision, bad.Header.Revision, "the point is before the bad change")
	t.Logf("plan: %s", pit.Description)
	require.Nil(t, res.Plan.Backups[1].PointInTime, "events has no captured changes")
	require.Equal(t, f.backups[masters.Events], res.Plan.Backups[1].Backup, "events: its newest backup before the point")
	made := res.Plan.Backups[0].Backup
	facts := readFacts(t, ctx, f.c.Store(t, masters.Main), made)
	require.NotNil(t, facts.PointInTime)
	require.Equal(t, pit.Revision, facts.PointInTime.Revision)

	require.NotNil(t, f.get(t, ctx, "/registry/configmaps/default/good-change"), "the good change is kept")
	require.NotNil(t, f.get(t, ctx, "/registry/configmaps/default/cm-005"), "the bad delete is undone")
	require.NotNil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"), "changes before capture started are kept")
	f.requireCommandsConsumed(t, ctx)

	// The restored cluster has a new id: the chain ends, a new one starts.
	// ListChains orders by start revision, and etcd-manager restores by
	// copying keys into a new cluster whose revisions start again near 1,
	// so the new chain may come first: find the old one by its id.
	waitChains(t, ctx, changes, 2)
	chains, err := changelog.ListChains(ctx, changes)
	require.NoError(t, err)
	i := slices.IndexFunc(chains, func(c changelog.ChainState) bool { return c.ID == pit.Chain })
	require.GreaterOrEqual(t, i, 0, "the chain the point came from is listed: %+v", chains)
	require.NotNil(t, chains[i].End, "the chain the point came from has ended")
	require.Equal(t, changelog.EndClusterChanged, chains[i].End.Reason)
	require.NoError(t, f.tp.Client.CancelWorkflow(ctx, capRun.GetID(), ""))
}

func readFacts(t *testing.T, ctx context.Context, store backupstore.Store, name string) activities.Facts {
	t.Helper()
	var f activities.Facts
	require.NoError(t, json.Unmarshal(readAll(t, ctx, store, name+"/"+etcdmanager.KopsdrFile), &f))
	return f
}
