package etcdtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Batching keeps Fill fast: one Txn carries many puts, within etcd's default
// limits of 128 ops and 1.5 MiB per request.
const (
	batchOps   = 100
	batchBytes = 1 << 20
	fillers    = 4
)

// Key is the i-th key Fill writes under prefix.
func Key(prefix string, i int) string { return fmt.Sprintf("%s%08d", prefix, i) }

// Value is the value Fill writes for Key(prefix, i): exactly size bytes of
// JSON-like text, about a quarter random hex and the rest the repetitive
// field names and words of Kubernetes objects. gzip shrinks such values about
// 4x (a whole snapshot, with bolt's page overhead, 6-8x), so compression
// numbers in tests and benchmarks are neither free nor hopeless. The same arguments always give the same bytes, so a
// test can check restored data without keeping a copy.
func Value(prefix string, i, size int) []byte {
	h := fnv.New64a()
	h.Write([]byte(prefix))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(i)))

	var b strings.Builder
	b.Grow(size + 256)
	fmt.Fprintf(&b, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"app-%d","namespace":"team-%d",`+
		`"uid":"%s","resourceVersion":"%d","creationTimestamp":"%s","labels":{"app.kubernetes.io/name":"app-%d",`+
		`"app.kubernetes.io/managed-by":"kops"}},"data":{`,
		i, r.IntN(20), randHex(r, 16), r.Int64N(1e9),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(1e6))*time.Second).Format(time.RFC3339), i)
	for n := 0; b.Len() < size; n++ {
		fmt.Fprintf(&b, `"key-%d":"%s %s %s","checksum-%d":"%s",`, n,
			words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], n, randHex(r, 8))
	}
	return []byte(b.String()[:size])
}

var words = []string{
	"container", "image", "registry.k8s.io/pause:3.9", "resources", "limits", "requests", "cpu", "memory",
	"volumeMounts", "readOnly", "true", "false", "imagePullPolicy", "IfNotPresent", "serviceAccountName",
	"default", "kube-system", "nodeSelector", "tolerations", "NoSchedule", "Running", "Ready",
}

func randHex(r *rand.Rand, n int) string {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(buf)
}

// commit sends one batch, and sends it again while etcd answers that the
// outcome is unknown (timed out, leader changed or lost, too busy): on a
// loaded machine a proposal can miss etcd's request timeout without
// anything being wrong, and a batch of puts of fixed values is the same
// however often it is applied. Seen in CI: "etcdserver: request timed out"
// filling a test's cluster while the other lanes compiled.
func commit(ctx context.Context, cli *clientv3.Client, ops []clientv3.Op) error {
	for {
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		if err == nil || !outcomeUnknown(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// outcomeUnknown: etcd's errors for a request it may or may not have
// applied, which its docs say to retry.
func outcomeUnknown(err error) bool {
	switch rpctypes.Error(err) {
	case rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrTooManyRequests:
		return true
	}
	return false
}

// Fill puts n keys Key(prefix, 0..n-1) with Value(prefix, i, valueSize),
// several transactions at a time. Its timeout grows with the data: ten
// minutes, plus a second per 4 MiB, so gigabytes fill on a busy machine.
func Fill(t testing.TB, cli *clientv3.Client, prefix string, n, valueSize int) {
	t.Helper()
	timeout := 10*time.Minute + time.Duration(int64(n)*int64(valueSize)/(4<<20))*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	batches := make(chan []clientv3.Op)
	errs := make(chan error, fillers)
	var wg sync.WaitGroup
	for range fillers {
		wg.Go(func() {
			for ops := range batches {
				if err := commit(ctx, cli, ops); err != nil {
					errs <- err
					cancel() // stop the producer and the other fillers
					for range batches {
					}
					return
				}
			}
		})
	}

	var ops []clientv3.Op
	bytes := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		k := Key(prefix, i)
		v := Value(prefix, i, valueSize)
		if len(ops) == batchOps || (len(ops) > 0 && bytes+len(k)+len(v) > batchBytes) {
			batches <- ops
			ops, bytes = nil, 0
		}
		ops = append(ops, clientv3.OpPut(k, string(v)))
		bytes += len(k) + len(v)
	}
	if len(ops) > 0 && ctx.Err() == nil {
		batches <- ops
	}
	close(batches)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("etcdtest: fill %s: %v", prefix, err)
	}
}
