package drill

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kopsdr/kopsdr/internal/scratchetcd"
)

// memberName names the scratch etcd's only member.
const memberName = "drill"

func etcdOptions(opts Options) scratchetcd.Options {
	return scratchetcd.Options{MemberName: memberName, Logger: opts.Logger}
}

// restoreAndStart restores snap into a data dir the way etcd-manager does
// (etcdutl, hash check on) and serves it. A nil server with a nil error
// means the backup failed to restore or start, recorded in res.
func restoreAndStart(ctx context.Context, snap string, dir *scratchetcd.Dir, opts Options, res *Result) (*scratchetcd.Server, error) {
	begin := time.Now()
	err := dir.Restore(snap, etcdOptions(opts))
	res.Timings.RestoreSeconds = time.Since(begin).Seconds()
	if err != nil {
		res.fail("restore", "etcd restore: %v", err)
		return nil, nil
	}
	// The data dir has its own copy; the raw file only costs space now.
	if err := os.Remove(snap); err != nil {
		return nil, fmt.Errorf("drill %w: %v", scratchetcd.ErrScratch, err)
	}
	opts.Progress("start", 0)

	begin = time.Now()
	srv, err := dir.Start(ctx, etcdOptions(opts))
	res.Timings.StartSeconds = time.Since(begin).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.fail("start", "etcd on the restored data: %v", err)
		return nil, nil
	}
	return srv, nil
}
