package changelog_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/internal/changelog"
)

// benchTxns is a segment as capture writes it under load: 1000 revisions,
// one put of a ~1 KiB Kubernetes-like value each.
func benchTxns() ([]changelog.Txn, int64) {
	var txns []changelog.Txn
	var raw int64
	for i := range 1000 {
		v := make([]byte, 0, 1100)
		for len(v) < 1000 {
			v = fmt.Appendf(v, "\x0a\x12metadata.name-%d\x1a%08x", i%64, uint32(i*2654435761))
		}
		k := fmt.Appendf(nil, "/registry/bench/%05d", i)
		raw += int64(len(k) + len(v))
		txns = append(txns, changelog.Txn{Revision: int64(1000 + i), Observed: t0.Add(time.Duration(i) * time.Millisecond),
			Ops: []changelog.Op{{Key: k, Value: v}}})
	}
	return txns, raw
}

func BenchmarkEncode(b *testing.B) {
	txns, raw := benchTxns()
	b.SetBytes(raw)
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		info, err := changelog.Encode(io.Discard, txns)
		if err != nil {
			b.Fatal(err)
		}
		n = info.Bytes
	}
	b.ReportMetric(float64(n)/float64(len(txns)), "stored-B/txn")
}

func BenchmarkDecode(b *testing.B) {
	txns, raw := benchTxns()
	var buf bytes.Buffer
	if _, err := changelog.Encode(&buf, txns); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := changelog.Decode(bytes.NewReader(buf.Bytes()), func(changelog.Txn) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
