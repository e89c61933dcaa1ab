package stack

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// PrebuiltEnv names a folder that already holds kopsdr-worker and kopsdr,
// built from this checkout. test/run sets it: it runs the end-to-end tests
// as several processes, and each would otherwise link the worker (which
// embeds the Temporal server: the heaviest link of all) again.
const PrebuiltEnv = "KOPSDR_TEST_BIN"

// Binaries builds kopsdr-worker and kopsdr once per test binary (the Go build
// cache makes repeat runs cheap), or takes them from $KOPSDR_TEST_BIN, and
// returns the folder holding them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv(PrebuiltEnv); dir != "" {
			binDir, buildErr = prebuilt(dir)
			return
		}
		binDir, buildErr = os.MkdirTemp("", "kopsdr-bin-")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		for name, pkg := range map[string]string{"kopsdr-worker": "./worker", "kopsdr": "./starter"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// prebuilt checks that dir holds both binaries, so that a wrong
// KOPSDR_TEST_BIN fails once, saying so, instead of in every test.
func prebuilt(dir string) (string, error) {
	for _, name := range []string{"kopsdr-worker", "kopsdr"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s=%s: %w (build them with make build, or unset it)", PrebuiltEnv, dir, err)
		}
	}
	return filepath.Abs(dir)
}

// moduleRoot is the folder of go.mod, found from this source file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Proc is a kopsdr binary running as a child process.
type Proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// StartProc runs bin with args and env (added to the test's environment).
func StartProc(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// Kill sends SIGKILL (no graceful shutdown: this is the crash case) and waits.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pid is the process id, for reading its CPU time and memory from /proc.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitOutput waits until the output contains s.
func (p *Proc) WaitOutput(t testing.TB, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.Output(), s) {
		select {
		case <-p.done:
			t.Fatalf("process exited before printing %q:\n%s", s, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %v:\n%s", s, d, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run runs a binary to completion and returns stdout, stderr and its error.
func Run(t testing.TB, bin string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
