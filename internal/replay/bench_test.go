package replay_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/replay"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// Benchmark sizes; the defaults keep `go test -bench` quick. For the
// numbers that matter, KOPSDR_BENCH_CHANGES=100000 KOPSDR_BENCH_BASE_MIB=256.
const (
	benchValue   = 1000 // bytes per value, base and changes
	benchPrefix  = "/registry/configmaps/bench/"
	benchLeaseID = 0x7e57_0000
)

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a number", name, s)
	}
	return n
}

// benchSource makes n changes after a base of baseKeys keys on the fly,
// without holding them: per ten revisions six creates, two updates of
// base keys, a create on a lease replay must grant (a new one every
// thousand revisions) and a delete of a key created earlier.
type benchSource struct {
	n, baseKeys int
	value       []byte
}

func (s benchSource) txn(base int64, i int) changelog.Txn {
	key := func(j int) []byte { return fmt.Appendf(nil, "/registry/pods/bench/new-%09d", j) }
	t := changelog.Txn{Revision: base + 1 + int64(i)}
	switch i % 10 {
	case 6, 7:
		t.Ops = []changelog.Op{{Key: []byte(etcdtest.Key(benchPrefix, i%max(s.baseKeys, 1))), Value: s.value}}
		if s.baseKeys == 0 {
			t.Ops[0].Key = fmt.Appendf(nil, "/registry/pods/bench/upd-%d", i)
		}
	case 8:
		t.Ops = []changelog.Op{{Key: key(i), Value: s.value, Lease: benchLeaseID + int64(i/1000)}}
	case 9:
		t.Ops = []changelog.Op{{Delete: true, Key: key(i - 9)}}
	default:
		t.Ops = []changelog.Op{{Key: key(i), Value: s.value}}
	}
	return t
}

func (s benchSource) Txns(ctx context.Context, after, upTo int64, fn func(changelog.Txn) error) error {
	base := upTo - int64(s.n)
	for i := range s.n {
		t := s.txn(base, i)
		if t.Revision <= after {
			continue
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkMake makes a backup from a base and KOPSDR_BENCH_CHANGES
// captured revisions (default 2000) after it; the base holds
// KOPSDR_BENCH_BASE_MIB MiB of 1 kB values (default 4). It reports the
// replay's transactions per second and each stage's time.
func BenchmarkMake(b *testing.B) {
	changes := envInt(b, "KOPSDR_BENCH_CHANGES", 2000)
	baseKeys := envInt(b, "KOPSDR_BENCH_BASE_MIB", 4) << 20 / benchValue
	c := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(8<<30))
	cli := c.Client(b)
	etcdtest.Fill(b, cli, benchPrefix, baseKeys, benchValue)
	bs := backUp(b, c, cli)
	src := benchSource{n: changes, baseKeys: baseKeys, value: etcdtest.Value("/bench/", 0, benchValue)}
	target := bs.facts.Revision + int64(changes)
	tmp := b.TempDir()

	var res replay.Result
	b.ResetTimer()
	for b.Loop() {
		var err error
		res, err = replay.Make(testCtx(b), replay.Request{
			Store: bs.store, Base: bs.backup, Source: src, Target: target, TempDir: tmp,
		}, io.Discard, 1)
		if err != nil {
			b.Fatal(err)
		}
	}
	tm := res.Timings
	b.ReportMetric(float64(res.Txns)/tm.ReplaySeconds, "txns/s")
	b.ReportMetric(tm.DownloadSeconds+tm.RestoreSeconds+tm.StartSeconds, "restore-s")
	b.ReportMetric(tm.ReplaySeconds, "replay-s")
	b.ReportMetric(tm.SnapshotSeconds, "snapshot-s")
	b.Logf("base %d keys, gzip %.1f MiB at revision %d; %d txns (%d ops, %d leases granted); output raw %.1f MiB gzip %.1f MiB; "+
		"download %.2fs restore %.2fs start %.2fs replay %.2fs snapshot %.2fs",
		baseKeys, float64(bs.facts.GzipBytes)/(1<<20), res.BaseRevision, res.Txns, res.Ops, res.LeasesGranted,
		float64(res.Snapshot.RawBytes)/(1<<20), float64(res.Snapshot.GzipBytes)/(1<<20),
		tm.DownloadSeconds, tm.RestoreSeconds, tm.StartSeconds, tm.ReplaySeconds, tm.SnapshotSeconds)
}
