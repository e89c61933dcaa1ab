// Package loopback gives tests ports on 127.0.0.1 that stay theirs for the
// whole test, however many test processes share the machine.
//
// The usual trick, listening on port 0 and closing the listener, frees the
// port for anyone until the test's server binds it, and a server that
// restarts frees it again. With the e2e shards and the test packages
// running at once, another process took such a port: a backup meant to meet
// "connection refused" met a plain-HTTP server. The same gap is the likely
// cause of a flaky restore test, whose etcd-manager stand-in binds its
// quarantine port minutes after the test chose it.
//
// Here each port stays bound, never listening, until the test ends. Linux
// then keeps it out of everyone's automatic choice: neither a listener on
// port 0 nor an outgoing connection's source port lands on a port that has
// a bound socket.
package loopback

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// Refused is "127.0.0.1:port" where every connection is refused until t
// ends. The port is bound without SO_REUSEADDR, so no server can take it;
// Linux answers a SYN to a bound socket that does not listen with a reset.
func Refused(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(reserve(t, false)))
}

// Ports are n distinct ports kept for the test's servers until t ends. They
// are bound with SO_REUSEADDR, which lets a server that sets it too (every
// Go listener, sshd) bind and listen on them, and bind again after a
// restart, while no port-0 choice can take them in between.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = reserve(t, true)
	}
	return ports
}

// reserve binds a TCP socket to 127.0.0.1:0, closed when t ends, and
// returns the port the kernel gave it.
func reserve(t testing.TB, reuseAddr bool) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("loopback: socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if reuseAddr {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			t.Fatalf("loopback: SO_REUSEADDR: %v", err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("loopback: bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("loopback: getsockname: %v", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("loopback: getsockname gave %T", sa)
	}
	return in4.Port
}
