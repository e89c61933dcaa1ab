package loopback_test

import (
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/kopsdr/kopsdr/test/loopback"
)

// TestRefused: a dial is refused, and no server can bind the port while
// the test runs.
func TestRefused(t *testing.T) {
	addr := loopback.Refused(t)
	_, err := net.Dial("tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: want connection refused, got %v", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listen %s succeeded: the port was not held", addr)
	}
}

// TestPortsTakeAServerAndARestart: a Go server listens on a kept port,
// answers, stops, and listens on it again.
func TestPortsTakeAServerAndARestart(t *testing.T) {
	ports := loopback.Ports(t, 2)
	if ports[0] == ports[1] {
		t.Fatalf("two ports, both %d", ports[0])
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	for round := range 2 {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: listen on the kept port %s: %v", round, addr, err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: dial %s: %v", round, addr, err)
		}
		c.Close()
		l.Close()
	}
}

// TestPortsAreNotChosenByOthers: while ports are kept, neither port-0
// listeners nor outgoing connections get them. 2000 kept ports against
// 5000 picks of each kind: without the reservation several hundred picks
// would land on one (the ephemeral range has about 28000 ports).
func TestPortsAreNotChosenByOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sockets")
	}
	kept := map[int]bool{}
	for _, p := range loopback.Ports(t, 2000) {
		kept[p] = true
	}
	// Each picker opens a socket as another process would; portOf closes
	// it and says which port the kernel chose.
	portOf := func(a net.Addr, c io.Closer) int { c.Close(); return a.(*net.TCPAddr).Port }
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for what, pick := range map[string]func() (int, error){
		"a listener on port 0": func() (int, error) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			return portOf(l.Addr(), l), nil
		},
		"a connection's source port": func() (int, error) {
			c, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				return 0, err
			}
			return portOf(c.LocalAddr(), c), nil
		},
	} {
		for i := range 5000 {
			p, err := pick()
			if err != nil {
				t.Fatalf("%s, pick %d: %v", what, i, err)
			}
			if kept[p] {
				t.Fatalf("%s, pick %d: got kept port %d", what, i, p)
			}
		}
	}
}
