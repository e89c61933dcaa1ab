package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/scratchetcd"
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

// need is the scratch space a drill of src takes (scratchetcd.Need).
func (s *source) need() scratchetcd.Space {
	return scratchetcd.Space{
		Bytes: scratchetcd.Need(s.facts.RawBytes, s.objectSize),
		For:   "a drill of this backup",
		Why:   scratchetcd.NeedWhy,
	}
}

// download streams the object through verification into the scratch dir's
// snapshot file in one pass, with constant memory. ok is false when the
// backup failed verification (recorded in res); err is for everything
// that is not the backup's fault.
func download(ctx context.Context, src *source, dir *scratchetcd.Dir, opts Options, res *Result) (path string, ok bool, err error) {
	path = dir.RawSnapshotPath()
	d, err := scratchetcd.Download(ctx, src.store, src.backup, path, scratchetcd.DownloadOptions{
		RawSHA256: src.facts.RawSHA256,
		Progress:  func(n int64) { opts.Progress("download", n) },
	})
	res.DownloadedBytes = d.GzipBytes
	res.SnapshotBytes = d.Verified.RawBytes
	var bad *scratchetcd.BackupError
	switch {
	case errors.As(err, &bad):
		res.fail("verify", "%s", bad.Reason)
		return "", false, nil
	case errors.Is(err, scratchetcd.ErrScratch):
		return "", false, drillScratch(err)
	case err != nil:
		return "", false, fmt.Errorf("drill %s: %w", src.backup, err)
	}
	return path, true, nil
}
