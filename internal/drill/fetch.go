package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

const (
	// gzipFactor guesses the raw size from the object when kopsdr.json
	// does not say: etcd snapshots compress 4-8x typically, more when the
	// database has many free pages, so 10x rather over- than underestimates.
	gzipFactor = 10
	// walReserve is what etcd preallocates for its first WAL segment.
	walReserve = 64 << 20
	// progressEvery is how many downloaded bytes pass between Progress calls.
	progressEvery = 4 << 20
)

// source is one backup as the store holds it.
type source struct {
	store      backupstore.Store
	backup     string
	meta       etcdmanager.BackupInfo
	objectSize int64
	facts      facts // zero when the backup has no kopsdr.json (etcd-manager's own)
}

// facts are the fields of kopsdr.json the drill uses. The full type lives
// with the backup activity, which will import this package.
type facts struct {
	RawBytes  int64     `json:"rawBytes"`
	RawSHA256 string    `json:"rawSha256"`
	Counts    *Recorded `json:"counts,omitempty"` // absent before kopsdr recorded counts
}

// openBackup reads what the drill needs to know before downloading: the
// meta (no meta, no backup) and the sizes.
func openBackup(ctx context.Context, store backupstore.Store, backup string) (*source, error) {
	meta, err := etcdmanager.ReadBackupInfo(ctx, store, backup)
	if err != nil {
		return nil, fmt.Errorf("drill %s: %w", backup, err)
	}
	src := &source{store: store, backup: backup, meta: meta}
	info, err := store.Stat(ctx, backup+"/"+etcdmanager.DataFile)
	switch {
	case errors.Is(err, backupstore.ErrNotFound):
		// Left for download to report as a failed check: the backup is listed
		// but cannot be restored.
	case err != nil:
		return nil, fmt.Errorf("drill %s: %w", backup, err)
	default:
		src.objectSize = info.Size
	}
	if data, err := etcdmanager.ReadSmall(ctx, store, backup+"/"+etcdmanager.KopsdrFile); err == nil {
		_ = json.Unmarshal(data, &src.facts) // unreadable facts only cost the better size estimate
	} else if !errors.Is(err, backupstore.ErrNotFound) {
		return nil, fmt.Errorf("drill %s: %w", backup, err)
	}
	return src, nil
}

// need is the scratch space a drill of src takes: the raw snapshot, etcd's
// copy of it in the data dir (the restore copies, it does not move), and a
// WAL segment, plus 10% for bolt's growth when etcd opens it.
func (s *source) need() uint64 {
	raw := s.facts.RawBytes
	if raw <= 0 {
		raw = s.objectSize * gzipFactor
	}
	return uint64(float64(2*raw)*1.1) + walReserve
}

// checkSpace refuses to start a drill that would fill the disk: a full
// disk hurts the worker's other work, and the drill would fail anyway.
func checkSpace(opts Options, need uint64) error {
	if err := os.MkdirAll(opts.TempDir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", errScratch, err)
	}
	free, err := opts.FreeSpace(opts.TempDir)
	if err != nil {
		return fmt.Errorf("%w: free space of %s: %v", errScratch, opts.TempDir, err)
	}
	if free < need {
		return fmt.Errorf("%w: %s has %d MiB free, a drill of this backup needs %d MiB (twice the snapshot plus a WAL segment); free some or set a larger temp dir",
			errScratch, opts.TempDir, free>>20, need>>20)
	}
	return nil
}

func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// download streams the object through verification into the scratch dir's
// snapshot file in one pass, with constant memory. ok is false when the
// backup failed verification (recorded in res); err is for everything
// that is not the backup's fault.
func download(ctx context.Context, src *source, dir *scratch, opts Options, res *Result) (path string, ok bool, err error) {
	rc, err := src.store.Get(ctx, src.backup+"/"+etcdmanager.DataFile)
	if errors.Is(err, backupstore.ErrNotFound) {
		res.fail("verify", "missing %s/%s", src.backup, etcdmanager.DataFile)
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("drill %s: %w", src.backup, err)
	}
	defer rc.Close()

	path = filepath.Join(dir.path, "snapshot.db")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", errScratch, err)
	}
	defer f.Close()
	out := &fileSink{w: bufio.NewWriterSize(f, 1<<20)}
	in := &progressReader{ctx: ctx, r: rc, report: func(n int64) { opts.Progress("download", n) }}

	v, verr := snapshot.VerifyGzipTo(in, out)
	res.DownloadedBytes = in.n
	switch {
	case out.err != nil: // our disk, not the backup
		return "", false, fmt.Errorf("%w: writing %s: %v", errScratch, path, out.err)
	case in.err != nil: // the store or ctx, not the backup
		return "", false, fmt.Errorf("drill %s: reading %s: %w", src.backup, etcdmanager.DataFile, in.err)
	case verr != nil:
		res.fail("verify", "%s/%s does not verify: %s", src.backup, etcdmanager.DataFile,
			strings.TrimPrefix(verr.Error(), "verify: "))
		return "", false, nil
	}
	if err := out.w.Flush(); err != nil {
		return "", false, fmt.Errorf("%w: writing %s: %v", errScratch, path, err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("%w: writing %s: %v", errScratch, path, err)
	}
	res.SnapshotBytes = v.RawBytes
	opts.Progress("download", in.n)
	if want := src.facts.RawSHA256; want != "" && want != v.RawSHA256 {
		res.fail("verify", "snapshot sha256 %s, kopsdr.json says %s", v.RawSHA256, want)
		return "", false, nil
	}
	return path, true, nil
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
