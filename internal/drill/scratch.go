package drill

import (
	"errors"
	"fmt"
	"time"

	"github.com/kopsdr/kopsdr/internal/scratchetcd"
)

const (
	// ScratchPrefix starts the name of every scratch dir a drill makes.
	ScratchPrefix = "kopsdr-drill-"
	// MarkerFile in a scratch dir says who made it and when (JSON: pid, host, created).
	MarkerFile = scratchetcd.MarkerFile
)

// CleanStale removes the scratch dirs in tempDir that drills left behind
// when their process died: at once those whose marker names a process of
// this host that is gone (or this process's id, reused after a restart in
// a container, for a dir this process does not use), else those created
// more than olderThan ago (by the marker, or by the dir's time when the
// marker never got written). Pass an olderThan longer than a drill may
// run, since another worker sharing tempDir may still be drilling; dirs of
// this process's running drills are never removed. It returns the paths it
// removed. See scratchetcd.CleanStale.
func CleanStale(tempDir string, olderThan time.Duration) ([]string, error) {
	return scratchetcd.CleanStale(tempDir, ScratchPrefix, olderThan)
}

// drillScratch names the drill in a scratch error from scratchetcd
// ("drill scratch space: ..."), leaving other errors alone.
func drillScratch(err error) error {
	if errors.Is(err, scratchetcd.ErrScratch) {
		return fmt.Errorf("drill %w", err)
	}
	return err
}
