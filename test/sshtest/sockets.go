package sshtest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh/agent"
)

// SocketDir is a fresh directory with a short path for unix sockets: a
// socket path must fit in 108 bytes, which t.TempDir() under a long test
// name may not.
func SocketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sshtest")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// EchoSocket serves a unix socket that echoes what it reads, standing in
// for containerd's socket on a master. It returns the socket's path.
func EchoSocket(t testing.TB) string {
	t.Helper()
	p := filepath.Join(SocketDir(t), "echo.sock")
	serveUnix(t, p, func(c net.Conn) { _, _ = io.Copy(c, c) })
	return p
}

// ServeAgent serves an SSH agent holding keys on a unix socket and returns
// the socket's path, for SSH_AUTH_SOCK.
func ServeAgent(t testing.TB, keys ...any) string {
	t.Helper()
	ring := agent.NewKeyring()
	for _, k := range keys {
		if err := ring.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatalf("sshtest: agent add: %v", err)
		}
	}
	p := filepath.Join(SocketDir(t), "agent.sock")
	serveUnix(t, p, func(c net.Conn) { _ = agent.ServeAgent(ring, c) })
	return p
}

// serveUnix runs handle for each connection to a unix socket at path
// until the test ends; it then closes the listener and every connection.
func serveUnix(t testing.TB, path string, handle func(net.Conn)) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("sshtest: listen %s: %v", path, err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed by Cleanup
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
