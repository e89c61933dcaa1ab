package snapshot_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// BenchmarkStream measures snapshot throughput (MB/s of raw snapshot) from a
// one-member TLS cluster holding about 32 MiB of keys, per gzip level:
//
//	go test -run '^$' -bench . ./internal/snapshot/
func BenchmarkStream(b *testing.B) {
	c := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(1<<30))
	cli := c.Client(b)
	etcdtest.Fill(b, cli, prefix, 16<<10, 2<<10)

	var sample bytes.Buffer
	for _, level := range []int{gzip.BestSpeed, gzip.DefaultCompression, gzip.BestCompression} {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) {
			var res snapshot.Result
			for b.Loop() {
				var err error
				res, err = snapshot.Stream(context.Background(), cli, c.Endpoints[0], io.Discard, level, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(res.RawBytes)
			b.ReportMetric(float64(res.RawBytes)/float64(res.GzipBytes), "ratio")
		})
	}

	if _, err := snapshot.Stream(context.Background(), cli, c.Endpoints[0], &sample, gzip.DefaultCompression, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("VerifyGzip", func(b *testing.B) {
		var v snapshot.VerifyResult
		for b.Loop() {
			var err error
			if v, err = snapshot.VerifyGzip(bytes.NewReader(sample.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(v.RawBytes)
	})
}
