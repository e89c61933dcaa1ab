package etcdmanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// Why this exists. A backup writes its data first and its meta last, and a
// failed backup removes what it wrote. A backup that never got to fail (its
// workflow terminated, its worker gone for good) leaves a folder with no
// meta: no tool lists it, so no retention ever removes it, and at a fleet's
// scale those folders are whole snapshots paid for forever.

// AbandonedAfter is how long a folder without a meta stays untouched before
// kopsdr considers removing it. A backup writes its folder within minutes;
// a day leaves room for one whose worker was down for hours, and kopsdr
// still asks Temporal whether the run that reserved the folder has ended.
const AbandonedAfter = 24 * time.Hour

// Incomplete is a folder at the store's root named like a backup that holds
// no meta: a backup being taken, or one that was left half-way.
type Incomplete struct {
	Name   string
	Newest time.Time // the newest object's modification time
}

// ListIncomplete returns the folders at the store's root whose names parse
// as backup names, that hold no meta, and whose newest object was written
// before cutoff, sorted by name.
func ListIncomplete(ctx context.Context, s backupstore.Store, cutoff time.Time) ([]Incomplete, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing backups in %s: %w", s.URL(), err)
	}
	folders := map[string]*Incomplete{}
	hasMeta := map[string]bool{}
	for _, o := range objs {
		name, rest, ok := strings.Cut(o.Key, "/")
		if !ok || rest == "" {
			continue
		}
		if _, _, ok := ParseBackupName(name); !ok {
			continue // the control folder, or something kopsdr did not name
		}
		if rest == MetaFile {
			hasMeta[name] = true
		}
		f := folders[name]
		if f == nil {
			f = &Incomplete{Name: name}
			folders[name] = f
		}
		if o.ModTime.After(f.Newest) {
			f.Newest = o.ModTime
		}
	}
	var out []Incomplete
	for name, f := range folders {
		if !hasMeta[name] && f.Newest.Before(cutoff) {
			out = append(out, *f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveIncomplete removes everything in the folder name, unless it holds
// a meta (then it is a backup after all, and nothing is removed): first what
// interrupted uploads left, then every object listed after that, so an
// upload that completed meanwhile goes too. It returns how many objects it
// removed and whether the folder had no meta.
func RemoveIncomplete(ctx context.Context, s backupstore.Store, name string) (int, bool, error) {
	if _, err := s.Stat(ctx, name+"/"+MetaFile); err == nil {
		return 0, false, nil
	} else if !errors.Is(err, backupstore.ErrNotFound) {
		return 0, false, err
	}
	if _, err := s.AbortIncompleteUploads(ctx, name+"/"); err != nil {
		return 0, true, err
	}
	objs, err := s.List(ctx, name+"/")
	if err != nil {
		return 0, true, err
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	return len(keys), true, s.Delete(ctx, keys...)
}
