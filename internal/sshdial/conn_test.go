package sshdial_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kopsdr/kopsdr/internal/sshdial"
	"github.com/kopsdr/kopsdr/test/sshtest"
	"github.com/kopsdr/kopsdr/test/tcpproxy"
)

// readErr waits up to 10s for a read on conn to fail.
func readErr(t *testing.T, conn net.Conn) error {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		got <- err
	}()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("read succeeded; want the connection broken")
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("read still blocked 10s after the connection broke")
		return nil
	}
}

// A network reset between worker and master breaks the forwarded conn at
// once; the Client then reports itself lost, and a new Dial works.
func TestDroppedConnection(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	proxy := tcpproxy.Start(t, s.Addr)
	c := config(s)
	c.Address = proxy.Addr
	c.KnownHosts = s.KnownHostsAt(t, proxy.Addr)
	sock := sshtest.EchoSocket(t)

	cl := dial(t, s, c)
	conn, err := cl.DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, conn, "before")

	proxy.DropAll()
	t.Logf("read after drop: %v", readErr(t, conn))
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Error("write after drop succeeded")
	}
	_, err = cl.DialUnix(context.Background(), sock)
	var lost *sshdial.UnreachableError
	if !errors.As(err, &lost) || !lost.Lost || !sshdial.Retryable(err) {
		t.Fatalf("DialUnix after drop: %v; want a retryable lost connection", err)
	}
	t.Logf("operator sees: %v", err)

	conn, err = dial(t, s, c).DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn, "after")
}

// A master that vanishes without a reset (terminated instance) is noticed
// by the keepalive, which closes the Client.
func TestKeepaliveNoticesSilentMaster(t *testing.T) {
	// Long enough that a loaded machine answers in time, so only the
	// blackhole trips it.
	sshdial.SetKeepaliveInterval(t, time.Second)
	s := sshtest.Start(t, sshtest.Options{})
	proxy := tcpproxy.Start(t, s.Addr)
	c := config(s)
	c.Address = proxy.Addr
	c.KnownHosts = s.KnownHostsAt(t, proxy.Addr)
	sock := sshtest.EchoSocket(t)

	cl := dial(t, s, c)
	conn, err := cl.DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn, "alive")
	time.Sleep(2500 * time.Millisecond) // two keepalives are answered meanwhile
	echo(t, conn, "still alive")

	proxy.Blackhole(true)
	readErr(t, conn)
	_, err = cl.DialUnix(context.Background(), sock)
	if !sshdial.Retryable(err) {
		t.Fatalf("DialUnix after silence: %v; want retryable", err)
	}
	t.Logf("operator sees: %v", err)
}

// The conn DialSocket returns owns its SSH connection.
func TestDialSocketClosesSSH(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	proxy := tcpproxy.Start(t, s.Addr)
	c := config(s)
	c.Address = proxy.Addr
	c.KnownHosts = s.KnownHostsAt(t, proxy.Addr)

	conn, err := sshdial.DialSocket(context.Background(), c, sshtest.EchoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	echo(t, conn, "owned")
	if proxy.Open() != 1 {
		t.Fatalf("%d SSH connections open; want 1", proxy.Open())
	}
	if err := conn.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitFor(t, "the SSH connection to close", func() bool { return proxy.Open() == 0 })

	// A failed DialSocket leaves no SSH connection behind either.
	if _, err := sshdial.DialSocket(context.Background(), c, "/nonexistent.sock"); err == nil {
		t.Fatal("DialSocket to a missing socket succeeded")
	}
	waitFor(t, "the SSH connection to close", func() bool { return proxy.Open() == 0 })
}

// SocketDialer carries a gRPC client to a server on the master's socket,
// as the containerd client will.
func TestSocketDialerGRPC(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	sock := sshtest.SocketDir(t) + "/grpc.sock"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	cc, err := grpc.NewClient("passthrough:///containerd",
		grpc.WithContextDialer(sshdial.SocketDialer(config(s), sock)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check over SSH: %v\n%s", err, s.LogTail(10))
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.Status)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
