package replay_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/replay"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/backuptest"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// base is a live cluster and a backup of it in a file:// store, taken by
// kopsdr's own backup activities, as etcd-manager lays it out.
type base struct {
	cluster *etcdtest.Cluster
	cli     *clientv3.Client
	store   backupstore.Store
	backup  string
	facts   activities.Facts
}

func backUp(t testing.TB, c *etcdtest.Cluster, cli *clientv3.Client) *base {
	b := backuptest.Take(testCtx(t), t, c)
	return &base{cluster: c, cli: cli, store: b.Store, backup: b.Name, facts: b.Facts}
}

// recorder captures every change after a revision with a real watch, as
// capture does, grouped into one changelog.Txn per revision.
type recorder struct {
	cancel context.CancelFunc
	ch     clientv3.WatchChan
	txns   []changelog.Txn
}

func record(t testing.TB, cli *clientv3.Client, after int64) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &recorder{cancel: cancel, ch: cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(after+1))}
}

// until collects events up to and including revision rev and stops.
func (r *recorder) until(t testing.TB, rev int64) []changelog.Txn {
	defer r.cancel()
	timeout := time.After(time.Minute)
	for len(r.txns) == 0 || r.txns[len(r.txns)-1].Revision < rev {
		select {
		case resp, ok := <-r.ch:
			require.True(t, ok, "watch closed")
			require.NoError(t, resp.Err())
			for _, ev := range resp.Events {
				r.add(ev)
			}
		case <-timeout:
			t.Fatalf("watch did not reach revision %d", rev)
		}
	}
	return r.txns
}

func (r *recorder) add(ev *clientv3.Event) {
	rev := ev.Kv.ModRevision // a delete event's kv carries the deleting revision
	if n := len(r.txns); n == 0 || r.txns[n-1].Revision != rev {
		r.txns = append(r.txns, changelog.Txn{Revision: rev, Observed: time.Now().UTC()})
	}
	t := &r.txns[len(r.txns)-1]
	op := changelog.Op{Key: bytes.Clone(ev.Kv.Key)}
	if ev.Type == mvccpb.DELETE {
		op.Delete = true
	} else {
		op.Value, op.Lease = bytes.Clone(ev.Kv.Value), ev.Kv.Lease
	}
	t.Ops = append(t.Ops, op)
}

// memSource is a Source over captured transactions in memory.
type memSource []changelog.Txn

func (s memSource) Txns(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
	for _, txn := range s {
		if txn.Revision <= after {
			continue
		}
		if txn.Revision > upTo {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(txn); err != nil {
			return err
		}
	}
	return nil
}

// funcSource adapts a function.
type funcSource func(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error

func (f funcSource) Txns(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
	return f(ctx, after, upTo, fn)
}

// keyspace is every key at one revision, as etcd reports it.
type keyspace struct {
	Revision int64
	Kvs      []kv
}

type kv struct {
	Key, Value                           string
	CreateRevision, ModRevision, Version int64
	Lease                                int64
}

// readAll reads every key, at rev (0: the newest), in pages.
func readAll(t testing.TB, cli *clientv3.Client, rev int64) keyspace {
	ctx := testCtx(t)
	var ks keyspace
	from := "\x00"
	for {
		opts := []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithLimit(500)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		require.NoError(t, err)
		if ks.Revision == 0 {
			ks.Revision = resp.Header.Revision
			if rev > 0 {
				ks.Revision = rev
			}
		}
		for _, x := range resp.Kvs {
			ks.Kvs = append(ks.Kvs, kv{string(x.Key), string(x.Value), x.CreateRevision, x.ModRevision, x.Version, x.Lease})
		}
		if !resp.More {
			return ks
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// makeTo runs Make and returns its result and the path of the gzip it wrote.
func makeTo(t testing.TB, b *base, src replay.Source, target int64, progress func(string, int64)) (replay.Result, string, error) {
	tmp := t.TempDir()
	out := filepath.Join(t.TempDir(), "etcd.backup.gz")
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	res, err := replay.Make(testCtx(t), replay.Request{
		Store: b.store, Base: b.backup, Source: src, Target: target, TempDir: tmp, Progress: progress,
	}, f, 1)
	assertNoScratch(t, tmp)
	return res, out, err
}

// restoreOutput verifies the gzip as a backup is verified, and restores it
// with etcdutl into a fresh cluster, as etcd-manager would.
func restoreOutput(t testing.TB, gz string) (*etcdtest.Cluster, *clientv3.Client, snapshot.VerifyResult) {
	in, err := os.Open(gz)
	require.NoError(t, err)
	defer in.Close()
	raw := filepath.Join(t.TempDir(), "snapshot.db")
	out, err := os.Create(raw)
	require.NoError(t, err)
	v, err := snapshot.VerifyGzipTo(in, out)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	c := etcdtest.StartFromSnapshot(t, raw)
	return c, c.Client(t), v
}

func assertNoScratch(t testing.TB, dir string) {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), replay.ScratchPrefix), "scratch dir %s left behind", e.Name())
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t testing.TB, cli *clientv3.Client, key, value string, opts ...clientv3.OpOption) int64 {
	resp, err := cli.Put(testCtx(t), key, value, opts...)
	require.NoError(t, err)
	return resp.Header.Revision
}

func readFile(t testing.TB, path string) []byte {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	return b
}
