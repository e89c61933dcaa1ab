package changelog_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/changelog"
)

var t0 = time.Date(2026, 11, 30, 7, 15, 0, 0, time.UTC)

// sampleTxns covers every kind of op: binary and empty values, deletes,
// leases, several ops per revision, and an observed time going backwards.
func sampleTxns(first int64) []changelog.Txn {
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	return []changelog.Txn{
		{Revision: first, Observed: t0, Ops: []changelog.Op{{Key: []byte("/registry/pods/a"), Value: bin}}},
		{Revision: first + 1, Observed: t0.Add(time.Millisecond), Ops: []changelog.Op{{Key: []byte("k"), Value: []byte{}}}},
		{Revision: first + 2, Observed: t0.Add(-time.Second), Ops: []changelog.Op{
			{Key: []byte("\x00\xff"), Value: []byte("v"), Lease: 0x694d7a6c3b1e2f01},
			{Delete: true, Key: []byte("/registry/pods/a")},
			{Key: []byte("x"), Value: []byte("y"), Lease: -1},
		}},
		{Revision: first + 3, Observed: t0.Add(2 * time.Second), Ops: []changelog.Op{{Delete: true, Key: []byte("k")}}},
	}
}

func encode(t testing.TB, txns []changelog.Txn) ([]byte, changelog.SegmentInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := changelog.Encode(&buf, txns)
	require.NoError(t, err)
	return buf.Bytes(), info
}

func decodeAll(data []byte) ([]changelog.Txn, changelog.SegmentInfo, error) {
	var got []changelog.Txn
	info, err := changelog.Decode(bytes.NewReader(data), func(t changelog.Txn) error {
		got = append(got, t)
		return nil
	})
	return got, info, err
}

// normalize is what a round trip keeps: milliseconds, UTC, nil for empty.
func normalize(txns []changelog.Txn) []changelog.Txn {
	out := make([]changelog.Txn, len(txns))
	for i, t := range txns {
		out[i] = changelog.Txn{Revision: t.Revision, Observed: time.UnixMilli(t.Observed.UnixMilli()).UTC()}
		for _, op := range t.Ops {
			if len(op.Value) == 0 {
				op.Value = nil
			}
			out[i].Ops = append(out[i].Ops, op)
		}
	}
	return out
}

func normalizeValues(txns []changelog.Txn) []changelog.Txn {
	for i := range txns {
		for j := range txns[i].Ops {
			if len(txns[i].Ops[j].Value) == 0 {
				txns[i].Ops[j].Value = nil
			}
		}
	}
	return txns
}

func TestRoundTrip(t *testing.T) {
	txns := sampleTxns(1234)
	txns[1].Observed = txns[1].Observed.Add(123456 * time.Nanosecond) // dropped below ms
	data, info := encode(t, txns)

	sum := sha256.Sum256(data)
	assert.Equal(t, changelog.SegmentInfo{
		First: 1234, Last: 1237,
		FirstObserved: t0, LastObserved: t0.Add(2 * time.Second),
		Txns: 4, Ops: 6, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
	}, info)

	got, dinfo, err := decodeAll(data)
	require.NoError(t, err)
	assert.Equal(t, info, dinfo)
	assert.Equal(t, normalize(txns), normalizeValues(got))

	// Deterministic: the same txns, the same bytes.
	again, _ := encode(t, txns)
	assert.Equal(t, data, again)
}

func TestRoundTripLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var txns []changelog.Txn
	for i := range 300 {
		txn := changelog.Txn{Revision: int64(1<<40 + i), Observed: t0.Add(time.Duration(i) * time.Millisecond)}
		nops := 1
		if i%50 == 0 {
			nops = 2000 // a delete of a whole prefix, a lease revoke
		}
		for j := range nops {
			op := changelog.Op{Key: []byte(strings.Repeat("k", 1+rng.IntN(300)) + string(rune(j)))}
			switch rng.IntN(3) {
			case 0:
				op.Delete = true
			default:
				op.Value = make([]byte, rng.IntN(1000))
				for k := range op.Value {
					op.Value[k] = byte(rng.Uint32())
				}
				op.Lease = rng.Int64()
			}
			txn.Ops = append(txn.Ops, op)
		}
		txns = append(txns, txn)
	}
	// One value above the reader's buffers.
	txns[7].Ops[0] = changelog.Op{Key: []byte("big"), Value: bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfe}, 300_000)}
	data, info := encode(t, txns)
	got, dinfo, err := decodeAll(data)
	require.NoError(t, err)
	assert.Equal(t, info, dinfo)
	require.Len(t, got, len(txns))
	assert.Equal(t, normalize(txns), normalizeValues(got))
}

func TestEncodeRefuses(t *testing.T) {
	for name, txns := range map[string][]changelog.Txn{
		"empty":        nil,
		"revision 0":   {{Revision: 0, Ops: []changelog.Op{{Key: []byte("k")}}}},
		"gap":          {{Revision: 5, Ops: []changelog.Op{{Key: []byte("k")}}}, {Revision: 7, Ops: []changelog.Op{{Key: []byte("k")}}}},
		"repeat":       {{Revision: 5, Ops: []changelog.Op{{Key: []byte("k")}}}, {Revision: 5, Ops: []changelog.Op{{Key: []byte("k")}}}},
		"no ops":       {{Revision: 5}},
		"empty key":    {{Revision: 5, Ops: []changelog.Op{{Value: []byte("v")}}}},
		"delete+value": {{Revision: 5, Ops: []changelog.Op{{Delete: true, Key: []byte("k"), Value: []byte("v")}}}},
		"delete+lease": {{Revision: 5, Ops: []changelog.Op{{Delete: true, Key: []byte("k"), Lease: 3}}}},
		"out of order": {{Revision: 6, Ops: []changelog.Op{{Key: []byte("k")}}}, {Revision: 5, Ops: []changelog.Op{{Key: []byte("k")}}}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := changelog.Encode(&buf, txns)
			assert.Error(t, err)
		})
	}
}

// Every flipped bit, at every byte of a small segment, and every truncation
// either fails with ErrCorrupt or changes nothing that is decoded: gzip has
// bits that carry nothing (header MTIME, XFL and OS, the padding of stored
// deflate blocks).
func TestDecodeDetectsCorruption(t *testing.T) {
	txns := sampleTxns(1)
	data, _ := encode(t, txns)
	harmless := map[int]int{}
	for i := range data {
		for bit := range 8 {
			bad := bytes.Clone(data)
			bad[i] ^= 1 << bit
			got, _, err := decodeAll(bad)
			switch {
			case errors.Is(err, changelog.ErrCorrupt):
			case err != nil:
				t.Fatalf("byte %d bit %d: err = %v, want ErrCorrupt", i, bit, err)
			default:
				require.Equal(t, normalize(txns), normalizeValues(got), "byte %d bit %d: decoded something else", i, bit)
				harmless[i]++
			}
		}
	}
	t.Logf("%d bytes; flips that changed nothing decoded, by byte: %v", len(data), harmless)
	for i := range harmless {
		// Gzip header bytes 3-9, the padding of a stored block right after
		// them, or the padding after the last deflate block (the byte
		// before gzip's 8-byte CRC-32 and size).
		if (i < 3 || i > 10) && i != len(data)-9 {
			t.Errorf("byte %d: a flip there changed nothing decoded", i)
		}
	}
	for n := range len(data) {
		_, _, err := decodeAll(data[:n])
		if !errors.Is(err, changelog.ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrCorrupt", n, len(data), err)
		}
	}
	_, _, err := decodeAll(append(bytes.Clone(data), 0))
	assert.ErrorIs(t, err, changelog.ErrCorrupt, "trailing byte")
	_, _, err = decodeAll(append(bytes.Clone(data), data...))
	assert.ErrorIs(t, err, changelog.ErrCorrupt, "two segments concatenated")
}

// gzipBody compresses a hand-made body, so the checks behind gzip's own CRC
// are exercised: the trailer, and the structure under a valid trailer.
func gzipBody(body []byte, withTrailer bool) []byte {
	if withTrailer {
		sum := sha256.Sum256(body)
		body = append(bytes.Clone(body), sum[:]...)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(body)
	zw.Close()
	return buf.Bytes()
}

func rawBody(t *testing.T, txns []changelog.Txn) []byte {
	data, _ := encode(t, txns)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	return body[:len(body)-sha256.Size]
}

func TestDecodeChecksBodyUnderGzip(t *testing.T) {
	body := rawBody(t, sampleTxns(1))

	// A flipped body byte under the original trailer, in a valid gzip
	// stream: gzip's CRC cannot see it, the trailer does.
	sum := sha256.Sum256(body)
	for i := range body {
		bad := bytes.Clone(body)
		bad[i] ^= 0x20
		_, _, err := decodeAll(gzipBody(append(bad, sum[:]...), false))
		require.ErrorIs(t, err, changelog.ErrCorrupt, "byte %d", i)
	}
	// A body whose trailer matches, and is wrong in structure.
	for name, body := range map[string][]byte{
		"bad magic":   append([]byte("KDRCLSEX\x01"), body[9:]...),
		"version 2":   append([]byte("KDRCLSEG\x02"), body[9:]...),
		"truncated":   body[:len(body)-3],
		"extra bytes": append(bytes.Clone(body), 0),
	} {
		_, _, err := decodeAll(gzipBody(body, true))
		assert.ErrorIs(t, err, changelog.ErrCorrupt, name)
		t.Logf("%s: %v", name, err)
	}
	// Valid checksum, wrong counts or revisions.
	hdr := func(first, last, txns, ops uint64, rest ...byte) []byte {
		b := []byte("KDRCLSEG\x01")
		for _, v := range []uint64{first, last, txns, ops} {
			b = appendUvarint(b, v)
		}
		return append(b, rest...)
	}
	put := func(rev uint64) []byte { // revision, observed 0, 1 op, put "k" = "" lease 0
		return append(appendUvarint(nil, rev), 0, 1, 0, 1, 'k', 0, 0)
	}
	for name, body := range map[string][]byte{
		"txn count":       hdr(5, 6, 3, 2, append(put(5), put(6)...)...),
		"op count":        hdr(5, 6, 2, 3, append(put(5), put(6)...)...),
		"gap":             hdr(5, 6, 2, 2, append(put(5), put(7)...)...),
		"last < first":    hdr(6, 5, 0, 0),
		"revision 0":      hdr(0, 0, 1, 1, put(0)...),
		"no ops":          hdr(5, 5, 1, 0, 5, 0, 0),
		"unknown kind":    hdr(5, 5, 1, 1, 5, 0, 1, 7, 1, 'k'),
		"empty key":       hdr(5, 5, 1, 1, 5, 0, 1, 1, 0),
		"huge key length": hdr(5, 5, 1, 1, append([]byte{5, 0, 1, 1}, appendUvarint(nil, 1<<40)...)...),
		"short key":       hdr(5, 5, 1, 1, 5, 0, 1, 1, 9, 'k'),
	} {
		_, _, err := decodeAll(gzipBody(body, true))
		assert.ErrorIs(t, err, changelog.ErrCorrupt, name)
		t.Logf("%s: %v", name, err)
	}
	// And the hand-made body itself is fine.
	_, info, err := decodeAll(gzipBody(hdr(5, 6, 2, 2, append(put(5), put(6)...)...), true))
	require.NoError(t, err)
	assert.Equal(t, int64(6), info.Last)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestDecodeStopsOnCallbackError(t *testing.T) {
	data, _ := encode(t, sampleTxns(1))
	stop := errors.New("stop")
	calls := 0
	_, err := changelog.Decode(bytes.NewReader(data), func(changelog.Txn) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	assert.Equal(t, stop, err)
	assert.Equal(t, 2, calls)
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// A store that fails mid-read is not a corrupt segment.
func TestDecodeReadError(t *testing.T) {
	data, _ := encode(t, sampleTxns(1))
	boom := errors.New("connection reset")
	_, err := changelog.Decode(&failingReader{r: bytes.NewReader(data), n: len(data) / 2, err: boom}, func(changelog.Txn) error { return nil })
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, changelog.ErrCorrupt)
}

func TestSegmentKey(t *testing.T) {
	obs := time.Date(2026, 11, 30, 7, 15, 1, 234_567_000, time.UTC)
	key := changelog.SegmentKey("20261130T071500Z-r00000000000000001234", 1234, 99999, obs)
	assert.Equal(t, "chains/20261130T071500Z-r00000000000000001234/seg/00000000000000001234-00000000000000099999-1796022901234.kcl", key)
	id, info, ok := changelog.ParseSegmentKey(key)
	require.True(t, ok)
	assert.Equal(t, "20261130T071500Z-r00000000000000001234", id)
	assert.Equal(t, changelog.SegmentInfo{Key: key, First: 1234, Last: 99999, LastObserved: obs.Truncate(time.Millisecond)}, info)

	for _, bad := range []string{
		"",
		"chains/x/seg/",
		"chains/x/chain.json",
		"chains//seg/00000000000000001234-00000000000000099999-1796022901234.kcl",
		"chains/x/seg/00000000000000001234-00000000000000099999-1796022901234.gz",
		"chains/x/seg/0000000000000001234-000000000000000099999-1796022901234.kcl",
		"chains/x/seg/00000000000000001234-00000000000000099999-179602290123.kcl",
		"chains/x/seg/00000000000000001234_00000000000000099999-1796022901234.kcl",
		"chains/x/seg/0000000000000000123a-00000000000000099999-1796022901234.kcl",
		"chains/x/seg/00000000000000000000-00000000000000000000-1796022901234.kcl",
		"chains/x/seg/00000000000000000009-00000000000000000008-1796022901234.kcl",
		"chains/x/seg/99999999999999999999-99999999999999999999-1796022901234.kcl",
		"chains/x/y/seg/00000000000000001234-00000000000000099999-1796022901234.kcl",
		"other/x/seg/00000000000000001234-00000000000000099999-1796022901234.kcl",
	} {
		_, _, ok := changelog.ParseSegmentKey(bad)
		assert.False(t, ok, bad)
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	changelog.Encode(&buf, sampleTxns(1))
	f.Add(buf.Bytes())
	f.Add(gzipBody([]byte("KDRCLSEG\x01\x05\x05\x01\x01\x05\x00\x01\x00\x01k\x00\x00"), true))
	f.Fuzz(func(t *testing.T, data []byte) {
		var txns []changelog.Txn
		info, err := changelog.Decode(bytes.NewReader(data), func(t changelog.Txn) error {
			txns = append(txns, t)
			return nil
		})
		if err != nil {
			if !errors.Is(err, changelog.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same content.
		var out bytes.Buffer
		again, err := changelog.Encode(&out, txns)
		if err != nil {
			t.Fatalf("decoded segment does not encode: %v", err)
		}
		if again.First != info.First || again.Last != info.Last || again.Txns != info.Txns || again.Ops != info.Ops {
			t.Fatalf("re-encoded %+v, decoded %+v", again, info)
		}
	})
}

// FuzzDecodeBody fuzzes the body under a valid gzip stream and trailer,
// where FuzzDecode's mutations rarely get.
func FuzzDecodeBody(f *testing.F) {
	f.Add(rawBodyOf(sampleTxns(1)))
	f.Add([]byte("KDRCLSEG\x01\x05\x06\x02\x02\x05\x00\x01\x00\x01k\x00\x00\x06\x00\x01\x01\x01k"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var txns []changelog.Txn
		info, err := changelog.Decode(bytes.NewReader(gzipBody(body, true)), func(t changelog.Txn) error {
			txns = append(txns, t)
			return nil
		})
		if err != nil {
			if !errors.Is(err, changelog.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		var out bytes.Buffer
		again, err := changelog.Encode(&out, txns)
		if err != nil {
			t.Fatalf("decoded segment does not encode: %v", err)
		}
		got, _, err := decodeAll(out.Bytes())
		if err != nil || again.First != info.First || again.Last != info.Last || again.Ops != info.Ops {
			t.Fatalf("re-encoded %+v (%v), decoded %+v", again, err, info)
		}
		if !assert.Equal(t, txns, got) {
			t.FailNow()
		}
	})
}

func rawBodyOf(txns []changelog.Txn) []byte {
	var buf bytes.Buffer
	changelog.Encode(&buf, txns)
	zr, _ := gzip.NewReader(&buf)
	body, _ := io.ReadAll(zr)
	return body[:len(body)-sha256.Size]
}
