package sshdial

import (
	"context"
	"net"
	"sync"
)

// DialSocket connects to the unix socket at path on the master c names,
// over an SSH connection of its own. The returned conn owns that SSH
// connection: closing the conn closes it (and the jump host's), so nothing
// else has to be kept or closed.
//
// A Client shared by several conns would save handshakes but need
// reference counting, and a broken one would have to be noticed and
// replaced; one SSH connection per forwarded conn needs neither. A gRPC
// client holds one conn at a time, so it costs one SSH connection per
// client.
func DialSocket(ctx context.Context, c Config, path string) (net.Conn, error) {
	cl, err := Dial(ctx, c)
	if err != nil {
		return nil, err
	}
	conn, err := cl.DialUnix(ctx, path)
	if err != nil {
		_ = cl.Close()
		return nil, err
	}
	return &ownedConn{Conn: conn, client: cl}, nil
}

// SocketDialer returns a dialer for grpc.WithContextDialer that reaches
// the unix socket at path on the master, through DialSocket. It ignores
// the address gRPC passes, so the gRPC target only names the connection
// (e.g. "passthrough:///containerd"), and the socket path cannot be
// mangled by gRPC's resolvers. When the transport breaks, gRPC redials
// and gets a fresh SSH connection.
func SocketDialer(c Config, path string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		return DialSocket(ctx, c, path)
	}
}

// ownedConn is a forwarded conn that closes its SSH connection with it.
type ownedConn struct {
	net.Conn
	client *Client
	once   sync.Once
	err    error
}

func (o *ownedConn) Close() error {
	o.once.Do(func() {
		o.err = o.Conn.Close()
		if cerr := o.client.Close(); o.err == nil {
			o.err = cerr
		}
	})
	return o.err
}
