package capture_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/capture"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// Generous: a loaded 2-core machine runs three etcd members, TLS and -race.
const eventually = 2 * time.Minute

func openStore(t testing.TB, url string) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(context.Background(), url, backupstore.Options{})
	require.NoError(t, err)
	return s
}

func fileStore(t testing.TB) backupstore.Store {
	return openStore(t, "file://"+t.TempDir()+"/changes/main")
}

// startChain starts a chain at the revision after etcd's newest.
func startChain(t testing.TB, cli *clientv3.Client, s backupstore.Store) changelog.Chain {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	require.NoError(t, err)
	now := time.Now()
	c := changelog.Chain{
		ID:            changelog.NewChainID(now, resp.Header.Revision+1),
		EtcdCluster:   "main",
		ClusterID:     changelog.FormatClusterID(resp.Header.ClusterId),
		StartRevision: resp.Header.Revision + 1,
		Started:       now,
	}
	require.NoError(t, changelog.StartChain(ctx, s, c))
	return c
}

// capturer is one Run in the background.
type capturer struct {
	cancel  context.CancelFunc
	done    chan error
	durable atomic.Int64
	heads   atomic.Int64 // Durable calls
}

func startRun(t testing.TB, cli *clientv3.Client, s backupstore.Store, chainID string, opts capture.Options) *capturer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &capturer{cancel: cancel, done: make(chan error, 1)}
	prev := opts.Durable
	opts.Durable = func(h changelog.Head) {
		c.heads.Add(1)
		if h.Revision < c.durable.Load() {
			t.Errorf("durable revision went back from %d to %d", c.durable.Load(), h.Revision)
		}
		c.durable.Store(h.Revision)
		if prev != nil {
			prev(h)
		}
	}
	go func() { c.done <- capture.Run(ctx, cli, s, chainID, opts) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop cancels the Run and returns what it returned.
func (c *capturer) stop(t testing.TB) error {
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err // for a second stop
		return err
	case <-time.After(eventually):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func (c *capturer) waitDurable(t testing.TB, rev int64) {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for c.durable.Load() < rev {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("Run returned %v before revision %d was durable (durable: %d)", err, rev, c.durable.Load())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d not durable after %s (durable: %d)", rev, eventually, c.durable.Load())
		}
	}
}

func currentRev(t testing.TB, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), "\x00", clientv3.WithCountOnly())
	require.NoError(t, err)
	return resp.Header.Revision
}

// workload makes every kind of change etcd records, n operations of it,
// and returns how many failed (during a leader change some do).
func workload(ctx context.Context, cli *clientv3.Client, seed uint64, n int) (failed int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	key := func() string {
		if rng.IntN(10) == 0 {
			return fmt.Sprintf("\x00bin\xff%d", rng.IntN(5)) // binary keys
		}
		return fmt.Sprintf("/registry/things/%03d", rng.IntN(150))
	}
	value := func() string {
		b := make([]byte, rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32()) // protobuf-like: any byte
		}
		return string(b)
	}
	var leases []clientv3.LeaseID
	for i := 0; i < n && ctx.Err() == nil; i++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		switch k := rng.IntN(100); {
		case k < 50: // put or overwrite
			_, err = cli.Put(octx, key(), value())
		case k < 55: // empty value
			_, err = cli.Put(octx, key(), "")
		case k < 70:
			_, err = cli.Delete(octx, key())
		case k < 80: // several ops in one revision
			seen := map[string]bool{}
			var ops []clientv3.Op
			for range 2 + rng.IntN(4) {
				k := key()
				if seen[k] {
					continue
				}
				seen[k] = true
				if rng.IntN(3) == 0 {
					ops = append(ops, clientv3.OpDelete(k))
				} else {
					ops = append(ops, clientv3.OpPut(k, value()))
				}
			}
			_, err = cli.Txn(octx).Then(ops...).Commit()
		case k < 88: // keys under a lease
			var l *clientv3.LeaseGrantResponse
			if l, err = cli.Grant(octx, 600); err == nil {
				leases = append(leases, l.ID)
				for j := range 1 + rng.IntN(3) {
					if _, err = cli.Put(octx, fmt.Sprintf("/registry/leases/%d/%d", l.ID, j), value(), clientv3.WithLease(l.ID)); err != nil {
						break
					}
				}
			}
		case k < 95: // revoke: all its keys go in one revision
			if len(leases) > 0 {
				j := rng.IntN(len(leases))
				_, err = cli.Revoke(octx, leases[j])
				leases = append(leases[:j], leases[j+1:]...)
			}
		case k < 97: // a whole prefix in one revision
			_, err = cli.Delete(octx, fmt.Sprintf("/registry/things/%d", rng.IntN(10)), clientv3.WithPrefix())
		default: // a put that changes nothing but the revision
			_, err = cli.Put(octx, "/registry/same", "same")
		}
		cancel()
		if err != nil {
			failed++
		}
	}
	return failed
}

type kv struct {
	value string
	lease int64
}

func keyspace(t testing.TB, cli *clientv3.Client, rev int64) map[string]kv {
	t.Helper()
	resp, err := cli.Get(context.Background(), "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev))
	require.NoError(t, err)
	m := map[string]kv{}
	for _, k := range resp.Kvs {
		m[string(k.Key)] = kv{string(k.Value), k.Lease}
	}
	return m
}

// verify reads the whole chain back: every revision from its start to
// upTo exactly once, in order, and the keyspace rebuilt from the one
// before the start equals etcd's at upTo.
func verify(t *testing.T, cli *clientv3.Client, s backupstore.Store, c changelog.Chain, upTo int64) changelog.ChainState {
	t.Helper()
	return checkChain(t, s, c, upTo, keyspace(t, cli, c.StartRevision-1), keyspace(t, cli, upTo))
}

// checkChain is verify with the keyspaces before the start (base) and at
// upTo (live) given.
func checkChain(t *testing.T, s backupstore.Store, c changelog.Chain, upTo int64, base, live map[string]kv) changelog.ChainState {
	t.Helper()
	ctx := context.Background()
	st, err := changelog.OpenChain(ctx, s, c.ID)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.LastRevision, upTo)
	m := base
	next := c.StartRevision
	ops := 0
	for _, seg := range st.Segments {
		_, err := changelog.ReadSegment(ctx, s, seg.Key, func(txn changelog.Txn) error {
			if txn.Revision != next {
				return fmt.Errorf("revision %d, want %d", txn.Revision, next)
			}
			next++
			if txn.Revision > upTo {
				return nil
			}
			for _, op := range txn.Ops {
				ops++
				if op.Delete {
					if _, ok := m[string(op.Key)]; !ok {
						return fmt.Errorf("revision %d deletes %q, which does not exist", txn.Revision, op.Key)
					}
					delete(m, string(op.Key))
				} else {
					m[string(op.Key)] = kv{string(op.Value), op.Lease}
				}
			}
			return nil
		})
		require.NoError(t, err, seg.Key)
	}
	require.Equal(t, st.LastRevision+1, next, "revisions read")
	require.Equal(t, len(live), len(m), "keys")
	for k, v := range live {
		require.Equal(t, v, m[k], "key %q", k)
	}
	t.Logf("chain %s: revisions %d-%d in %d segments (%d superseded), %d ops up to %d, %d keys",
		c.ID, c.StartRevision, st.LastRevision, len(st.Segments), len(st.Superseded), ops, upTo, len(live))
	return st
}

// One workload captured by two Runs at once, into a file:// and an S3
// store; then the idle cluster keeps the heads fresh.
func TestCaptureWorkload(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	srv := s3test.StartGoFakeS3(t, "changes")
	srv.Setenv(t)
	stores := map[string]backupstore.Store{
		"file": fileStore(t),
		"s3":   openStore(t, "s3://changes/cluster.example.com/main"),
	}
	// Something before the chain starts, to rebuild on.
	require.Zero(t, workload(context.Background(), cli, 1, 100))

	opts := capture.Options{MaxInterval: 300 * time.Millisecond, MaxBytes: 4 << 10, HeadEvery: 500 * time.Millisecond}
	chains, runs := map[string]changelog.Chain{}, map[string]*capturer{}
	var sizes sync.Map
	for name, s := range stores {
		chains[name] = startChain(t, cli, s)
		o := opts
		o.OnSegment = func(st capture.SegmentStats) { sizes.Store(st.Segment.Key, st.RawBytes) }
		runs[name] = startRun(t, cli, s, chains[name].ID, o)
	}
	require.Zero(t, workload(context.Background(), cli, 2, 800))
	final := currentRev(t, cli)
	for name, s := range stores {
		runs[name].waitDurable(t, final)
		// Idle now: heads keep coming, saying nothing newer exists.
		var last changelog.SegmentInfo
		require.Eventually(t, func() bool {
			st, err := changelog.OpenChain(context.Background(), s, chains[name].ID)
			if err != nil || len(st.Segments) == 0 {
				return false
			}
			last = st.Segments[len(st.Segments)-1]
			return st.Head != nil && st.Head.Revision == final && st.Head.Observed.After(last.LastObserved)
		}, eventually, 50*time.Millisecond, name)
		assert.ErrorIs(t, runs[name].stop(t), context.Canceled)
		st := verify(t, cli, s, chains[name], final)
		assert.Greater(t, len(st.Segments), 3, name)
		assert.Empty(t, st.Superseded, name)
	}
	big := 0
	sizes.Range(func(_, v any) bool {
		if v.(int) >= opts.MaxBytes {
			big++
		}
		return true
	})
	t.Logf("%d segments flushed by size", big)
}

// Runs killed at random points of a running workload, and resumed: still
// every revision exactly once.
func TestCaptureKilledAndResumed(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	s := fileStore(t)
	chain := startChain(t, cli, s)
	opts := capture.Options{MaxInterval: 100 * time.Millisecond, MaxBytes: 16 << 10, HeadEvery: 200 * time.Millisecond}

	wctx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	workDone := make(chan int)
	go func() { workDone <- workload(wctx, cli, 3, 1_000_000) }()

	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 8 {
		run := startRun(t, cli, s, chain.ID, opts)
		if i%2 == 0 {
			// Wait for progress, then kill.
			target := currentRev(t, cli)
			run.waitDurable(t, target)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // kill anywhere, mid-flush too
		err := run.stop(t)
		require.ErrorIs(t, err, context.Canceled, "run %d", i)
		st, err := changelog.OpenChain(context.Background(), s, chain.ID)
		require.NoError(t, err)
		t.Logf("run %d killed; durable %d, etcd at %d", i, st.LastRevision, currentRev(t, cli))
	}
	stopWork()
	<-workDone
	final := currentRev(t, cli)
	run := startRun(t, cli, s, chain.ID, opts)
	run.waitDurable(t, final)
	require.ErrorIs(t, run.stop(t), context.Canceled)
	verify(t, cli, s, chain, final)
}

// leader is the index of the member that leads.
func leader(t *testing.T, c *etcdtest.Cluster, cli *clientv3.Client) int {
	t.Helper()
	var idx int
	require.Eventually(t, func() bool {
		for i, ep := range c.Endpoints {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := cli.Status(ctx, ep)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				idx = i
				return true
			}
		}
		return false
	}, eventually, 100*time.Millisecond)
	return idx
}

// Capture goes on while the leader stops and members restart.
func TestCaptureLeaderChange(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	s := fileStore(t)
	chain := startChain(t, cli, s)
	logger := slog.New(slog.NewTextHandler(logWriter(func(p []byte) { t.Logf("%s", bytes.TrimSpace(p)) }), nil))
	run := startRun(t, cli, s, chain.ID, capture.Options{MaxInterval: 200 * time.Millisecond, HeadEvery: 300 * time.Millisecond, Logger: logger})

	wctx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	workDone := make(chan int)
	go func() { workDone <- workload(wctx, cli, 5, 1_000_000) }()

	progress := func(what string) {
		// Revisions written after the change become durable.
		var rev int64
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cli.Put(ctx, "/registry/marker", what)
			if err != nil {
				return false
			}
			rev = resp.Header.Revision
			return true
		}, eventually, 10*time.Millisecond)
		run.waitDurable(t, rev)
		t.Logf("%s: durable %d", what, run.durable.Load())
	}
	progress("before")
	l := leader(t, c, cli)
	c.StopMember(l)
	progress(fmt.Sprintf("leader m%d stopped", l))
	c.RestartMember(t, l)
	progress(fmt.Sprintf("m%d restarted", l))
	f := (leader(t, c, cli) + 1) % 3
	c.StopMember(f)
	progress(fmt.Sprintf("m%d stopped", f))
	c.RestartMember(t, f)
	progress(fmt.Sprintf("m%d restarted", f))

	stopWork()
	failed := <-workDone
	t.Logf("%d workload operations failed during the changes", failed)
	final := currentRev(t, cli)
	run.waitDurable(t, final)
	require.ErrorIs(t, run.stop(t), context.Canceled)
	verify(t, cli, s, chain, final)
}

// A chain whose resume point etcd compacted away ends, with what it holds.
func TestCaptureCompacted(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	s := fileStore(t)
	chain := startChain(t, cli, s)
	run := startRun(t, cli, s, chain.ID, capture.Options{MaxInterval: 50 * time.Millisecond})
	require.Zero(t, workload(context.Background(), cli, 6, 50))
	durable := currentRev(t, cli)
	run.waitDurable(t, durable)
	require.ErrorIs(t, run.stop(t), context.Canceled)

	base, live := keyspace(t, cli, chain.StartRevision-1), keyspace(t, cli, durable)
	require.Zero(t, workload(context.Background(), cli, 7, 50))
	compactAt := currentRev(t, cli)
	_, err := cli.Compact(context.Background(), compactAt)
	require.NoError(t, err)

	for range 2 { // and again: still ended
		ctx, cancel := context.WithTimeout(context.Background(), eventually)
		err = capture.Run(ctx, cli, s, chain.ID, capture.Options{})
		cancel()
		var ended *capture.Ended
		require.ErrorAs(t, err, &ended)
		assert.Equal(t, changelog.EndCompacted, ended.Reason)
		assert.Equal(t, durable, ended.LastRevision)
		assert.Contains(t, ended.Detail, fmt.Sprint(compactAt))
		t.Log(err)
	}
	st := checkChain(t, s, chain, durable, base, live)
	assert.Nil(t, st.End, "Run does not end the chain itself")

	// Once the caller ended it, Run says so.
	require.NoError(t, changelog.EndChain(context.Background(), s, chain.ID, changelog.End{Reason: changelog.EndCompacted, LastRevision: durable, At: time.Now()}))
	var ended *capture.Ended
	require.ErrorAs(t, capture.Run(context.Background(), cli, s, chain.ID, capture.Options{}), &ended)
	assert.Equal(t, changelog.EndCompacted, ended.Reason)
}

// A chain pointed at another cluster ends.
func TestCaptureClusterChanged(t *testing.T) {
	a := etcdtest.Start(t, 1)
	cliA := a.Client(t)
	s := fileStore(t)
	chain := startChain(t, cliA, s)
	run := startRun(t, cliA, s, chain.ID, capture.Options{MaxInterval: 50 * time.Millisecond})
	require.Zero(t, workload(context.Background(), cliA, 8, 20))
	durable := currentRev(t, cliA)
	run.waitDurable(t, durable)
	require.ErrorIs(t, run.stop(t), context.Canceled)

	b := etcdtest.Start(t, 1)
	cliB := b.Client(t)
	require.Zero(t, workload(context.Background(), cliB, 9, 200)) // ahead of the chain
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	err := capture.Run(ctx, cliB, s, chain.ID, capture.Options{})
	var ended *capture.Ended
	require.ErrorAs(t, err, &ended)
	assert.Equal(t, changelog.EndClusterChanged, ended.Reason)
	assert.Equal(t, durable, ended.LastRevision)
	assert.Contains(t, ended.Detail, chain.ClusterID)
	t.Log(err)
}

// flaky fails some S3 PUTs of segments and heads: before the store sees them, or after it
// stored the object (the client then retries a write that succeeded).
func flaky(every int) func(http.Handler) http.Handler {
	var n atomic.Int64
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/chains/") || strings.HasSuffix(r.URL.Path, "/chain.json") {
				h.ServeHTTP(w, r)
				return
			}
			switch n.Add(1) % int64(every) {
			case 0:
				http.Error(w, "<Error><Code>InternalError</Code></Error>", http.StatusInternalServerError)
			case 1:
				h.ServeHTTP(&discard{header: http.Header{}}, r)
				http.Error(w, "<Error><Code>InternalError</Code></Error>", http.StatusInternalServerError)
			default:
				h.ServeHTTP(w, r)
			}
		})
	}
}

type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// A store that fails now and then, sometimes after storing: capture and
// the SDK retry, and the chain stays exact.
func TestCaptureFlakyStore(t *testing.T) {
	srv := s3test.StartGoFakeS3Wrapped(t, flaky(3), "changes")
	srv.Setenv(t)
	t.Setenv(backupstore.EnvMaxAttempts, "2") // let failures reach capture's own retries
	s := openStore(t, "s3://changes/main")
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	chain := startChain(t, cli, s)
	var retries atomic.Int64
	logger := slog.New(slog.NewTextHandler(logWriter(func(p []byte) {
		if bytes.Contains(p, []byte("msg=retrying")) {
			retries.Add(1)
		}
		t.Logf("%s", bytes.TrimSpace(p))
	}), nil))
	run := startRun(t, cli, s, chain.ID, capture.Options{MaxInterval: 100 * time.Millisecond, HeadEvery: 200 * time.Millisecond, Logger: logger})
	require.Zero(t, workload(context.Background(), cli, 10, 300))
	final := currentRev(t, cli)
	run.waitDurable(t, final)
	require.ErrorIs(t, run.stop(t), context.Canceled)
	verify(t, cli, s, chain, final)
	assert.NotZero(t, retries.Load(), "capture retried")
}

type logWriter func([]byte)

func (w logWriter) Write(p []byte) (int, error) { w(p); return len(p), nil }

// Large values and one revision that deletes many keys at once.
func TestCaptureLargeRevisions(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	s := fileStore(t)
	ctx := context.Background()
	for i := range 300 {
		_, err := cli.Put(ctx, fmt.Sprintf("/registry/many/%04d", i), "x")
		require.NoError(t, err)
	}
	chain := startChain(t, cli, s)
	run := startRun(t, cli, s, chain.ID, capture.Options{MaxBytes: 100 << 10})
	big := bytes.Repeat([]byte("0123456789abcdef\x00"), 70_000) // ~1.2 MB, over MaxBytes
	for i := range 3 {
		_, err := cli.Put(ctx, fmt.Sprintf("/registry/big/%d", i), string(big[i:]))
		require.NoError(t, err)
	}
	_, err := cli.Delete(ctx, "/registry/many/", clientv3.WithPrefix())
	require.NoError(t, err)
	final := currentRev(t, cli)
	run.waitDurable(t, final)
	require.ErrorIs(t, run.stop(t), context.Canceled)
	st := verify(t, cli, s, chain, final)
	assert.GreaterOrEqual(t, len(st.Segments), 3, "each big value flushed on its own")
}

func TestEndedError(t *testing.T) {
	err := error(&capture.Ended{Reason: changelog.EndCompacted, LastRevision: 41, Detail: "etcd compacted"})
	var ended *capture.Ended
	require.True(t, errors.As(fmt.Errorf("wrapped: %w", err), &ended))
	assert.Equal(t, "change log chain ended (compacted) after revision 41: etcd compacted", err.Error())
}
