package sshdial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// DialTimeout bounds a whole Dial (TCP, handshakes, the jump host) when
// ctx has no earlier deadline: a master that does not answer in 15s is
// down or firewalled, and the caller retries.
const DialTimeout = 15 * time.Second

// Dial opens an SSH connection to the master c names, through c.Jump when
// set. Errors are *inputerr.Error (bad Config), *HostKeyError,
// *AuthError or *UnreachableError; a canceled ctx gives its error.
func Dial(ctx context.Context, c Config) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t, err := c.resolve()
	if err != nil {
		return nil, err
	}
	hk, err := loadHostKeys(t.knownHosts)
	if err != nil {
		return nil, err
	}
	a, err := loadAuth(t.keyFile)
	if err != nil {
		return nil, err
	}
	defer a.close()

	d := &dialer{parent: ctx, start: time.Now(), t: t, hostKeys: hk, auth: a}
	var cancel context.CancelFunc
	d.ctx, cancel = context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	cl, err := d.dial()
	if err != nil {
		return nil, err
	}
	cl.sudo = c.UsesSudo()
	return cl, nil
}

// target is a Config with defaults applied.
type target struct {
	addr, user         string // master host:port and login
	jumpAddr, jumpUser string // "" without a jump host
	keyFile            string // "" for the agent
	knownHosts         string
}

func (c Config) resolve() (target, error) {
	t := target{addr: hostPort(c.Address), user: c.User, keyFile: c.KeyFile, knownHosts: c.KnownHosts}
	if t.user == "" {
		t.user = DefaultUser
	}
	if c.Jump != "" {
		u, hp, _ := splitUser(c.Jump)
		t.jumpAddr, t.jumpUser = hostPort(hp), u
		if t.jumpUser == "" {
			t.jumpUser = t.user // kops's bastion runs the same image as the masters
		}
	}
	if t.knownHosts == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return t, inputerr.Wrap(err, "ssh.knownHosts", "", "set ssh.knownHosts: the worker has no home directory for ~/.ssh/known_hosts")
		}
		t.knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	return t, nil
}

// hostPort is a validated address as host:port.
func hostPort(s string) string {
	host, port, _ := splitHostPort(s)
	return net.JoinHostPort(host, port)
}

// dialer holds one Dial's state.
type dialer struct {
	parent   context.Context // the caller's: canceled means stop, not unreachable
	ctx      context.Context // parent with DialTimeout
	start    time.Time
	t        target
	hostKeys *hostKeys
	auth     *auth
}

func (d *dialer) dial() (*Client, error) {
	w := Where{Master: d.t.addr, Jump: d.t.jumpAddr}
	if d.auth.agent != "" && len(d.auth.keys) == 0 {
		// An empty agent would only earn a vague refusal from the host.
		return nil, &AuthError{Where: w, User: d.t.user, Agent: d.auth.agent}
	}
	if d.t.jumpAddr == "" {
		conn, err := d.dialTCP(w)
		if err != nil {
			return nil, err
		}
		c, err := d.handshake(conn, w, d.t.user)
		if err != nil {
			return nil, err
		}
		return newClient(c, nil, w, d.t.user), nil
	}

	jw := w
	jw.AtJump = true
	conn, err := d.dialTCP(jw)
	if err != nil {
		return nil, err
	}
	jump, err := d.handshake(conn, jw, d.t.jumpUser)
	if err != nil {
		return nil, err
	}
	// The jump host opens the TCP connection to the master (ssh -J does the
	// same); the master's SSH session runs inside that channel.
	conn, err = jump.DialContext(d.ctx, "tcp", d.t.addr)
	if err != nil {
		_ = jump.Close()
		return nil, d.jumpError(w, err)
	}
	c, err := d.handshake(conn, w, d.t.user)
	if err != nil {
		_ = jump.Close()
		return nil, err
	}
	return newClient(c, jump, w, d.t.user), nil
}

func (d *dialer) dialTCP(w Where) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(d.ctx, "tcp", w.host())
	if err != nil {
		return nil, d.unreachable(w, err)
	}
	return conn, nil
}

// handshake runs the SSH handshake and login on conn, and closes conn
// when it fails.
func (d *dialer) handshake(conn net.Conn, w Where, user string) (*ssh.Client, error) {
	check, algos := d.hostKeys.config(w)
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{d.auth.method},
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
	}
	// Closing conn when ctx ends aborts the handshake. (A deadline would
	// too, but the channel a jump host gives us does not support one.)
	stop := context.AfterFunc(d.ctx, func() { _ = conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, w.host(), cfg)
	if !stop() && err == nil {
		_ = sc.Close() // ctx ended just as the handshake succeeded
		err = d.ctx.Err()
	}
	if err != nil {
		return nil, d.handshakeError(w, user, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func (d *dialer) handshakeError(w Where, user string, err error) error {
	var hostKey *HostKeyError
	if errors.As(err, &hostKey) {
		return hostKey
	}
	// We asked only for the key types known_hosts has; a host that has
	// none of them has different keys now.
	var neg *ssh.AlgorithmNegotiationError
	if errors.As(err, &neg) && neg.What == "host key" {
		if known := d.hostKeys.known(w.host()); len(known) > 0 {
			return &HostKeyError{Where: w, KnownHosts: d.hostKeys.file, Known: known, Offered: neg.RequestedAlgorithms}
		}
	}
	// x/crypto has no error type for this; the text is stable.
	if strings.Contains(err.Error(), "unable to authenticate") {
		return &AuthError{Where: w, User: user, KeyFile: d.auth.keyFile, Agent: d.auth.agent, Keys: d.auth.keys, Err: err}
	}
	return d.unreachable(w, err)
}

// jumpError explains why the jump host could not open a connection to
// the master.
func (d *dialer) jumpError(w Where, err error) error {
	var refused *ssh.OpenChannelError
	if errors.As(err, &refused) {
		if refused.Reason == ssh.Prohibited {
			return fmt.Errorf("ssh to %s: the jump host refuses to forward TCP connections: %s "+
				"(fix: set AllowTcpForwarding yes in the jump host's sshd_config, or leave ssh.jump empty if this worker reaches the master directly)",
				w, refused.Message)
		}
		return d.unreachable(w, fmt.Errorf("the jump host could not connect: %s (%s)", refused.Message, refused.Reason))
	}
	return d.unreachable(w, err)
}

// unreachable wraps a failure to connect, unless the caller canceled:
// then the caller is going away and its own error says so.
func (d *dialer) unreachable(w Where, err error) error {
	if errors.Is(d.parent.Err(), context.Canceled) {
		return fmt.Errorf("ssh to %s: %w", w, d.parent.Err())
	}
	if d.ctx.Err() != nil {
		// Closing conn on ctx's end leaves a "use of closed network
		// connection" error; say what really happened.
		err = fmt.Errorf("no SSH answer within %s: %w", time.Since(d.start).Round(time.Millisecond), d.ctx.Err())
	}
	return &UnreachableError{Where: w, Err: err}
}
