package containerdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Methods of containerd's API the Proxy counts.
const (
	MethodKill            = "/containerd.services.tasks.v1.Tasks/Kill"
	MethodTaskCreate      = "/containerd.services.tasks.v1.Tasks/Create"
	MethodTaskStart       = "/containerd.services.tasks.v1.Tasks/Start"
	MethodContainerCreate = "/containerd.services.containers.v1.Containers/Create"
)

// Proxy serves the daemon's gRPC API on its own unix socket and sees
// every call through it: give code under test Proxy.Socket, and the test
// can count what it asked containerd to do (Calls, Kills), or lose its
// kill requests (DropKills) as a cut connection would.
type Proxy struct {
	Socket string // unix socket path, no unix:// prefix

	d   *Daemon
	k   *Kubelet // notes kills in its timeline, if set
	srv *grpc.Server

	mu      sync.Mutex
	calls   map[string]int
	kills   map[string]int // container ID -> Kill calls that reached containerd
	dropped int
	drop    int
}

// NewProxy starts a Proxy in front of d, stopped when t ends. With k, its
// kills show in k's timeline.
func (d *Daemon) NewProxy(t testing.TB, k *Kubelet) *Proxy {
	t.Helper()
	p := &Proxy{Socket: filepath.Join(d.Dir, "p"+randomHex(3)+".sock"), d: d, k: k, calls: map[string]int{}, kills: map[string]int{}}
	l, err := net.Listen("unix", p.Socket)
	if err != nil {
		t.Fatalf("containerdtest: proxy: %v", err)
	}
	p.srv = grpc.NewServer(grpc.UnknownServiceHandler(p.forward), grpc.ForceServerCodec(rawCodec{}))
	go func() { _ = p.srv.Serve(l) }()
	t.Cleanup(p.srv.Stop)
	return p
}

// Endpoint is Socket as a containerd endpoint URL.
func (p *Proxy) Endpoint() string { return "unix://" + p.Socket }

// Calls is how many times method (e.g. MethodTaskStart) was called.
func (p *Proxy) Calls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method]
}

// Kills is how many kill requests for container id reached containerd.
func (p *Proxy) Kills(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills[id]
}

// AllKills is every container's kill count.
func (p *Proxy) AllKills() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.kills))
	for id, n := range p.kills {
		out[id] = n
	}
	return out
}

// DropKills makes the next n kill requests fail with Unavailable without
// reaching containerd, and returns how many were dropped so far.
func (p *Proxy) DropKills(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = n
	return p.dropped
}

// Dropped is how many kill requests were dropped.
func (p *Proxy) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// forward relays one call of any method to the daemon, message by
// message, with the containerd-* metadata (namespace, lease).
func (p *Proxy) forward(_ any, in grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(in)
	p.mu.Lock()
	p.calls[method]++
	p.mu.Unlock()

	md, _ := metadata.FromIncomingContext(in.Context())
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, "containerd-") {
			out[k] = v
		}
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(in.Context(), out))
	defer cancel()
	if method == MethodKill {
		return p.forwardKill(ctx, in)
	}
	up, err := p.d.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	go func() { // the client's messages, until it closes its side
		for {
			var msg []byte
			if err := in.RecvMsg(&msg); err != nil {
				_ = up.CloseSend()
				return
			}
			if err := up.SendMsg(&msg); err != nil {
				return // the daemon's answer says why
			}
		}
	}()
	for {
		var msg []byte
		if err := up.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				in.SetTrailer(up.Trailer())
				return nil
			}
			return err
		}
		if err := in.SendMsg(&msg); err != nil {
			return err
		}
	}
}

// forwardKill relays one (unary) kill request, counting or dropping it.
func (p *Proxy) forwardKill(ctx context.Context, in grpc.ServerStream) error {
	var req, resp []byte
	if err := in.RecvMsg(&req); err != nil {
		return err
	}
	if err := p.onKill(req); err != nil {
		return err
	}
	if err := p.d.conn.Invoke(ctx, MethodKill, &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		return err
	}
	return in.SendMsg(&resp)
}

func (p *Proxy) onKill(msg []byte) error {
	req := &tasksapi.KillRequest{}
	if err := proto.Unmarshal(msg, req); err != nil {
		return status.Errorf(codes.InvalidArgument, "proxy: %v", err)
	}
	p.mu.Lock()
	drop := p.drop > 0
	if drop {
		p.drop--
		p.dropped++
	} else {
		p.kills[req.GetContainerID()]++
	}
	p.mu.Unlock()
	if p.k != nil {
		what := "kill"
		if drop {
			what = "kill DROPPED by the proxy:"
		}
		p.k.Notef("%s %s signal %d (via proxy)", what, p.k.describe(req.GetContainerID()), req.GetSignal())
	}
	if drop {
		return status.Error(codes.Unavailable, "containerdtest proxy: kill request dropped")
	}
	return nil
}

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
