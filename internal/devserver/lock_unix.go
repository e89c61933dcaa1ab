//go:build unix

package devserver

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// lockDataDir takes an exclusive lock on <dataDir>/kopsdr-dev.lock for the
// life of the process, so that two dev servers never share one database
// (the second would also wipe the first's cluster membership).
func lockDataDir(dataDir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dataDir, "kopsdr-dev.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, inputerr.New("data-dir", dataDir, "another kopsdr-worker --dev uses it: stop that one, or choose another directory with --data-dir")
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
