// Package snapshot streams an etcd v3 snapshot, exactly as the Maintenance
// Snapshot RPC sends it (what `etcdctl snapshot save` writes), through gzip
// into any writer, and verifies such gzip files later. The result is the
// etcd.backup.gz that etcd-manager restores, which checks the sha256 trailer,
// so the trailer is checked here too, while streaming, before a backup can
// be called good.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
)

const (
	// bufSize is the copy buffer: memory use is this plus gzip's window,
	// whatever the size of the database.
	bufSize = 256 << 10
	// progressEvery is how many raw bytes pass between Progress calls.
	progressEvery = 1 << 20
	// statusTimeout bounds the Status call that starts Stream, so a dead
	// endpoint fails fast even when the caller's context has no deadline.
	statusTimeout = 10 * time.Second
)

// Result describes one streamed snapshot.
type Result struct {
	// Revision is the store revision the endpoint reported just before the
	// snapshot was taken. Writes that land between that Status call and the
	// snapshot are in the snapshot too, so the snapshot holds at least this
	// revision.
	Revision int64
	// EtcdVersion is the server version of the endpoint, e.g. "3.5.9"; it
	// picks the etcd binary etcd-manager restores with.
	EtcdVersion string
	RawBytes    int64  // snapshot bytes, sha256 trailer included
	GzipBytes   int64  // bytes written to w
	RawSHA256   string // hex sha256 of the snapshot's data: the digest etcd puts in its 32-byte trailer
	GzipSHA256  string // hex sha256 of all bytes written to w
}

// Progress is told the raw bytes read and gzip bytes written so far. gzip
// buffers, so the second number lags the first.
type Progress func(rawBytes, gzipBytes int64)

// Stream takes a snapshot from the single member at endpoint, using cli's
// TLS settings, and writes it gzip-compressed at level (gzip.BestSpeed ..
// gzip.BestCompression, or gzip.DefaultCompression) into w.
//
// On error nothing written to w is usable: the gzip stream is left without
// its end, so no reader mistakes a partial snapshot for a whole one. The
// caller must still discard what was written.
func Stream(ctx context.Context, cli *clientv3.Client, endpoint string, w io.Writer, level int, p Progress) (Result, error) {
	gzOut := newCountingHash(w)
	gz, err := pgzip.NewWriterLevel(gzOut, level)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: gzip level %d: %w", level, err)
	}
	// Compress blocks on every core while the next ones arrive from etcd:
	// gzip is the slowest stage, and one core cannot keep up with the RPC.
	// Memory stays bounded at about 2 x gzipBlocks x gzipBlock.
	if err := gz.SetConcurrency(gzipBlock, gzipBlocks()); err != nil {
		return Result{}, fmt.Errorf("snapshot: gzip: %w", err)
	}
	// Cancelling on return also ends the RPC stream if we stop reading early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sctx, scancel := context.WithTimeout(ctx, statusTimeout)
	st, err := etcdconn.Status(sctx, cli, endpoint)
	scancel()
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: status: %w", err)
	}

	// A snapshot is one member's state, so pin the RPC to that member the
	// way Maintenance.Status does, instead of the client's balancer.
	conn, err := cli.Dial(endpoint)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	defer conn.Close()
	mt := clientv3.NewMaintenanceFromMaintenanceClient(clientv3.RetryMaintenanceClient(cli, conn), cli)
	resp, err := mt.SnapshotWithVersion(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	defer resp.Snapshot.Close()

	// On failure the gzip stream must stay unfinished (no trailer: nobody
	// may take it for a backup), yet every block pgzip is still compressing
	// must be written before Stream returns, or it lands in w after the
	// caller has moved on. Flush waits for them and writes no trailer.
	finished := false
	defer func() {
		if !finished {
			_ = gz.Flush()
		}
	}()
	raw := newRawCheck()
	if err := pump(resp.Snapshot, raw, gz, gzOut, p); err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	if err := raw.verify(); err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	// Only now is the gzip stream finished: everything before was checked.
	finished = true
	if err := gz.Close(); err != nil {
		return Result{}, fmt.Errorf("snapshot: write: %w", err)
	}
	if p != nil {
		p(raw.n, gzOut.n.Load())
	}

	res := Result{
		Revision:    st.Header.GetRevision(),
		EtcdVersion: st.Version,
		RawBytes:    raw.n,
		RawSHA256:   raw.sum(),
		GzipBytes:   gzOut.n.Load(),
		GzipSHA256:  gzOut.sum(),
	}
	// Servers that fill the stream's header know the exact revision.
	if resp.Header != nil && resp.Header.Revision > 0 {
		res.Revision = resp.Header.Revision
	}
	return res, nil
}

// pump copies the raw snapshot from r into raw and gz with one fixed buffer,
// telling p about every progressEvery raw bytes.
func pump(r io.Reader, raw *rawCheck, gz io.Writer, gzOut *countingHash, p Progress) error {
	sink := io.MultiWriter(raw, gz)
	buf := make([]byte, bufSize)
	next := int64(progressEvery)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := sink.Write(buf[:n]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if p != nil && raw.n >= next {
				p(raw.n, gzOut.n.Load())
				next = raw.n + progressEvery
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read after %d bytes: %w", raw.n, rerr)
		}
	}
}

// gzipBlock is the unit pgzip compresses in parallel.
const gzipBlock = 1 << 20

func gzipBlocks() int { return max(2, 2*runtime.GOMAXPROCS(0)) }

// countingHash passes writes to w and counts and hashes them. pgzip writes
// from its own goroutine while Progress reads the count, hence the atomic.
type countingHash struct {
	w io.Writer
	h hash.Hash
	n atomic.Int64
}

func newCountingHash(w io.Writer) *countingHash {
	return &countingHash{w: w, h: sha256.New()}
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n.Add(int64(n))
	return n, err
}

func (c *countingHash) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }
