// Package snapshot streams an etcd v3 snapshot, exactly as the Maintenance
// Snapshot RPC sends it (what `etcdctl snapshot save` writes), through gzip
// into any writer (Stream), writes the same from an etcd database file that
// no server has open (StreamFile), and verifies such gzip files later. The
// result is the etcd.backup.gz that etcd-manager restores, which checks the
// sha256 trailer, so the trailer is checked here too, while streaming,
// before a backup can be called good.
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
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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
	enc, err := newEncoder(w, level, p)
	if err != nil {
		return Result{}, err
	}
	defer enc.abandon()
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
	// The RPC's messages go straight into the encoder. clientv3's
	// Snapshot would pass each 32 KiB chunk through an io.Pipe and a
	// goroutine first: a copy and two handoffs per chunk, measurable next to
	// the bare stream (make bench).
	stream, err := clientv3.RetryMaintenanceClient(cli, conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, clientv3.ContextError(ctx, err))
	}
	header, err := enc.pumpStream(ctx, stream)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	res, err := enc.finish()
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: etcd endpoint %s: %w", endpoint, err)
	}
	res.Revision, res.EtcdVersion = st.Header.GetRevision(), st.Version
	// Servers that fill the stream's header know the exact revision.
	if header != nil && header.Revision > 0 {
		res.Revision = header.Revision
	}
	return res, nil
}

// pumpStream writes the blob of every message of a Snapshot stream into
// the check and gzip, telling p about every progressEvery raw bytes, and
// returns the first message's header.
func (e *encoder) pumpStream(ctx context.Context, stream pb.Maintenance_SnapshotClient) (*pb.ResponseHeader, error) {
	e.started = true
	var header *pb.ResponseHeader
	next := (e.raw.n/progressEvery + 1) * progressEvery
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return header, nil
		}
		if err != nil {
			// As clientv3 would: a cancelled or expired ctx reads as itself.
			return nil, fmt.Errorf("read after %d bytes: %w", e.raw.n, clientv3.ContextError(ctx, err))
		}
		if header == nil {
			header = resp.GetHeader()
		}
		blob := resp.GetBlob()
		e.raw.Write(blob) // never fails
		if _, err := e.gz.Write(blob); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
		if e.p != nil && e.raw.n >= next {
			e.p(e.raw.n, e.gzOut.n.Load())
			next = e.raw.n + progressEvery
		}
	}
}

// encoder is what Stream and StreamFile share: it compresses a raw
// snapshot (database and sha256 trailer) into w, counting and hashing both
// sides and checking the trailer on the way, and finishes the gzip stream
// only when the trailer checked.
type encoder struct {
	gzOut    *countingHash
	gz       *pgzip.Writer
	raw      *rawCheck
	p        Progress
	started  bool // pump was called: pgzip may have written to w
	finished bool
}

func newEncoder(w io.Writer, level int, p Progress) (*encoder, error) {
	gzOut := newCountingHash(w)
	gz, err := pgzip.NewWriterLevel(gzOut, level)
	if err != nil {
		return nil, fmt.Errorf("snapshot: gzip level %d: %w", level, err)
	}
	// Compress blocks on every core while the next ones arrive from etcd:
	// gzip is the slowest stage, and one core cannot keep up with the RPC.
	// Memory stays bounded at about 2 x gzipBlocks x gzipBlock.
	if err := gz.SetConcurrency(gzipBlock, gzipBlocks()); err != nil {
		return nil, fmt.Errorf("snapshot: gzip: %w", err)
	}
	return &encoder{gzOut: gzOut, gz: gz, raw: newRawCheck(), p: p}, nil
}

// abandon, deferred by the encoder's user, leaves an unfinished gzip
// stream unfinished. On failure the stream must stay without its end (no
// trailer: nobody may take it for a backup), yet every block pgzip is
// still compressing must be written before the caller returns, or it lands
// in w after the caller has moved on. Flush waits for them and writes no
// trailer. Before the first pump nothing was written, and nothing is.
func (e *encoder) abandon() {
	if e.started && !e.finished {
		_ = e.gz.Flush()
	}
}

// pump copies raw snapshot bytes from r into the check and gzip with one
// fixed buffer, telling p about every progressEvery raw bytes.
func (e *encoder) pump(r io.Reader) error {
	e.started = true
	sink := io.MultiWriter(e.raw, e.gz)
	buf := make([]byte, bufSize)
	next := (e.raw.n/progressEvery + 1) * progressEvery
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := sink.Write(buf[:n]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if e.p != nil && e.raw.n >= next {
				e.p(e.raw.n, e.gzOut.n.Load())
				next = e.raw.n + progressEvery
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read after %d bytes: %w", e.raw.n, rerr)
		}
	}
}

// finish checks the trailer of what was pumped and only then finishes the
// gzip stream. The Result has the sizes and hashes.
func (e *encoder) finish() (Result, error) {
	if err := e.raw.verify(); err != nil {
		return Result{}, err
	}
	e.finished = true
	if err := e.gz.Close(); err != nil {
		return Result{}, fmt.Errorf("write: %w", err)
	}
	if e.p != nil {
		e.p(e.raw.n, e.gzOut.n.Load())
	}
	return Result{
		RawBytes:   e.raw.n,
		RawSHA256:  e.raw.sum(),
		GzipBytes:  e.gzOut.n.Load(),
		GzipSHA256: e.gzOut.sum(),
	}, nil
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
