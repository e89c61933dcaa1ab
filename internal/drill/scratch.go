package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
// when their process died: those created more than olderThan ago (by the
// marker, or by the dir's time when the marker never got written). Pass an
// olderThan longer than a drill may run, since another worker sharing
// tempDir may still be drilling; dirs of this process's running drills are
// never removed. It returns the paths it removed.
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
		created, err := createdAt(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if created.After(cutoff) {
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

func createdAt(dir string) (time.Time, error) {
	var m marker
	if data, err := os.ReadFile(filepath.Join(dir, MarkerFile)); err == nil && json.Unmarshal(data, &m) == nil && !m.Created.IsZero() {
		return m.Created, nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		return time.Time{}, err
	}
	return info.ModTime(), nil
}
