package replay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/replay"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

const (
	revokedKeys = 300 // more than etcd's default 128 ops per transaction
	configMaps  = 30
)

// history is a base backup and every change made after it, captured with
// a real watch, with the revisions at which the test checks the result.
type history struct {
	*base
	txns        []changelog.Txn
	checkpoints []int64
	leases      map[string]clientv3.LeaseID
}

// newHistory fills a cluster (plain keys, keys on leases), backs it up,
// then makes every kind of change a Kubernetes cluster makes: creates,
// updates, deletes, multi-key transactions, leased keys on new and old
// leases, a lease revoke and a range delete, each deleting many keys at
// one revision.
func newHistory(t *testing.T) *history {
	ctx := testCtx(t)
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	h := &history{leases: map[string]clientv3.LeaseID{}}
	grant := func(name string, ttl int64) clientv3.LeaseID {
		l, err := cli.Grant(ctx, ttl)
		require.NoError(t, err)
		h.leases[name] = l.ID
		return l.ID
	}
	put(t, cli, "/registry/namespaces/default", `{"kind":"Namespace"}`)
	put(t, cli, "/registry/namespaces/kube-system", `{"kind":"Namespace"}`)
	put(t, cli, "/registry/ranges/serviceips", `{"kind":"RangeAllocation"}`)
	etcdtest.Fill(t, cli, "/registry/pods/default/", 50, 300)
	etcdtest.Fill(t, cli, "/registry/configmaps/default/", configMaps, 200)
	events := grant("events", 600)
	for i := range revokedKeys {
		put(t, cli, fmt.Sprintf("/registry/events/default/e%04d", i), "event", clientv3.WithLease(events))
	}
	master := grant("master", 600)
	put(t, cli, "/registry/masterleases/10.0.0.1", "m1", clientv3.WithLease(master))
	h.base = backUp(t, c, cli)
	baseRev := h.facts.Revision
	require.Equal(t, baseRev, readAll(t, cli, 0).Revision, "nothing written during the backup")
	rec := record(t, cli, baseRev)
	h.checkpoints = append(h.checkpoints, baseRev)
	cp := func(rev int64) { h.checkpoints = append(h.checkpoints, rev) }

	// Creates, one per revision; check the first alone too.
	for i := range 20 {
		rev := put(t, cli, fmt.Sprintf("/registry/pods/default/new-%02d", i), fmt.Sprintf("new pod %d", i))
		if i == 0 {
			cp(rev)
		}
	}
	cp(readAll(t, cli, 0).Revision)
	// Updates of keys the base holds.
	var rev int64
	for i := range 10 {
		rev = put(t, cli, etcdtest.Key("/registry/pods/default/", i), fmt.Sprintf("updated %d", i))
	}
	cp(rev)
	// Deletes.
	for i := 10; i < 15; i++ {
		resp, err := cli.Delete(ctx, etcdtest.Key("/registry/pods/default/", i))
		require.NoError(t, err)
		require.EqualValues(t, 1, resp.Deleted)
		rev = resp.Header.Revision
	}
	cp(rev)
	// One transaction, many keys: creates, an update and deletes at one revision.
	tr, err := cli.Txn(ctx).Then(
		clientv3.OpPut("/registry/secrets/default/s1", "s1"),
		clientv3.OpPut("/registry/secrets/default/s2", "s2"),
		clientv3.OpPut(etcdtest.Key("/registry/pods/default/", 20), "updated in a txn"),
		clientv3.OpDelete(etcdtest.Key("/registry/pods/default/", 21)),
		clientv3.OpDelete(etcdtest.Key("/registry/pods/default/", 22)),
	).Commit()
	require.NoError(t, err)
	cp(tr.Header.Revision)
	// Keys on a new lease, which replay must grant, and on an old one.
	fresh := grant("fresh", 600)
	for i := range 5 {
		put(t, cli, fmt.Sprintf("/registry/events/default/fresh-%d", i), "fresh", clientv3.WithLease(fresh))
	}
	put(t, cli, "/registry/events/default/late", "late", clientv3.WithLease(events))
	rev = put(t, cli, "/registry/masterleases/10.0.0.1", "m1 renewed", clientv3.WithLease(master))
	cp(rev)
	// A lease revoke: every key of the lease deleted at one revision (as
	// when a lease expires in the original cluster).
	rv, err := cli.Revoke(ctx, events)
	require.NoError(t, err)
	cp(rv.Header.Revision)
	// A range delete of every config map at one revision.
	dr, err := cli.Delete(ctx, "/registry/configmaps/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.EqualValues(t, configMaps, dr.Deleted)
	cp(dr.Header.Revision)
	// A leased key rewritten without its lease, a key moved to another lease,
	// a key deleted and created again.
	put(t, cli, "/registry/events/default/fresh-0", "unleased")
	put(t, cli, "/registry/events/default/fresh-1", "on the master lease", clientv3.WithLease(master))
	_, err = cli.Delete(ctx, "/registry/namespaces/default")
	require.NoError(t, err)
	rev = put(t, cli, "/registry/namespaces/default", `{"kind":"Namespace","again":true}`)
	cp(rev)
	for i := range 100 {
		rev = put(t, cli, fmt.Sprintf("/registry/leases/kube-node-lease/n%02d", i%20), fmt.Sprintf("renew %d", i))
	}
	cp(rev)
	h.txns = rec.until(t, rev)
	require.Len(t, h.txns, int(rev-baseRev), "one captured transaction per revision")
	return h
}

func TestMakeMatchesTheOriginalAtEveryCheckpoint(t *testing.T) {
	h := newHistory(t)
	baseRev := h.facts.Revision
	t.Logf("base %s at revision %d, %d captured revisions, checkpoints %v", h.backup, baseRev, len(h.txns), h.checkpoints)
	var revokeTxn changelog.Txn
	for _, txn := range h.txns {
		if len(txn.Ops) > len(revokeTxn.Ops) {
			revokeTxn = txn
		}
	}
	require.Len(t, revokeTxn.Ops, revokedKeys+1, "the revoke deleted every key of the lease at one revision")

	for _, target := range h.checkpoints {
		t.Run(fmt.Sprintf("rev%d", target), func(t *testing.T) {
			want := readAll(t, h.cli, target)
			var mu sync.Mutex
			stages := map[string]int64{}
			res, out, err := makeTo(t, h.base, memSource(h.txns), target, func(stage string, n int64) {
				mu.Lock()
				stages[stage] = max(stages[stage], n)
				mu.Unlock()
			})
			require.NoError(t, err)
			t.Logf("%+v", res)
			assert.Equal(t, baseRev, res.BaseRevision)
			assert.Equal(t, target, res.Revision)
			assert.Equal(t, int(target-baseRev), res.Txns)
			assert.Equal(t, h.facts.EtcdVersion, res.BaseEtcdVersion)
			assert.Equal(t, target, res.Snapshot.Revision)
			assert.Equal(t, int64(res.Txns), stages["replay"])
			assert.Equal(t, h.facts.GzipBytes, stages["download"])
			assert.Equal(t, res.Snapshot.RawBytes, stages["snapshot"])
			for _, s := range []string{"restore", "start"} {
				assert.Contains(t, stages, s)
			}

			c, cli, v := restoreOutput(t, out)
			assert.Equal(t, res.Snapshot.GzipSHA256, v.GzipSHA256)
			assert.Equal(t, res.Snapshot.RawSHA256, v.RawSHA256)
			got := readAll(t, cli, 0)
			assert.Equal(t, want.Revision, got.Revision, "the store's revision is the target's")
			assert.Equal(t, want.Kvs, got.Kvs, "every key, value, create and mod revision, version and lease")
			assertLeases(t, cli, got)
			_ = c
		})
	}
}

// assertLeases checks every lease a key names exists in the restored store.
func assertLeases(t *testing.T, cli *clientv3.Client, ks keyspace) {
	ctx := testCtx(t)
	resp, err := cli.Leases(ctx)
	require.NoError(t, err)
	have := map[int64]bool{}
	for _, l := range resp.Leases {
		have[int64(l.ID)] = true
	}
	for _, x := range ks.Kvs {
		if x.Lease != 0 {
			assert.True(t, have[x.Lease], "lease %x of %s restored", x.Lease, x.Key)
		}
	}
}

// The output is a backup etcd-manager restores: stored as one, with a
// meta, it passes a restore drill at the target's revision.
func TestOutputPassesADrill(t *testing.T) {
	h := newHistory(t)
	target := h.checkpoints[len(h.checkpoints)-1]
	res, out, err := makeTo(t, h.base, memSource(h.txns), target, nil)
	require.NoError(t, err)
	ctx := testCtx(t)
	name := etcdmanager.BackupName(time.Now().Add(time.Hour), 1)
	_, err = h.store.Put(ctx, name+"/"+etcdmanager.DataFile, bytes.NewReader(readFile(t, out)), backupstore.PutOptions{})
	require.NoError(t, err)
	require.NoError(t, etcdmanager.WriteBackupInfo(ctx, h.store, name, etcdmanager.BackupInfo{
		EtcdVersion: res.BaseEtcdVersion, Timestamp: time.Now().Unix(),
		ClusterSpec: &etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: res.BaseEtcdVersion},
	}, backupstore.PutOptions{}))
	d, err := drill.Run(ctx, h.store, name, drill.Options{TempDir: t.TempDir()})
	require.NoError(t, err)
	assert.True(t, d.Passed, "%v", d.Failures)
	assert.Equal(t, target, d.Revision)
	assert.Equal(t, res.Snapshot.RawBytes, d.SnapshotBytes)
}

func TestMakeRefuses(t *testing.T) {
	h := newHistory(t)
	baseRev := h.facts.Revision
	last := h.txns[len(h.txns)-1].Revision

	t.Run("target below the base", func(t *testing.T) {
		_, _, err := makeTo(t, h.base, memSource(h.txns), baseRev-3, nil)
		require.Error(t, err)
		t.Log(err)
		assert.Contains(t, err.Error(), fmt.Sprintf("to revision %d: the base is at revision %d, after the target", baseRev-3, baseRev))
	})
	t.Run("source short of the target", func(t *testing.T) {
		_, _, err := makeTo(t, h.base, memSource(h.txns), last+5, nil)
		require.Error(t, err)
		t.Log(err)
		assert.Contains(t, err.Error(), fmt.Sprintf("the change log ends at revision %d, short of the target %d", last, last+5))
	})
	t.Run("source with a hole", func(t *testing.T) {
		holed := append(append([]changelog.Txn{}, h.txns[:5]...), h.txns[6:]...)
		_, _, err := makeTo(t, h.base, memSource(holed), last, nil)
		require.Error(t, err)
		t.Log(err)
		assert.Contains(t, err.Error(), fmt.Sprintf("lacks revision %d: it jumps from %d to %d", baseRev+6, baseRev+5, baseRev+7))
	})
	t.Run("source repeats a revision", func(t *testing.T) {
		twice := append(append([]changelog.Txn{}, h.txns[:5]...), h.txns[4:]...)
		_, _, err := makeTo(t, h.base, memSource(twice), last, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("gave revision %d again or out of order", baseRev+5))
	})
	t.Run("change log of another history", func(t *testing.T) {
		// Deleting a key the base never had changes nothing in etcd, so
		// the store does not advance: caught by the revision check.
		other := append([]changelog.Txn{}, h.txns...)
		other[2] = changelog.Txn{Revision: other[2].Revision, Ops: []changelog.Op{{Delete: true, Key: []byte("/never/there")}}}
		_, _, err := makeTo(t, h.base, memSource(other), last, nil)
		require.Error(t, err)
		t.Log(err)
		assert.Contains(t, err.Error(), fmt.Sprintf("revision %d was replayed as revision %d: the restored base and the change log disagree", baseRev+3, baseRev+2))
	})
	t.Run("source fails", func(t *testing.T) {
		boom := errors.New("segment 7 unreadable")
		_, _, err := makeTo(t, h.base, funcSource(func(context.Context, int64, int64, func(changelog.Txn) error) error { return boom }), last, nil)
		assert.ErrorIs(t, err, boom)
	})
	t.Run("base with no meta", func(t *testing.T) {
		_, err := replay.Make(testCtx(t), replay.Request{Store: h.store, Base: "2020-01-01T00:00:00Z-000001", Source: memSource(nil), Target: last, TempDir: t.TempDir()}, &bytes.Buffer{}, 1)
		assert.ErrorIs(t, err, backupstore.ErrNotFound)
	})
	t.Run("not enough scratch space", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := replay.Make(testCtx(t), replay.Request{Store: h.store, Base: h.backup, Source: memSource(h.txns), Target: last, TempDir: tmp,
			FreeSpace: func(string) (uint64, error) { return 1 << 20, nil }}, &bytes.Buffer{}, 1)
		assert.ErrorIs(t, err, scratchetcd.ErrScratch)
		assert.Contains(t, err.Error(), "a replay of this backup needs")
		entries, _ := os.ReadDir(tmp)
		assert.Empty(t, entries)
	})

	// Without kopsdr.json (etcd-manager's own backups) the restored store
	// says the base is too new.
	t.Run("target below the base, found after the restore", func(t *testing.T) {
		require.NoError(t, h.store.Delete(testCtx(t), h.backup+"/"+etcdmanager.KopsdrFile))
		_, _, err := makeTo(t, h.base, memSource(h.txns), baseRev-1, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("to revision %d: the base is at revision %d, after the target", baseRev-1, baseRev))
		res, _, err := makeTo(t, h.base, memSource(h.txns), baseRev+1, nil)
		require.NoError(t, err, "works without kopsdr.json")
		assert.Equal(t, 1, res.Txns)
	})

	// Last: it damages the base.
	t.Run("corrupted base", func(t *testing.T) {
		ctx := testCtx(t)
		key := h.backup + "/" + etcdmanager.DataFile
		rc, err := h.store.Get(ctx, key)
		require.NoError(t, err)
		var data bytes.Buffer
		_, err = data.ReadFrom(rc)
		rc.Close()
		require.NoError(t, err)
		b := data.Bytes()
		b[len(b)/2] ^= 0xff
		_, err = h.store.Put(ctx, key, bytes.NewReader(b), backupstore.PutOptions{})
		require.NoError(t, err)
		_, _, err = makeTo(t, h.base, memSource(h.txns), last, nil)
		require.Error(t, err)
		t.Log(err)
		var bad *scratchetcd.BackupError
		assert.ErrorAs(t, err, &bad)
		assert.Contains(t, err.Error(), key+" does not verify")
	})
}

// A lease of the base with a TTL shorter than the replay must not expire
// in the scratch etcd: its keys would be deleted at a revision the
// original never had.
func TestShortLeasesSurviveASlowReplay(t *testing.T) {
	ctx := testCtx(t)
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	short, err := cli.Grant(ctx, 3)
	require.NoError(t, err)
	kctx, stop := context.WithCancel(ctx)
	ka, err := cli.KeepAlive(kctx, short.ID) // alive in the original while it is backed up
	require.NoError(t, err)
	go func() {
		for range ka {
		}
	}()
	put(t, cli, "/registry/masterleases/10.0.0.9", "short", clientv3.WithLease(short.ID))
	b := backUp(t, c, cli)
	stop()
	baseRev := b.facts.Revision

	const n = 4
	src := funcSource(func(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
		for rev := after + 1; rev <= upTo; rev++ {
			select {
			case <-time.After(2 * time.Second): // 8 s in all, against a 3 s lease
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := fn(changelog.Txn{Revision: rev, Ops: []changelog.Op{{Key: fmt.Appendf(nil, "/k/%d", rev), Value: []byte("v")}}}); err != nil {
				return err
			}
		}
		return nil
	})
	res, out, err := makeTo(t, b, src, baseRev+n, nil)
	require.NoError(t, err)
	assert.Equal(t, n, res.Txns)
	assert.GreaterOrEqual(t, res.LeasesKept, 1)
	_, rcli, _ := restoreOutput(t, out)
	got := readAll(t, rcli, 0)
	assert.Equal(t, baseRev+n, got.Revision)
	keys := map[string]int64{}
	for _, x := range got.Kvs {
		keys[x.Key] = x.Lease
	}
	assert.Equal(t, int64(short.ID), keys["/registry/masterleases/10.0.0.9"], "the leased key survived the replay")
}

// Cancelling stops a replay promptly and removes the scratch dir.
func TestCancel(t *testing.T) {
	h := newHistory(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	started := make(chan struct{})
	src := funcSource(func(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
		if err := fn(h.txns[0]); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	go func() { <-started; cancel() }()
	tmp := t.TempDir()
	begin := time.Now()
	_, err := replay.Make(ctx, replay.Request{Store: h.store, Base: h.backup, Source: src, Target: h.checkpoints[len(h.checkpoints)-1], TempDir: tmp}, &bytes.Buffer{}, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(begin), 30*time.Second)
	assertNoScratch(t, tmp)
	entries, _ := filepath.Glob(filepath.Join(tmp, "*"))
	assert.Empty(t, entries)
}
