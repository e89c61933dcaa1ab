package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// runner lets the test harness (test/masters, test/stack), which takes a
// testing.TB, run in a plain program. It embeds a nil testing.TB only to
// satisfy the interface's private method; every method the harness calls
// is implemented here, and calling any other panics.
//
// Fatal and Skip print, run the cleanups and exit; Cleanup functions run
// in reverse order at exit, on Ctrl-C or SIGTERM too (see main); TempDir
// makes folders under the --dir folder.
type runner struct {
	testing.TB

	dir string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	skipped  bool
}

func (r *runner) Name() string { return "devmasters" }
func (r *runner) Helper()      {}

func (r *runner) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (r *runner) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (r *runner) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Error(args ...any)                 { r.Log(args...); r.Fail() }
func (r *runner) Errorf(format string, args ...any) { r.Logf(format, args...); r.Fail() }

// FailNow runs the cleanups and exits 1. Outside the main goroutine too:
// unlike in a test, there is nothing else to carry on with.
func (r *runner) FailNow() {
	r.Fail()
	r.exit(1)
}

func (r *runner) Fatal(args ...any)                 { r.Log(args...); r.FailNow() }
func (r *runner) Fatalf(format string, args ...any) { r.Logf(format, args...); r.FailNow() }

// Skip: the harness skips when a tool is missing (no Docker engine); here
// that is the end.
func (r *runner) SkipNow() {
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
	r.exit(1)
}

func (r *runner) Skip(args ...any)                 { r.Log(args...); r.SkipNow() }
func (r *runner) Skipf(format string, args ...any) { r.Logf(format, args...); r.SkipNow() }

func (r *runner) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// TempDir makes a new folder under r.dir, removed by the cleanups.
func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp(r.dir, "run-")
	if err != nil {
		r.Fatalf("devmasters: %v", err)
	}
	r.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.Logf("devmasters: remove %s: %v", dir, err)
		}
	})
	return dir
}

// runCleanups runs the registered functions, last first. Each is taken off
// the list before it runs, so a cleanup that fails (or a second caller)
// never runs one twice.
func (r *runner) runCleanups() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		f()
	}
}

// exit runs the cleanups and ends the program.
func (r *runner) exit(code int) {
	r.runCleanups()
	os.Exit(code)
}
