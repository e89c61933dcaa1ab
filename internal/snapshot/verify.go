package snapshot

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// VerifyResult describes a verified etcd.backup.gz. RawSHA256 and GzipSHA256
// compare directly with the Result of the Stream that wrote it.
type VerifyResult struct {
	RawBytes   int64
	GzipBytes  int64
	RawSHA256  string
	GzipSHA256 string
}

// VerifyGzip decompresses r as it reads and checks that the snapshot inside
// ends with a correct sha256 trailer, the check etcd-manager's restore makes.
// It reads r to the end with constant memory.
func VerifyGzip(r io.Reader) (VerifyResult, error) { return VerifyGzipTo(r, io.Discard) }

// VerifyGzipTo is VerifyGzip that also writes the decompressed snapshot,
// trailer included, to w as it goes, so a caller that needs the raw file
// (a restore drill) gets it from the same single pass. What w received is
// only a good snapshot when the error is nil.
func VerifyGzipTo(r io.Reader, w io.Writer) (VerifyResult, error) {
	gzIn := newCountingHash(io.Discard)
	zr, err := gzip.NewReader(io.TeeReader(r, gzIn))
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify: not gzip: %w", err)
	}
	raw := newRawCheck()
	if _, err := io.CopyBuffer(io.MultiWriter(raw, w), zr, make([]byte, bufSize)); err != nil {
		return VerifyResult{}, fmt.Errorf("verify: decompress after %d bytes: %w", raw.n, err)
	}
	if err := zr.Close(); err != nil {
		return VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	if err := raw.verify(); err != nil {
		return VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	// The gzip reader reads on until EOF looking for further members (and
	// fails on trailing garbage); draining r anyway makes sure GzipBytes and
	// GzipSHA256 cover the whole object whatever the reader does.
	if _, err := io.Copy(io.Discard, io.TeeReader(r, gzIn)); err != nil {
		return VerifyResult{}, fmt.Errorf("verify: read: %w", err)
	}
	return VerifyResult{
		RawBytes:   raw.n,
		GzipBytes:  gzIn.n.Load(),
		RawSHA256:  raw.sum(),
		GzipSHA256: gzIn.sum(),
	}, nil
}
