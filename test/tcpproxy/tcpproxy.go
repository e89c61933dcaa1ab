// Package tcpproxy is a TCP proxy for tests that need a connection to fail
// in the middle: DropAll closes every proxied connection at once (a
// network reset), Blackhole keeps them open but lets nothing through (a
// peer that vanished without a word, as a terminated instance does).
package tcpproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards connections from Addr to a target until the test ends.
type Proxy struct {
	Addr   string // 127.0.0.1:PORT; dial this instead of the target
	target string
	l      net.Listener

	blackhole atomic.Bool
	mu        sync.Mutex
	conns     map[net.Conn]bool
	accepted  int
	wg        sync.WaitGroup
}

// Start listens on a free 127.0.0.1 port and forwards to target.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpproxy: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, l: l, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = l.Close()
		p.DropAll()
		p.wg.Wait()
	})
	return p
}

// DropAll closes every connection proxied so far, both sides. New
// connections are still accepted.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Blackhole, when on, discards all bytes in both directions without
// closing anything, so only a timeout or keepalive can notice.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is the number of proxied connections still open.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return // closed by Cleanup
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.accepted++
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies src to dst; when either side ends, both are closed.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.blackhole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			break
		}
	}
	_ = src.Close()
	_ = dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}
