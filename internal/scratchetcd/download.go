package scratchetcd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

// progressEvery is how many downloaded bytes pass between Progress calls.
const progressEvery = 4 << 20

// BackupError says the backup itself is unusable: its data object is
// missing, does not verify, or is not the snapshot its kopsdr.json
// describes. Its message is the reason, in words an operator can act on.
type BackupError struct {
	Reason string
	Err    error // backupstore.ErrNotFound, the verification error, or nil
}

func (e *BackupError) Error() string { return e.Reason }
func (e *BackupError) Unwrap() error { return e.Err }

// DownloadOptions tunes Download. The zero value is fine.
type DownloadOptions struct {
	// RawSHA256, when set, is the raw snapshot's sha256 the backup recorded
	// (kopsdr.json); a snapshot that verifies but differs is a BackupError.
	RawSHA256 string
	// Progress, when set, is told the gzip bytes read so far, every few MiB
	// and at the end, from Download's goroutine.
	Progress func(gzipBytes int64)
}

// Downloaded describes a download, as far as it got.
type Downloaded struct {
	// GzipBytes were read from the store, also when Download failed.
	GzipBytes int64
	// Verified is set once the snapshot verified (RawBytes, hashes), also
	// when the BackupError is that it is not the one kopsdr.json names.
	Verified snapshot.VerifyResult
}

// Download streams <backup>/etcd.backup.gz from store through verification
// into a new file at path (the raw snapshot, trailer included, as etcd's
// restore reads it) in one pass, with constant memory. Errors are a
// *BackupError when the backup is at fault, wrap ErrScratch when writing
// path failed, and are the store's (or ctx's) otherwise. path is left
// behind on error; it lives in a scratch dir that goes as a whole.
func Download(ctx context.Context, store backupstore.Store, backup, path string, opts DownloadOptions) (Downloaded, error) {
	var d Downloaded
	report := opts.Progress
	if report == nil {
		report = func(int64) {}
	}
	object := backup + "/" + etcdmanager.DataFile
	rc, err := store.Get(ctx, object)
	if errors.Is(err, backupstore.ErrNotFound) {
		return d, &BackupError{Reason: "missing " + object, Err: err}
	}
	if err != nil {
		return d, err
	}
	defer rc.Close()

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return d, scratchErr("%v", err)
	}
	defer f.Close()
	out := &fileSink{w: bufio.NewWriterSize(f, 1<<20)}
	in := &progressReader{ctx: ctx, r: rc, report: report}

	v, verr := snapshot.VerifyGzipTo(in, out)
	d.GzipBytes = in.n
	switch {
	case out.err != nil: // our disk, not the backup
		return d, scratchErr("writing %s: %v", path, out.err)
	case in.err != nil: // the store or ctx, not the backup
		return d, fmt.Errorf("reading %s: %w", etcdmanager.DataFile, in.err)
	case verr != nil:
		return d, &BackupError{
			Reason: fmt.Sprintf("%s does not verify: %s", object, strings.TrimPrefix(verr.Error(), "verify: ")),
			Err:    verr,
		}
	}
	if err := out.w.Flush(); err != nil {
		return d, scratchErr("writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		return d, scratchErr("writing %s: %v", path, err)
	}
	d.Verified = v
	report(in.n)
	if want := opts.RawSHA256; want != "" && want != v.RawSHA256 {
		return d, &BackupError{Reason: fmt.Sprintf("snapshot sha256 %s, kopsdr.json says %s", v.RawSHA256, want)}
	}
	return d, nil
}

// fileSink remembers the first write error so a full disk is not blamed on
// the backup.
type fileSink struct {
	w   *bufio.Writer
	err error
}

func (s *fileSink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// progressReader counts, reports every progressEvery bytes, stops on ctx,
// and remembers read errors so they are not blamed on the backup. A
// truncated object is a clean EOF here and fails in verification.
type progressReader struct {
	ctx    context.Context
	r      io.Reader
	report func(int64)
	n      int64
	next   int64
	err    error
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		p.err = err
		return 0, err
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n >= p.next {
		p.report(p.n)
		p.next = p.n + progressEvery
	}
	if err != nil && !errors.Is(err, io.EOF) && p.err == nil {
		p.err = err
	}
	return n, err
}
