package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

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

// Decompressed data goes from the reading goroutine to the hashing one in
// verifyChunks buffers of verifyChunk bytes: memory is their sum plus
// gzip's window, whatever the size of the backup.
const (
	verifyChunk  = 256 << 10
	verifyChunks = 4
)

// VerifyGzip decompresses r as it reads and checks that the snapshot inside
// ends with a correct sha256 trailer, the check etcd-manager's restore makes.
// It reads r to the end with constant memory.
func VerifyGzip(r io.Reader) (VerifyResult, error) { return VerifyGzipTo(r, io.Discard) }

// VerifyGzipTo is VerifyGzip that also writes the decompressed snapshot,
// trailer included, to w as it goes, so a caller that needs the raw file
// (a restore drill) gets it from the same single pass. What w received is
// only a good snapshot when the error is nil.
//
// Inflating is serial and is most of the work; hashing the raw snapshot
// costs another fifth of it. So the snapshot is hashed, and written to w,
// on a second goroutine while the next chunk inflates, and a verification
// takes about as long as a plain gunzip. r is only ever read from the
// caller's goroutine, so a reader that reports progress needs no locking;
// w is written from the other one.
func VerifyGzipTo(r io.Reader, w io.Writer) (VerifyResult, error) {
	gzIn := newCountingHash(io.Discard)
	// gzip reads through a buffer of its own; a larger one than its 4 KiB
	// reads the store's stream in fewer, larger pieces. Everything read
	// from r is hashed below the buffer, so nothing is missed or counted
	// twice whatever the buffer holds at the end.
	zr, err := gzip.NewReader(bufio.NewReaderSize(io.TeeReader(r, gzIn), verifyChunk))
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify: not gzip: %w", err)
	}
	raw := newRawCheck()
	n, readErr, writeErr := inflateTo(zr, io.MultiWriter(raw, w))
	if writeErr != nil {
		return VerifyResult{}, fmt.Errorf("verify: write after %d bytes: %w", raw.n, writeErr)
	}
	if readErr != nil {
		return VerifyResult{}, fmt.Errorf("verify: decompress after %d bytes: %w", n, readErr)
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

// inflateTo reads zr to its end on this goroutine and writes what it read
// to w, in order, on another. It returns the bytes read, the first read
// error other than io.EOF, and the first write error; after a write error
// it stops reading. When it returns, w is no longer being written.
func inflateTo(zr io.Reader, w io.Writer) (n int64, readErr, writeErr error) {
	full := make(chan []byte, verifyChunks)
	free := make(chan []byte, verifyChunks)
	for range verifyChunks {
		free <- make([]byte, verifyChunk)
	}
	var failed atomic.Bool // set by the writer once writeErr is
	done := make(chan struct{})
	go func() {
		defer close(done)
		for buf := range full {
			if writeErr == nil {
				if _, writeErr = w.Write(buf); writeErr != nil {
					failed.Store(true)
				}
			}
			free <- buf[:cap(buf)]
		}
	}()
	for !failed.Load() {
		buf := <-free
		k, err := fill(zr, buf)
		n += int64(k)
		if k > 0 {
			full <- buf[:k]
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
	}
	close(full)
	<-done // writeErr is the writer's, read after it is done
	return n, readErr, writeErr
}

// fill reads into buf until it is full or the read fails: fewer, fuller
// chunks mean fewer hand-overs. Unlike io.ReadFull it passes the reader's
// own errors on unchanged, so a truncated gzip stream still reads as one.
func fill(r io.Reader, buf []byte) (int, error) {
	k := 0
	for k < len(buf) {
		m, err := r.Read(buf[k:])
		k += m
		if err != nil {
			return k, err
		}
	}
	return k, nil
}
