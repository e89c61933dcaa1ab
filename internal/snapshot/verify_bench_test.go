package snapshot_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// BenchmarkVerifyGzip measures verification (MB/s of raw snapshot) of a
// backup of about 128 MiB held in memory, against plain gunzip of the same
// bytes: the least any verification must cost, which a restore's
// pre-flight is held to.
//
//	go test -run '^$' -bench VerifyGzip ./internal/snapshot/
func BenchmarkVerifyGzip(b *testing.B) {
	c := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(1<<30))
	cli := c.Client(b)
	etcdtest.Fill(b, cli, prefix, 8<<10, 16000)
	var sample bytes.Buffer
	res, err := snapshot.Stream(context.Background(), cli, c.Endpoints[0], &sample, gzip.DefaultCompression, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("gunzip", func(b *testing.B) {
		b.SetBytes(res.RawBytes)
		for b.Loop() {
			zr, err := gzip.NewReader(bytes.NewReader(sample.Bytes()))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, zr, make([]byte, 256<<10)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyGzip", func(b *testing.B) {
		b.SetBytes(res.RawBytes)
		for b.Loop() {
			if _, err := snapshot.VerifyGzip(bytes.NewReader(sample.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	})
}
