package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/capture"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// BenchmarkCaptureLag measures, for writes at a steady rate into a 3-member
// etcd (TLS, in process) captured with the default Options into a file://
// store, the lag from a write's commit (its Put returned) to the moment its
// revision is durable (Options.Durable reported it), and what the change
// log stores per write. Run it with -benchtime 1x; each size writes for
// KOPSDR_BENCH_SECONDS (default 20) seconds. KOPSDR_BENCH_MAX_INTERVAL
// (a duration) overrides Options.MaxInterval, which the lag follows.
//
//	go test -run XXX -bench CaptureLag -benchtime 1x ./internal/capture/
func BenchmarkCaptureLag(b *testing.B) {
	for _, rate := range []int{200, 1000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLag(b, rate) })
	}
}

func benchSeconds() time.Duration {
	var n int
	if _, err := fmt.Sscan(os.Getenv("KOPSDR_BENCH_SECONDS"), &n); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 20 * time.Second
}

func benchMaxInterval() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("KOPSDR_BENCH_MAX_INTERVAL"))
	return d // 0: the default
}

type commit struct {
	rev int64
	at  time.Time
}

func benchLag(b *testing.B, rate int) {
	c := etcdtest.Start(b, 3)
	cli := c.Client(b)
	s := fileStore(b)
	dur := benchSeconds()
	total := int(dur.Seconds() * float64(rate))

	// Values like Kubernetes objects: ~1 KiB, partly repetitive.
	rng := rand.New(rand.NewPCG(1, 1))
	values := make([]string, 64)
	for i := range values {
		v := make([]byte, 0, 1100)
		for len(v) < 1000 {
			v = fmt.Appendf(v, "\x0a\x12metadata.name-%d\x1a%08x", i, rng.Uint32())
		}
		values[i] = string(v)
	}

	var lags []time.Duration
	var stored, segments, writes int64
	var mallocs uint64
	var elapsed time.Duration
	for range b.N {
		chain := startChain(b, cli, s)
		var mu sync.Mutex
		var durable []commit // in revision order
		var segBytes, segCount atomic.Int64
		opts := capture.Options{
			MaxInterval: benchMaxInterval(),
			Durable: func(h changelog.Head) {
				mu.Lock()
				if n := len(durable); n == 0 || h.Revision > durable[n-1].rev {
					durable = append(durable, commit{h.Revision, time.Now()})
				}
				mu.Unlock()
			},
			OnSegment: func(st capture.SegmentStats) {
				segBytes.Add(st.Segment.Bytes)
				segCount.Add(1)
			},
		}
		run := startRun(b, cli, s, chain.ID, opts)

		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		commits := make([]commit, total)
		var next atomic.Int64
		var failed atomic.Int64
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= total {
						return
					}
					time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
					resp, err := cli.Put(context.Background(), fmt.Sprintf("/registry/bench/%05d", i%5000), values[i%len(values)])
					if err != nil {
						failed.Add(1)
						continue
					}
					commits[i] = commit{resp.Header.Revision, time.Now()}
				}
			})
		}
		wg.Wait()
		elapsed += time.Since(start)
		last := currentRev(b, cli)
		run.waitDurable(b, last)
		require.NoError(b, ignoreCanceled(run.stop(b)))
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		mallocs += ms1.Mallocs - ms0.Mallocs
		require.Zero(b, failed.Load(), "failed writes")

		for _, cm := range commits {
			j := sort.Search(len(durable), func(j int) bool { return durable[j].rev >= cm.rev })
			lags = append(lags, durable[j].at.Sub(cm.at))
		}
		stored += segBytes.Load()
		segments += segCount.Load()
		writes += int64(total)
	}
	slices.Sort(lags)
	pct := func(p float64) float64 {
		return float64(lags[min(len(lags)-1, int(p*float64(len(lags))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-lag-ms")
	b.ReportMetric(pct(0.99), "p99-lag-ms")
	b.ReportMetric(pct(1), "max-lag-ms")
	b.ReportMetric(float64(writes)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(stored)/float64(writes), "stored-B/write")
	b.ReportMetric(float64(writes)/float64(segments), "writes/segment")
	// Of the whole process: etcd's three members and the client included.
	b.ReportMetric(float64(mallocs)/float64(writes), "process-allocs/write")
}

func ignoreCanceled(err error) error {
	if err == context.Canceled {
		return nil
	}
	return err
}
