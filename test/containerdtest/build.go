package containerdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	builtMu sync.Mutex
	built   = map[string]string{} // package -> binary, per test binary
)

// BuildStatic builds the main package pkg (a path relative to the module
// root, e.g. ./internal/restart/testdata/sleeper) once per test binary,
// static (CGO_ENABLED=0) so that it runs in a FROM-scratch image, and
// returns the binary's path. It lives in a temp folder until RemoveBuilt
// (call that from TestMain).
func BuildStatic(t testing.TB, pkg string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "kopsdr-ctrd-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("containerdtest: go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// RemoveBuilt removes what BuildStatic built; call it from TestMain.
func RemoveBuilt() {
	builtMu.Lock()
	defer builtMu.Unlock()
	for pkg, bin := range built {
		os.RemoveAll(filepath.Dir(bin))
		delete(built, pkg)
	}
}

// moduleRoot is the folder of go.mod, found from this source file.
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("containerdtest: no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}
