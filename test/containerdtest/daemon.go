// Package containerdtest runs a real containerd daemon for tests, the way a
// kops master (Kubernetes 1.24 and later) runs its containers: the
// kubelet creates them through containerd's CRI plugin in namespace
// k8s.io, labelled with their pod and container names. This package has
// no kubelet and no CRI plugin; its Kubelet creates such containers
// directly through containerd's API, with the same labels and CRI
// metadata, and replaces a container whose task died with a new one
// (attempt+1), as the real kubelet does. See kubelet.go.
//
// Each Daemon is its own /usr/bin/containerd with its own root, state and
// sockets under a short folder in /tmp (unix socket paths must stay below
// 108 bytes). It uses the native snapshotter, which needs nothing from the
// file system it runs on. Containers share the host's network namespace,
// so what they serve on 127.0.0.1 is reachable from the test.
package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Namespace is the containerd namespace of the kubelet's containers.
const Namespace = "k8s.io"

// Snapshotter is the snapshotter every container uses: native copies the
// image into a plain directory, which works on any file system.
const Snapshotter = "native"

// Binaries the daemon needs.
const (
	containerdBin = "/usr/bin/containerd"
	runcBin       = "runc"
	shimBin       = "containerd-shim-runc-v2"
)

// Daemon is one running containerd.
type Daemon struct {
	// Dir holds root, state, config, sockets and log; removed at cleanup.
	Dir string
	// Socket is the daemon's gRPC socket (no unix:// prefix).
	Socket string
	// Log is the daemon's log file.
	Log string

	id   string // short, unique: names this daemon's cgroups
	cmd  *exec.Cmd
	conn *grpc.ClientConn
	exit chan error
}

// Start runs a containerd daemon for t and stops it, with everything it
// ran, when t ends. Without containerd, runc and the runc shim the test is
// skipped (failed under KOPSDR_REQUIRE_ALL=1); so is it when not root,
// as containerd needs root.
func Start(t testing.TB) *Daemon {
	t.Helper()
	for _, bin := range []string{containerdBin, runcBin, shimBin} {
		if _, err := exec.LookPath(bin); err != nil {
			skipOrFail(t, "containerdtest: %s not found: %v", bin, err)
		}
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "containerdtest: containerd needs root")
	}
	dir, err := os.MkdirTemp("/tmp", "kct-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "c.sock"), Log: filepath.Join(dir, "containerd.log"), id: filepath.Base(dir)[len("kct-"):]}
	t.Cleanup(func() { d.cleanup(t) })
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(d.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(containerdBin, "--config", filepath.Join(dir, "config.toml"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Should the test binary die without cleaning up (a test timeout
	// panics), containerd dies with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("containerdtest: start containerd: %v", err)
	}
	d.exit = make(chan error, 1)
	go func() { d.exit <- d.cmd.Wait() }()
	if err := d.waitReady(30 * time.Second); err != nil {
		t.Fatalf("containerdtest: %v\n%s", err, d.logTail())
	}
	return d
}

// config is a version 2 config with only what the tests use: no CRI
// plugin (the Kubelet stands in for it), no other snapshotters, no
// metrics or debug sockets.
func (d *Daemon) config() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"), d.Socket, d.Socket+".ttrpc")
}

// waitReady waits until the daemon answers on its socket.
func (d *Daemon) waitReady(timeout time.Duration) error {
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return err
	}
	d.conn = conn
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.Namespaces().List(ctx, &namespacesapi.ListNamespacesRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-d.exit:
			d.exit <- werr
			return fmt.Errorf("containerd exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd does not answer on %s after %s: %v", d.Socket, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Conn is a gRPC connection to the daemon, kept until cleanup.
func (d *Daemon) Conn() *grpc.ClientConn { return d.conn }

// NS returns ctx for calls in namespace k8s.io: containerd reads the
// namespace from the gRPC metadata "containerd-namespace".
func NS(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", Namespace)
}

// logTail is the end of the daemon's log, for failure messages.
func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// skipOrFail skips t, or fails it under KOPSDR_REQUIRE_ALL=1, where every
// test must run. (test/stack has the same; importing it would build the
// Temporal server into every test binary using this package.)
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("KOPSDR_REQUIRE_ALL") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
