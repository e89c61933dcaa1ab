package sshdial_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kopsdr/kopsdr/internal/sshdial"
	"github.com/kopsdr/kopsdr/test/sshtest"
)

func sudoConfig(s *sshtest.Server, sudo bool) sshdial.Config {
	c := config(s)
	c.Sudo = &sudo
	return c
}

func TestUsesSudo(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		c    sshdial.Config
		want bool
	}{
		{sshdial.Config{}, true}, // ubuntu, kops's default
		{sshdial.Config{User: "admin"}, true},
		{sshdial.Config{User: "root"}, false},
		{sshdial.Config{User: "root", Sudo: &yes}, true},
		{sshdial.Config{User: "ubuntu", Sudo: &no}, false},
	} {
		if got := tc.c.UsesSudo(); got != tc.want {
			t.Errorf("%+v: UsesSudo %v; want %v", tc.c, got, tc.want)
		}
	}
}

// The relay carries gRPC as sshd's forwarding does (root needs no sudoers
// rule for sudo -n).
func TestRelayGRPC(t *testing.T) {
	sshtest.RequireSudo(t)
	s := sshtest.Start(t, sshtest.Options{})
	sock := filepath.Join(sshtest.SocketDir(t), "grpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	cc, err := grpc.NewClient("passthrough:///containerd",
		grpc.WithContextDialer(sshdial.SocketDialer(sudoConfig(s, true), sock)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check through the relay: %v, %v\n%s", resp, err, s.LogTail(10))
	}
}

// 8 MiB each way arrive intact; CloseWrite reaches the socket as EOF, and
// the socket's close reaches the client as a clean EOF.
func TestRelayLargeTransferAndHalfClose(t *testing.T) {
	sshtest.RequireSudo(t)
	s := sshtest.Start(t, sshtest.Options{})
	conn, err := dial(t, s, sudoConfig(s, true)).DialUnix(context.Background(), sshtest.EchoSocket(t))
	if err != nil {
		t.Fatalf("DialUnix: %v\n%s", err, s.LogTail(10))
	}
	defer conn.Close()
	if ra := conn.RemoteAddr().String(); filepath.Base(ra) != "echo.sock" {
		t.Errorf("RemoteAddr %q; want the socket path", ra)
	}

	sent := make([]byte, 8<<20)
	_, _ = rand.Read(sent)
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write(sent)
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		wrote <- err
	}()
	got, err := io.ReadAll(conn) // ends at the echo server's close
	if err != nil {
		t.Fatalf("read: %v after %d bytes", err, len(got))
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("got %d bytes back, differing from the %d sent", len(got), len(sent))
	}
	if err := conn.SetDeadline(time.Now()); err == nil {
		t.Error("SetDeadline succeeded; want unsupported, as on sshd's conns")
	}
}

// Close ends the relay: the socket's server sees EOF, and the conn is
// unusable.
func TestRelayClose(t *testing.T) {
	sshtest.RequireSudo(t)
	s := sshtest.Start(t, sshtest.Options{})
	sock := filepath.Join(sshtest.SocketDir(t), "eof.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sawEOF := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			sawEOF <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(io.Discard, c)
		sawEOF <- err
	}()

	conn, err := dial(t, s, sudoConfig(s, true)).DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatalf("DialUnix: %v\n%s", err, s.LogTail(10))
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-sawEOF:
		if err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the socket's server saw no EOF 10s after Close")
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

// The path reaches the relay as one argument, whatever it holds.
func TestRelayMissingSocket(t *testing.T) {
	sshtest.RequireSudo(t)
	s := sshtest.Start(t, sshtest.Options{})
	path := filepath.Join(s.Dir, `it's $(touch pwned) "a".sock`)
	_, err := dial(t, s, sudoConfig(s, true)).DialUnix(context.Background(), path)
	var e *sshdial.SocketError
	if !errors.As(err, &e) || !e.Sudo || e.Problem != "" || sshdial.Retryable(err) {
		t.Fatalf("got %v; want a non-retryable *SocketError from the relay", err)
	}
	t.Logf("operator sees: %v", err)
	wantIn(t, err.Error(), path, "No such file or directory", "exit status 3", "systemctl status containerd")
	if home, _ := os.UserHomeDir(); home != "" {
		if _, err := os.Stat(filepath.Join(home, "pwned")); err == nil {
			t.Error("the shell ran the command substitution in the path")
		}
	}
}

// A user other than root, with the socket root's alone as on kops's
// masters: sshd's forwarding fails, sudo without a rule wants a password,
// and with kops's NOPASSWD rule the relay works.
func TestRelayNonRootUser(t *testing.T) {
	sshtest.RequireSudo(t)
	key := sshtest.NewKey(t)
	u := sshtest.NewUser(t, key)
	s := sshtest.Start(t, sshtest.Options{UserKey: key, Config: u.SSHDConfig()})
	sock := sshtest.EchoSocket(t)
	for p, mode := range map[string]os.FileMode{filepath.Dir(sock): 0o755, sock: 0o600} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	c := config(s)
	c.User = u.Name

	direct := c
	direct.Sudo = new(bool)
	_, err := dial(t, s, direct).DialUnix(context.Background(), sock)
	var e *sshdial.SocketError
	if !errors.As(err, &e) || e.Sudo {
		t.Fatalf("forwarding a root-only socket as %s: %v; want sshd's *SocketError", u.Name, err)
	}
	t.Logf("without sudo, operator sees: %v", err)

	if !c.UsesSudo() {
		t.Fatal("sudo must be the default for a user other than root")
	}
	_, err = dial(t, s, c).DialUnix(context.Background(), sock)
	if !errors.As(err, &e) || e.Problem != sshdial.ProblemSudoPassword || sshdial.Retryable(err) {
		t.Fatalf("sudo without a rule: %v; want a non-retryable *SocketError with Problem %q", err, sshdial.ProblemSudoPassword)
	}
	t.Logf("without a sudoers rule, operator sees: %v", err)
	wantIn(t, err.Error(), "a password is required", "NOPASSWD", "ssh.user")

	u.AllowSudo(t)
	conn, err := dial(t, s, c).DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatalf("sudo with a NOPASSWD rule: %v\n%s", err, s.LogTail(10))
	}
	defer conn.Close()
	echo(t, conn, "as root")
}

// What sudo and the shells print when the relay cannot start, as the
// master would print it (exit status appended).
func TestRelayProblem(t *testing.T) {
	for stderr, want := range map[string]string{
		"sudo: a password is required (exit status 1)":                                              sshdial.ProblemSudoPassword,
		"sudo: unable to resolve host m1: Name or service not known\nsudo: a password is required":  sshdial.ProblemSudoPassword,
		"bash: line 1: sudo: command not found (exit status 127)":                                   sshdial.ProblemNoSudo,
		"sh: 1: sudo: not found (exit status 127)":                                                  sshdial.ProblemNoSudo,
		"sudo: python3: command not found (exit status 1)":                                          sshdial.ProblemNoPython,
		"kopsdr-relay: connect /run/containerd/containerd.sock: Connection refused (exit status 3)": "",
	} {
		if got := sshdial.RelayProblem(stderr); got != want {
			t.Errorf("%q: %q; want %q", stderr, got, want)
		}
	}
}
