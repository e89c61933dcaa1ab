package sshdial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// keepaliveInterval is how often a Client checks that the master still
// answers (OpenSSH's ServerAliveInterval). A master that vanishes without
// closing TCP (terminated instance, dropped route) would otherwise leave
// forwarded connections hanging forever; after one unanswered interval the
// Client closes, and forwarded connections see EOF. Tests shorten it.
var keepaliveInterval = 15 * time.Second

// Client is an SSH connection to one master, and to its jump host when
// there is one.
type Client struct {
	ssh   *ssh.Client
	jump  *ssh.Client // nil without a jump host
	where Where
	user  string
	sudo  bool // DialUnix uses the sudo relay (Config.UsesSudo)

	done      chan struct{} // closed on shutdown
	closeOnce sync.Once
	closed    atomic.Bool           // Close was called
	lost      atomic.Pointer[error] // why the connection broke, once known
}

func newClient(c, jump *ssh.Client, w Where, user string) *Client {
	cl := &Client{ssh: c, jump: jump, where: w, user: user, done: make(chan struct{})}
	go cl.watch()
	go cl.keepalive(keepaliveInterval)
	return cl
}

// DialUnix connects to the unix socket at path on the master, as
// `ssh -L local.sock:path` does (OpenSSH's direct-streamlocal channel).
// When sshd cannot connect to the socket the error is a *SocketError;
// when the SSH connection has broken it is a *UnreachableError with Lost
// set. The conn does not support deadlines (an x/crypto limitation).
//
// When the Config asked for sudo (Config.UsesSudo), the socket is opened
// as root by a relay that runs under `sudo -n` in an SSH session, since
// sshd would open it as the login user; see relayScript. Failures are
// *SocketError too, with Sudo set and Problem saying whether sudo wanted
// a password or sudo or python3 is missing. The conn supports CloseWrite
// (half-close), like sshd's.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("ssh to %s: open %s: %w", c.where, path, net.ErrClosed)
	}
	if c.sudo {
		return c.dialRelay(ctx, path)
	}
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err == nil {
		return conn, nil
	}
	var refused *ssh.OpenChannelError
	switch {
	case errors.As(err, &refused):
		prohibited := refused.Reason == ssh.Prohibited || refused.Reason == ssh.UnknownChannelType
		return nil, &SocketError{Where: c.where, Path: path, User: c.user, Prohibited: prohibited, Reason: refused.Message}
	case ctx.Err() != nil:
		return nil, fmt.Errorf("ssh to %s: open %s: %w", c.where, path, ctx.Err())
	default:
		return nil, c.lostError(err)
	}
}

// Close closes the connection to the master, then the jump host's. Every
// connection DialUnix returned breaks.
func (c *Client) Close() error {
	c.closed.Store(true)
	return c.shutdown()
}

func (c *Client) shutdown() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.ssh.Close()
		if c.jump != nil {
			// The master's connection ran inside the jump host's, which
			// has closed with it; only a failure of the jump's own close
			// is worth reporting.
			if jerr := c.jump.Close(); err == nil {
				err = jerr
			}
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
			err = nil
		}
	})
	return err
}

// lostError is the error for a connection that has broken, with the
// reason when the keepalive or the transport told us one.
func (c *Client) lostError(err error) error {
	if why := c.lost.Load(); why != nil {
		err = *why
	} else if errors.Is(err, io.EOF) {
		err = errClosedByPeer // watch has not recorded it yet
	}
	return &UnreachableError{Where: c.where, Lost: true, Err: err}
}

// errClosedByPeer: the TCP connection ended without an SSH goodbye. From
// here a master that closed it and a network that reset it look alike.
var errClosedByPeer = errors.New("closed by the master or the network")

// watch records why the transport ended, for later DialUnix errors.
func (c *Client) watch() {
	err := c.ssh.Wait()
	if err == nil || errors.Is(err, io.EOF) {
		err = errClosedByPeer
	}
	c.lost.CompareAndSwap(nil, &err)
}

// keepalive asks the master for an answer every interval and closes the
// Client when none comes within the next one. The request is OpenSSH's
// own; sshd answers it (with "failure", which is still an answer).
func (c *Client) keepalive(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-reply:
			if err != nil {
				c.lose(err)
				return
			}
		case <-time.After(every):
			c.lose(fmt.Errorf("no answer to a keepalive within %s", every))
			return
		}
	}
}

func (c *Client) lose(err error) {
	c.lost.CompareAndSwap(nil, &err)
	_ = c.shutdown()
}
