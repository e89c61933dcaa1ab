// Package activities holds kopsdr's Temporal activities. Every activity is
// safe to run twice: it checks before it acts, names what it creates
// deterministically, and turns bad input into non-retryable errors that name
// the field, the value and the fix.
package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Error types that workflows and retry policies recognise.
const (
	ErrTypeInvalidInput    = inputerr.Type
	ErrTypeAccessDenied    = api.ErrTypeAccessDenied
	ErrTypeCorruptBackup   = api.ErrTypeCorruptBackup
	ErrTypeBackupNameTaken = api.ErrTypeBackupNameTaken
	ErrTypeEtcdUnreachable = api.ErrTypeEtcdUnreachable
)

// nonRetryable turns bad input into an error Temporal will not retry.
func nonRetryable(err error) error {
	if ie, ok := inputerr.As(err); ok {
		return temporal.NewNonRetryableApplicationError(ie.Error(), ErrTypeInvalidInput, err,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	}
	return err
}

func openStore(ctx context.Context, url string) (backupstore.Store, error) {
	s, err := backupstore.Open(ctx, url, backupstore.Options{})
	if err != nil {
		return nil, storeErr(url, err)
	}
	return s, nil
}

// storeErr classifies store errors: bad input and denied access are final,
// everything else (network, 5xx) is retried by Temporal.
func storeErr(url string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := inputerr.As(err); ok {
		return nonRetryable(err)
	}
	if errors.Is(err, backupstore.ErrAccessDenied) {
		ie := inputerr.Wrap(err, "backupStore", url,
			"give the worker's credentials s3:GetObject, s3:PutObject, s3:ListBucket, s3:DeleteObject and s3:AbortMultipartUpload on this bucket and prefix")
		return temporal.NewNonRetryableApplicationError(ie.Error(), ErrTypeAccessDenied, err,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	}
	return err
}

// etcdErr names the endpoints in every etcd failure; bad TLS files are final.
func etcdErr(c etcdconn.Config, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := inputerr.As(err); ok {
		return nonRetryable(err)
	}
	if etcdconn.Unreachable(err) {
		return temporal.NewApplicationErrorWithCause(
			fmt.Sprintf("etcd at %v is unreachable: %v", c.Endpoints, err), ErrTypeEtcdUnreachable, err)
	}
	return fmt.Errorf("etcd at %v: %w", c.Endpoints, err)
}

// healthyEndpoint returns the first endpoint that answers a Status call, so
// the snapshot is taken from a member that is up (like etcdctl, one member).
func healthyEndpoint(ctx context.Context, cli *clientv3.Client, endpoints []string) (string, error) {
	var last error
	for _, ep := range endpoints {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Status(sctx, ep)
		cancel()
		if err == nil {
			return ep, nil
		}
		last = fmt.Errorf("%s: %w", ep, err)
	}
	return "", temporal.NewApplicationErrorWithCause(
		fmt.Sprintf("no etcd endpoint answers (%v): %v", endpoints, last), ErrTypeEtcdUnreachable, last)
}

// scratchRoot is the folder an activity's scratch dirs go in: the worker's
// setting, else the temp dir (TMPDIR).
func scratchRoot(dir string) string {
	if dir != "" {
		return dir
	}
	return os.TempDir()
}

// progressCounter is updated from the data path and read by the heartbeat.
type progressCounter struct{ raw, gz, total atomic.Int64 }

func (p *progressCounter) store(raw, gz int64) { p.raw.Store(raw); p.gz.Store(gz) }
func (p *progressCounter) load() UploadProgress {
	return UploadProgress{RawBytes: p.raw.Load(), GzipBytes: p.gz.Load(), TotalBytes: p.total.Load()}
}

// heartbeatEvery heartbeats detail() every interval until stop is called,
// for an activity's whole life, so a killed worker is noticed within the
// heartbeat timeout even while the activity waits on something else. It
// does not beat at once: most calls are over before the first beat is due.
// Outside an activity (plain Go callers, benchmarks) it does nothing.
func heartbeatEvery(ctx context.Context, every time.Duration, detail func() any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, detail())
			}
		}
	}()
	return func() { close(done) }
}

// progress is an activity's heartbeat detail: the activity's body sets it
// as it goes and the heartbeat goroutine reads it, so it is guarded. A
// plain variable captured by the detail func would be a data race.
type progress struct {
	mu sync.Mutex
	v  any
}

func newProgress(v any) *progress { return &progress{v: v} }

// set replaces the detail.
func (p *progress) set(v any) { p.mu.Lock(); p.v = v; p.mu.Unlock() }

// setf sets a formatted detail.
func (p *progress) setf(format string, args ...any) { p.set(fmt.Sprintf(format, args...)) }

// get is the detail now; it is the func heartbeatEvery calls.
func (p *progress) get() any { p.mu.Lock(); defer p.mu.Unlock(); return p.v }

// heartbeatProgress heartbeats p every interval until stop is called.
func heartbeatProgress(ctx context.Context, every time.Duration, p *progress) (stop func()) {
	return heartbeatEvery(ctx, every, p.get)
}

// heartbeatReader heartbeats as a long read (verification) makes progress.
type heartbeatReader struct {
	ctx  context.Context
	r    io.Reader
	n    int64
	last time.Time
}

func (h *heartbeatReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	if activity.IsActivity(h.ctx) && time.Since(h.last) > 5*time.Second {
		activity.RecordHeartbeat(h.ctx, h.n)
		h.last = time.Now()
	}
	return n, err
}

// countingProgress tells report the bytes read so far, every
// progressStep of them, for a heartbeat that runs on its own ticker.
type countingProgress struct {
	r      io.Reader
	report func(n int64)
	n      int64
	next   int64
}

const progressStep = 4 << 20

func (c *countingProgress) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.next || err != nil {
		c.report(c.n)
		c.next = c.n + progressStep
	}
	return n, err
}

// logger is the activity's logger, or slog's default outside an activity
// (plain Go callers and tests call activities as functions too).
func logger(ctx context.Context) log.Logger {
	if !activity.IsActivity(ctx) {
		return slog.Default()
	}
	return activity.GetLogger(ctx)
}
