// Segment format, version 1. (This file's comment, not the package's: the
// package documentation is in changelog.go.)
//
// A segment is one gzip member (RFC 1952; kopsdr writes no name, comment or
// mtime) whose decompressed content, the body, is:
//
//	body    = magic version header txn{txns} trailer
//	magic   = "KDRCLSEG"                            8 bytes, 4b 44 52 43 4c 53 45 47
//	version = 0x01                                  1 byte
//	header  = first:uvarint last:uvarint txns:uvarint ops:uvarint
//	txn     = revision:uvarint observed:varint nops:uvarint op{nops}
//	op      = 0x00 key:bytes value:bytes lease:varint     a put
//	        | 0x01 key:bytes                              a delete
//	bytes   = length:uvarint octet{length}
//	trailer = sha256 of every body byte before it   32 bytes, raw
//
// uvarint and varint are Go's encoding/binary varints: LEB128, 7 bits per
// byte, least significant group first, at most 10 bytes; varint is zigzag
// encoded first ((n << 1) ^ (n >> 63)). Keys and values are raw bytes
// (Kubernetes stores protobuf), never text-encoded.
//
// Rules a reader checks, and a writer keeps:
//   - first >= 1, last >= first, txns == last-first+1, ops == the sum of
//     every txn's nops;
//   - the i-th txn (from 0) has revision first+i: a segment holds every
//     revision from first to last, each exactly once, in order;
//   - observed is when kopsdr saw the revision, in unix milliseconds; it
//     need not increase from txn to txn (clocks step);
//   - nops >= 1 (etcd makes no revision without a change), and ops are in
//     the order etcd's watch delivered them;
//   - keys are 1 to MaxFieldLen bytes, values 0 to MaxFieldLen; lease is
//     the etcd lease id of a put, 0 for none;
//   - header numbers are at most 2^62, nops at most 2^40;
//   - the trailer matches, the gzip member ends right after it (its CRC-32
//     and size checked), and nothing follows the gzip member.
//
// Together with gzip's CRC-32 the trailer guarantees that a segment either
// decodes to exactly what was written or fails. (A few bits of a gzip
// stream carry nothing: header fields such as MTIME and OS, the padding of
// stored deflate blocks. Flipping them changes no decoded byte.)
//
// The same transactions always encode to the same body; the compressed bytes
// depend on the compressor, so SegmentInfo.SHA256 identifies one stored
// object, not its content.

package changelog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// ErrCorrupt: a segment, or a chain's set of segments, is not what the
// format or the layout says. Errors wrapping it name what is wrong.
var ErrCorrupt = errors.New("change log corrupt")

const (
	segmentMagic   = "KDRCLSEG"
	segmentVersion = 1
	// SegmentExt ends every segment's name.
	SegmentExt = ".kcl"
	// MaxFieldLen bounds one key or value in a segment (etcd's own request
	// limit is far lower). A reader allocates as the bytes arrive, so a
	// corrupt length cannot make it allocate more than the segment holds.
	MaxFieldLen = 1 << 30
	// maxObservedMillis is the largest time a segment name can hold (13 digits).
	maxObservedMillis = 9_999_999_999_999
)

const (
	opPut    = 0x00
	opDelete = 0x01
)

// gzipWriters reuses compressors: each holds several hundred KiB of state.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return zw
}}

// Encode writes txns as one segment to w. txns must be non-empty, with
// strictly consecutive revisions (each the previous one plus one) starting
// at 1 or later, at least one op each, non-empty keys, and no value or lease
// on deletes. Observed times are kept to the millisecond. The returned info
// has everything but Key: First, Last, FirstObserved, LastObserved, Txns,
// Ops, Bytes (compressed bytes written to w) and SHA256 (hex of the
// compressed bytes).
func Encode(w io.Writer, txns []Txn) (SegmentInfo, error) {
	info, err := checkTxns(txns)
	if err != nil {
		return SegmentInfo{}, err
	}
	out := &hashWriter{w: w, h: sha256.New()}
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(out)
	// MTIME 0: this gzip writes the zero time's seconds otherwise.
	zw.ModTime = time.Unix(0, 0)
	defer func() {
		zw.Reset(io.Discard)
		gzipWriters.Put(zw)
	}()
	body := sha256.New()
	bw := &bodyWriter{zw: zw, h: body, buf: make([]byte, 0, 64<<10)}

	bw.put([]byte(segmentMagic))
	bw.byte(segmentVersion)
	bw.uvarint(uint64(info.First))
	bw.uvarint(uint64(info.Last))
	bw.uvarint(uint64(info.Txns))
	bw.uvarint(uint64(info.Ops))
	for _, t := range txns {
		bw.uvarint(uint64(t.Revision))
		bw.varint(t.Observed.UnixMilli())
		bw.uvarint(uint64(len(t.Ops)))
		for _, op := range t.Ops {
			if op.Delete {
				bw.byte(opDelete)
				bw.bytes(op.Key)
				continue
			}
			bw.byte(opPut)
			bw.bytes(op.Key)
			bw.bytes(op.Value)
			bw.varint(op.Lease)
		}
		if bw.err != nil {
			return SegmentInfo{}, bw.err
		}
	}
	bw.flush()
	if bw.err != nil {
		return SegmentInfo{}, bw.err
	}
	if _, err := zw.Write(body.Sum(nil)); err != nil {
		return SegmentInfo{}, err
	}
	if err := zw.Close(); err != nil {
		return SegmentInfo{}, err
	}
	if out.err != nil {
		return SegmentInfo{}, out.err
	}
	info.Bytes = out.n
	info.SHA256 = hex.EncodeToString(out.h.Sum(nil))
	return info, nil
}

// checkTxns validates txns for Encode and describes them.
func checkTxns(txns []Txn) (SegmentInfo, error) {
	if len(txns) == 0 {
		return SegmentInfo{}, errors.New("changelog: a segment needs at least one txn")
	}
	first := txns[0].Revision
	if first < 1 {
		return SegmentInfo{}, fmt.Errorf("changelog: revision %d: revisions start at 1", first)
	}
	info := SegmentInfo{
		First:         first,
		Last:          txns[len(txns)-1].Revision,
		FirstObserved: millis(txns[0].Observed),
		LastObserved:  millis(txns[len(txns)-1].Observed),
		Txns:          len(txns),
	}
	for i, t := range txns {
		if t.Revision != first+int64(i) {
			return SegmentInfo{}, fmt.Errorf("changelog: txn %d has revision %d, want %d: revisions must be consecutive", i, t.Revision, first+int64(i))
		}
		if len(t.Ops) == 0 {
			return SegmentInfo{}, fmt.Errorf("changelog: revision %d has no ops", t.Revision)
		}
		for j, op := range t.Ops {
			switch {
			case len(op.Key) == 0:
				return SegmentInfo{}, fmt.Errorf("changelog: revision %d op %d: empty key", t.Revision, j)
			case len(op.Key) > MaxFieldLen || len(op.Value) > MaxFieldLen:
				return SegmentInfo{}, fmt.Errorf("changelog: revision %d op %d: key or value longer than %d bytes", t.Revision, j, MaxFieldLen)
			case op.Delete && (len(op.Value) != 0 || op.Lease != 0):
				return SegmentInfo{}, fmt.Errorf("changelog: revision %d op %d: a delete with a value or lease", t.Revision, j)
			}
		}
		info.Ops += len(t.Ops)
	}
	return info, nil
}

// millis is t as a segment keeps it: unix milliseconds, in UTC.
func millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// bodyWriter writes the body through a buffer into the compressor and the
// body hash, remembering the first error.
type bodyWriter struct {
	zw  io.Writer
	h   hash.Hash
	buf []byte
	err error
}

func (b *bodyWriter) put(p []byte) {
	if len(b.buf)+len(p) > cap(b.buf) {
		b.flush()
		if len(p) > cap(b.buf) {
			b.write(p)
			return
		}
	}
	b.buf = append(b.buf, p...)
}

func (b *bodyWriter) byte(c byte) {
	if len(b.buf) == cap(b.buf) {
		b.flush()
	}
	b.buf = append(b.buf, c)
}

func (b *bodyWriter) uvarint(v uint64) {
	if len(b.buf)+binary.MaxVarintLen64 > cap(b.buf) {
		b.flush()
	}
	b.buf = binary.AppendUvarint(b.buf, v)
}

func (b *bodyWriter) varint(v int64) {
	if len(b.buf)+binary.MaxVarintLen64 > cap(b.buf) {
		b.flush()
	}
	b.buf = binary.AppendVarint(b.buf, v)
}

func (b *bodyWriter) bytes(p []byte) {
	b.uvarint(uint64(len(p)))
	b.put(p)
}

func (b *bodyWriter) flush() {
	b.write(b.buf)
	b.buf = b.buf[:0]
}

func (b *bodyWriter) write(p []byte) {
	if b.err != nil || len(p) == 0 {
		return
	}
	b.h.Write(p)
	_, b.err = b.zw.Write(p)
}

// hashWriter counts and hashes what it passes on.
type hashWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (w *hashWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	w.err = err
	return n, err
}

// Decode reads one segment from r and calls fn with each txn in revision
// order, one at a time; fn owns the Txn it gets. It checks everything the
// format promises (see the top of this file). A segment that is corrupt or
// truncated is an error wrapping ErrCorrupt that says what is wrong; an
// error reading r is returned as it is. The trailer is checked only at the
// end, so after any error the txns fn already got must be discarded. An
// error from fn stops Decode and is returned unchanged.
//
// The returned info has everything but Key: Bytes and SHA256 describe the
// compressed bytes read from r.
func Decode(r io.Reader, fn func(Txn) error) (SegmentInfo, error) {
	src := &sourceReader{r: r, h: sha256.New()}
	info, err := decode(src, fn)
	if err != nil {
		var ce *corruptErr
		if errors.As(err, &ce) && src.err != nil {
			// The store failed, not the segment.
			return SegmentInfo{}, fmt.Errorf("reading segment: %w", src.err)
		}
		if ce != nil {
			return SegmentInfo{}, ce.err
		}
		return SegmentInfo{}, err
	}
	info.Bytes = src.n
	info.SHA256 = hex.EncodeToString(src.h.Sum(nil))
	return info, nil
}

// corruptErr marks decode's own findings, so Decode can tell them from the
// errors of fn.
type corruptErr struct{ err error }

func (e *corruptErr) Error() string { return e.err.Error() }

func corruptf(format string, args ...any) error {
	return &corruptErr{fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)}
}

func decode(src *sourceReader, fn func(Txn) error) (SegmentInfo, error) {
	// The gzip reader reads src through this buffer (it uses an
	// io.ByteReader as it is), so trailing bytes stay visible afterwards.
	zsrc := newBufReader(src, 32<<10, nil)
	zr, err := gzip.NewReader(zsrc)
	if err != nil {
		return SegmentInfo{}, corruptf("not a gzip stream: %v", err)
	}
	zr.Multistream(false)
	body := newBufReader(zr, 64<<10, sha256.New())

	magic, err := body.next(len(segmentMagic) + 1)
	if err != nil {
		return SegmentInfo{}, corruptf("magic: %v", noEOF(err))
	}
	if string(magic[:len(segmentMagic)]) != segmentMagic {
		return SegmentInfo{}, corruptf("bad magic %q", magic[:len(segmentMagic)])
	}
	if v := magic[len(segmentMagic)]; v != segmentVersion {
		return SegmentInfo{}, corruptf("format version %d, this kopsdr reads %d", v, segmentVersion)
	}
	var hdr [4]uint64
	for i, name := range []string{"first revision", "last revision", "txn count", "op count"} {
		if hdr[i], err = binary.ReadUvarint(body); err != nil {
			return SegmentInfo{}, corruptf("header: %s: %v", name, noEOF(err))
		}
		if hdr[i] > 1<<62 {
			return SegmentInfo{}, corruptf("header: %s %d out of range", name, hdr[i])
		}
	}
	info := SegmentInfo{First: int64(hdr[0]), Last: int64(hdr[1]), Txns: int(hdr[2]), Ops: int(hdr[3])}
	if info.First < 1 || info.Last < info.First || uint64(info.Txns) != hdr[1]-hdr[0]+1 {
		return SegmentInfo{}, corruptf("header: revisions %d-%d with %d txns", info.First, info.Last, info.Txns)
	}

	ops := 0
	for i := range info.Txns {
		want := info.First + int64(i)
		t, err := readTxn(body, want)
		if err != nil {
			return SegmentInfo{}, err
		}
		if ops += len(t.Ops); ops > info.Ops {
			return SegmentInfo{}, corruptf("revision %d: more ops than the header's %d", want, info.Ops)
		}
		if i == 0 {
			info.FirstObserved = t.Observed
		}
		info.LastObserved = t.Observed
		if err := fn(t); err != nil {
			return SegmentInfo{}, err
		}
	}
	if ops != info.Ops {
		return SegmentInfo{}, corruptf("%d ops, the header says %d", ops, info.Ops)
	}

	sum := body.sum()
	trailer, err := body.next(sha256.Size)
	if err != nil {
		return SegmentInfo{}, corruptf("trailer: %v", noEOF(err))
	}
	if !bytes.Equal(trailer, sum) {
		return SegmentInfo{}, corruptf("body checksum mismatch")
	}
	// The gzip member must end here; reading on checks its CRC and size.
	if _, err := body.next(1); err != io.EOF {
		if err == nil {
			return SegmentInfo{}, corruptf("data after the trailer")
		}
		return SegmentInfo{}, corruptf("gzip: %v", noEOF(err))
	}
	if _, err := zsrc.next(1); err != io.EOF {
		if err == nil {
			return SegmentInfo{}, corruptf("data after the gzip stream")
		}
		return SegmentInfo{}, corruptf("after the gzip stream: %v", err)
	}
	return info, nil
}

func readTxn(body *bufReader, want int64) (Txn, error) {
	rev, err := binary.ReadUvarint(body)
	if err != nil {
		return Txn{}, corruptf("txn of revision %d: revision: %v", want, noEOF(err))
	}
	if rev != uint64(want) {
		return Txn{}, corruptf("txn has revision %d, want %d", rev, want)
	}
	ms, err := binary.ReadVarint(body)
	if err != nil {
		return Txn{}, corruptf("revision %d: observed time: %v", want, noEOF(err))
	}
	n, err := binary.ReadUvarint(body)
	if err != nil {
		return Txn{}, corruptf("revision %d: op count: %v", want, noEOF(err))
	}
	if n == 0 {
		return Txn{}, corruptf("revision %d has no ops", want)
	}
	if n > 1<<40 {
		return Txn{}, corruptf("revision %d: op count %d out of range", want, n)
	}
	t := Txn{Revision: want, Observed: time.UnixMilli(ms).UTC(), Ops: make([]Op, 0, min(n, 1024))}
	for j := range n {
		kind, err := body.ReadByte()
		if err != nil {
			return Txn{}, corruptf("revision %d op %d: kind: %v", want, j, noEOF(err))
		}
		var op Op
		switch kind {
		case opPut:
		case opDelete:
			op.Delete = true
		default:
			return Txn{}, corruptf("revision %d op %d: unknown kind %#x", want, j, kind)
		}
		if op.Key, err = body.field(); err != nil {
			return Txn{}, corruptf("revision %d op %d: key: %v", want, j, noEOF(err))
		}
		if len(op.Key) == 0 {
			return Txn{}, corruptf("revision %d op %d: empty key", want, j)
		}
		if !op.Delete {
			if op.Value, err = body.field(); err != nil {
				return Txn{}, corruptf("revision %d op %d: value: %v", want, j, noEOF(err))
			}
			if op.Lease, err = binary.ReadVarint(body); err != nil {
				return Txn{}, corruptf("revision %d op %d: lease: %v", want, j, noEOF(err))
			}
		}
		t.Ops = append(t.Ops, op)
	}
	return t, nil
}

// noEOF turns a premature end into what it means.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// sourceReader counts and hashes the compressed bytes and keeps the first
// error of the underlying reader, to tell a failing store from a corrupt
// segment.
type sourceReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// bufReader is a buffered reader that, given a hash, hashes exactly the
// bytes consumed from it (a bufio.Reader would read past the body into the
// trailer).
type bufReader struct {
	src    io.Reader
	buf    []byte
	r, w   int
	err    error
	h      hash.Hash
	hashed int // buf[hashed:r] is consumed but not yet hashed
}

func newBufReader(src io.Reader, size int, h hash.Hash) *bufReader {
	return &bufReader{src: src, buf: make([]byte, size), h: h}
}

// fill reads more into the buffer, keeping the unread bytes.
func (b *bufReader) fill() {
	b.hashUpTo()
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r, b.hashed = 0, 0
	}
	for range 100 {
		if b.err != nil || b.w == len(b.buf) {
			return
		}
		n, err := b.src.Read(b.buf[b.w:])
		b.w += n
		b.err = err
		if n > 0 {
			return
		}
	}
	b.err = io.ErrNoProgress
}

func (b *bufReader) hashUpTo() {
	if b.h != nil && b.r > b.hashed {
		b.h.Write(b.buf[b.hashed:b.r])
	}
	b.hashed = b.r
}

// sum is the hash of everything consumed so far.
func (b *bufReader) sum() []byte {
	b.hashUpTo()
	return b.h.Sum(nil)
}

func (b *bufReader) ReadByte() (byte, error) {
	for b.r == b.w {
		if b.err != nil {
			return 0, b.err
		}
		b.fill()
	}
	c := b.buf[b.r]
	b.r++
	return c, nil
}

// Read makes bufReader an io.ByteReader the gzip reader uses as it is.
func (b *bufReader) Read(p []byte) (int, error) {
	for b.r == b.w {
		if b.err != nil {
			return 0, b.err
		}
		b.fill()
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// next consumes n bytes (n <= the buffer's size) and returns them; they
// stay valid until the next call.
func (b *bufReader) next(n int) ([]byte, error) {
	for b.w-b.r < n {
		if b.err != nil {
			if b.w > b.r {
				return nil, noEOF(b.err)
			}
			return nil, b.err
		}
		b.fill()
	}
	p := b.buf[b.r : b.r+n]
	b.r += n
	return p, nil
}

// field reads a length-prefixed byte string into a new slice that grows
// with the data, so a corrupt length cannot allocate more than is there.
func (b *bufReader) field() ([]byte, error) {
	n, err := binary.ReadUvarint(b)
	if err != nil {
		return nil, err
	}
	if n > MaxFieldLen {
		return nil, fmt.Errorf("length %d over %d", n, MaxFieldLen)
	}
	out := make([]byte, 0, min(n, 64<<10))
	for uint64(len(out)) < n {
		if b.r == b.w {
			if b.err != nil {
				return nil, noEOF(b.err)
			}
			b.fill()
			continue
		}
		k := min(uint64(b.w-b.r), n-uint64(len(out)))
		out = append(out, b.buf[b.r:b.r+int(k)]...)
		b.r += int(k)
	}
	return out, nil
}

// SegmentKey is where a segment of chainID holding revisions first to last,
// the last observed at lastObserved, lives in the change store:
// chains/<id>/seg/<first %020d>-<last %020d>-<unix ms %013d>.kcl.
func SegmentKey(chainID string, first, last int64, lastObserved time.Time) string {
	return fmt.Sprintf("%s%s/seg/%020d-%020d-%013d%s", chainsPrefix, chainID, first, last, lastObserved.UnixMilli(), SegmentExt)
}

// ParseSegmentKey reads a key SegmentKey made: the chain id, and the info's
// Key, First, Last and LastObserved. ok is false for anything else.
func ParseSegmentKey(key string) (chainID string, info SegmentInfo, ok bool) {
	rest, found := strings.CutPrefix(key, chainsPrefix)
	if !found {
		return "", SegmentInfo{}, false
	}
	chainID, name, found := strings.Cut(rest, "/seg/")
	if !found || checkChainID(chainID) != nil {
		return "", SegmentInfo{}, false
	}
	name, found = strings.CutSuffix(name, SegmentExt)
	// 20 + 1 + 20 + 1 + 13 characters, all digits but the dashes.
	if !found || len(name) != 55 || name[20] != '-' || name[41] != '-' {
		return "", SegmentInfo{}, false
	}
	first, ok1 := parseDigits(name[:20])
	last, ok2 := parseDigits(name[21:41])
	ms, ok3 := parseDigits(name[42:])
	if !ok1 || !ok2 || !ok3 || first < 1 || last < first {
		return "", SegmentInfo{}, false
	}
	return chainID, SegmentInfo{Key: key, First: first, Last: last, LastObserved: time.UnixMilli(ms).UTC()}, true
}

func parseDigits(s string) (int64, bool) {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
