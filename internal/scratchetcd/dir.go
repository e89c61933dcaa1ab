// Package scratchetcd runs throwaway etcd servers on backups: a scratch dir
// that a crashed process's successor can recognise and clean up, the
// verified download of a backup's etcd.backup.gz into a raw snapshot file,
// a check that the disk can hold it, and etcd's own restore of that file
// into a single-member embedded etcd on loopback with a client of it.
//
// Restore drills (internal/drill) read such a server back; point-in-time
// restores (internal/replay) write captured changes into one and snapshot
// the result. Nothing here ever touches the cluster a backup came from.
package scratchetcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MarkerFile in a scratch dir says who made it and when (JSON: pid, host, created).
const MarkerFile = "owner.json"

// ErrScratch marks trouble with the scratch dir or its disk (no space, no
// permission): the worker's problem, never the backup's, and one retrying
// on the same worker will not mend. Errors wrapping it read
// "scratch space: ...".
var ErrScratch = errors.New("scratch space")

// scratchErr wraps err, whose text is kept, as ErrScratch.
func scratchErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrScratch, fmt.Sprintf(format, args...))
}

// marker is the content of MarkerFile: for CleanStale's age test, and for
// a human wondering what the dir is.
type marker struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"`
}

// active are the scratch dirs of this process, which CleanStale never
// removes, however old.
var active sync.Map

// Dir is one scratch dir. It holds the raw snapshot (RawSnapshotPath) and
// etcd's data dir (DataDir); Remove deletes it all.
type Dir struct {
	// Path is the dir itself, <tempDir>/<prefix><random>.
	Path string
}

// NewDir makes a scratch dir in tempDir whose name starts with prefix, and
// writes its marker. Errors wrap ErrScratch.
func NewDir(tempDir, prefix string) (*Dir, error) {
	path, err := os.MkdirTemp(tempDir, prefix)
	if err != nil {
		return nil, scratchErr("%v", err)
	}
	active.Store(path, true)
	d := &Dir{Path: path}
	host, _ := os.Hostname()
	data, _ := json.Marshal(marker{PID: os.Getpid(), Host: host, Created: time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(path, MarkerFile), data, 0o600); err != nil {
		d.Remove()
		return nil, scratchErr("%v", err)
	}
	return d, nil
}

// Remove deletes the dir and everything in it. Stop a Server running on
// it first.
func (d *Dir) Remove() {
	_ = os.RemoveAll(d.Path)
	active.Delete(d.Path)
}

// RawSnapshotPath is where Download puts the raw snapshot.
func (d *Dir) RawSnapshotPath() string { return filepath.Join(d.Path, "snapshot.db") }

// DataDir is etcd's data dir, which Restore creates.
func (d *Dir) DataDir() string { return filepath.Join(d.Path, "data") }

// token is the etcd cluster token: unique, so that nothing stray mistakes
// this cluster for another.
func (d *Dir) token() string { return filepath.Base(d.Path) }

// CleanStale removes the scratch dirs in tempDir whose names start with
// prefix and that their process left behind when it died: at once those
// whose marker names a process of this host that is gone (or this
// process's id, reused after a restart in a container, for a dir this
// process does not use), else those created more than olderThan ago (by
// the marker, or by the dir's time when the marker never got written).
// Pass an olderThan longer than a user of the dir may run, since another
// worker sharing tempDir may still be using its own; dirs this process
// uses are never removed. It returns the paths it removed.
func CleanStale(tempDir, prefix string, olderThan time.Duration) ([]string, error) {
	entries, err := os.ReadDir(tempDir)
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		path := filepath.Join(tempDir, e.Name())
		if _, busy := active.Load(path); busy {
			continue
		}
		m, err := readMarker(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Created.After(cutoff) && !m.orphaned() {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}

// readMarker reads dir's marker; without one (the process died before
// writing it) Created is the dir's time and PID 0.
func readMarker(dir string) (marker, error) {
	var m marker
	if data, err := os.ReadFile(filepath.Join(dir, MarkerFile)); err == nil && json.Unmarshal(data, &m) == nil && !m.Created.IsZero() {
		return m, nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		return marker{}, err
	}
	return marker{Created: info.ModTime()}, nil
}

// orphaned says the process that made the dir is gone: it ran on this
// host, and its PID is ours (the caller checked the dir is not in use
// here) or names no process.
func (m marker) orphaned() bool {
	host, _ := os.Hostname()
	if m.PID <= 0 || m.Host != host {
		return false
	}
	if m.PID == os.Getpid() {
		return true
	}
	return errors.Is(syscall.Kill(m.PID, 0), syscall.ESRCH)
}
