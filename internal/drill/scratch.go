package drill

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

const (
	// ScratchPrefix starts the name of every scratch dir a drill makes.
	ScratchPrefix = "kopsdr-drill-"
	// MarkerFile in a scratch dir says who made it and when (JSON: pid, host, created).
	MarkerFile = "owner.json"
)

// marker is the content of MarkerFile: for CleanStale's age test, and for
// a human wondering what the dir is.
type marker struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"`
}

// active are the scratch dirs drills of this process are using, which
// CleanStale never removes, however old.
var active sync.Map

type scratch struct{ path string }

func newScratch(tempDir string) (*scratch, error) {
	path, err := os.MkdirTemp(tempDir, ScratchPrefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errScratch, err)
	}
	active.Store(path, true)
	host, _ := os.Hostname()
	data, _ := json.Marshal(marker{PID: os.Getpid(), Host: host, Created: time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(path, MarkerFile), data, 0o600); err != nil {
		(&scratch{path}).remove()
		return nil, fmt.Errorf("%w: %v", errScratch, err)
	}
	return &scratch{path: path}, nil
}

func (s *scratch) remove() {
	_ = os.RemoveAll(s.path)
	active.Delete(s.path)
}

// CleanStale removes the scratch dirs in tempDir that drills left behind
// when their process died: at once those whose marker names a process of
// this host that is gone (or this process's id, reused after a restart in
// a container, for a dir this process does not use), else those created
// more than olderThan ago (by the marker, or by the dir's time when the
// marker never got written). Pass an olderThan longer than a drill may
// run, since another worker sharing tempDir may still be drilling; dirs of
// this process's running drills are never removed. It returns the paths it
// removed.
func CleanStale(tempDir string, olderThan time.Duration) ([]string, error) {
	entries, err := os.ReadDir(tempDir)
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ScratchPrefix) {
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
