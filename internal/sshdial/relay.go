package sshdial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshd opens a forwarded unix socket as the login user, and kops's
// containerd socket is root's alone while root may not log in. So in sudo
// mode the socket is opened by a relay that runs as root: an exec session
// runs relayScript under `sudo -n`, and the session's stdin and stdout
// carry the socket's bytes. python3 is the relay because every kops image
// has it (cloud-init depends on it); nothing is installed on the master.
//
// The relay reports on stderr: relayReady once connected, then nothing
// unless a direction fails. Exit status 0 means the socket closed cleanly.
//
// Both directions run at once (a thread each) so neither can starve the
// other. EOF from ssh half-closes the socket (CloseWrite works); EOF from
// the socket ends the relay, because sudo keeps its own copy of stdout
// open until the command exits, so ending the process is the only way the
// client sees EOF.
const relayScript = `import os, socket, sys, threading
def say(m):
    try: os.write(2, ("kopsdr-relay: %s\n" % m).encode())
    except OSError: pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try: s.connect(sys.argv[1])
except OSError as e:
    say("connect %s: %s" % (sys.argv[1], e.strerror or e)); os._exit(3)
say("connected")
def up():
    try:
        while True:
            b = os.read(0, 65536)
            if not b: break
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
    except OSError: pass
threading.Thread(target=up, daemon=True).start()
try:
    while True:
        b = s.recv(65536)
        if not b: break
        m = memoryview(b)
        while m: m = m[os.write(1, m):]
except OSError as e:
    say("relay from socket: %s" % e); os._exit(4)
os._exit(0)
`

// relayReady is what the relay writes to stderr once connected.
const relayReady = "kopsdr-relay: connected\n"

// relayCommand is the shell command for the session. The path is an
// argument of the script, quoted, never part of its code.
func relayCommand(path string) string {
	return "sudo -n -- python3 -I -c " + shellQuote(relayScript) + " " + shellQuote(path)
}

// shellQuote quotes s for a POSIX shell (the login shell runs the
// session's command).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dialRelay opens path through the relay; see Client.DialUnix.
func (c *Client) dialRelay(ctx context.Context, path string) (net.Conn, error) {
	sess, err := c.ssh.NewSession()
	if err != nil {
		var refused *ssh.OpenChannelError
		if errors.As(err, &refused) {
			return nil, &SocketError{Where: c.where, Path: path, User: c.user, Sudo: true,
				Reason: "sshd refused a session: " + refused.Message}
		}
		return nil, c.lostError(err)
	}
	// The pipes cannot fail on a fresh session; Start can.
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	stderr, _ := sess.StderrPipe()
	r := &relayConn{client: c, sess: sess, path: path, stdin: stdin, stdout: stdout,
		stderr: newStderrLog(), exited: make(chan struct{})}
	go r.stderr.drain(stderr)
	if err := sess.Start(relayCommand(path)); err != nil {
		_ = sess.Close()
		return nil, c.lostError(err)
	}
	go func() { r.exitErr = sess.Wait(); close(r.exited) }()

	select {
	case <-r.stderr.ready:
		return r, nil
	case <-r.stderr.done:
	case <-ctx.Done():
		_ = sess.Close()
		return nil, fmt.Errorf("ssh to %s: open %s: %w", c.where, path, ctx.Err())
	}
	// The relay ended before connecting; its stderr and exit status say
	// why.
	defer sess.Close()
	select {
	case <-r.exited:
	case <-ctx.Done():
		return nil, fmt.Errorf("ssh to %s: open %s: %w", c.where, path, ctx.Err())
	}
	msg := r.stderr.text()
	var exit *ssh.ExitError
	switch {
	case errors.As(r.exitErr, &exit):
		msg = fmt.Sprintf("%s (exit status %d)", msg, exit.ExitStatus())
	case msg == "":
		return nil, c.lostError(io.EOF) // the connection broke
	}
	return nil, &SocketError{Where: c.where, Path: path, User: c.user, Sudo: true, Problem: relayProblem(msg), Reason: msg}
}

// relayProblem classifies the relay's stderr. The texts are sudo's and the
// shells' (bash, dash), stable for decades.
func relayProblem(stderr string) string {
	switch {
	case strings.Contains(stderr, "password is required"):
		return ProblemSudoPassword
	case noSudoRE.MatchString(stderr):
		return ProblemNoSudo
	case strings.Contains(stderr, "python3: command not found") || strings.Contains(stderr, "python3: not found"):
		return ProblemNoPython
	}
	return ""
}

// noSudoRE: the shell found no sudo ("bash: line 1: sudo: command not
// found", "sh: 1: sudo: not found"); sudo's own messages start "sudo: ".
var noSudoRE = regexp.MustCompile(`(^|\n)\S+: (line )?\d+: sudo: (command )?not found`)

// stderrLog keeps the first bytes of the relay's stderr, enough to
// classify a failure, and discards the rest: stderr must be read anyway,
// or a chatty relay would stall the session.
type stderrLog struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	ready     chan struct{} // closed when relayReady appears
	readyOnce sync.Once
	done      chan struct{} // closed at EOF
}

const stderrKeep = 4096

func newStderrLog() *stderrLog {
	return &stderrLog{ready: make(chan struct{}), done: make(chan struct{})}
}

func (l *stderrLog) drain(r io.Reader) {
	defer close(l.done)
	b := make([]byte, 1024)
	for {
		n, err := r.Read(b)
		l.mu.Lock()
		if keep := min(n, stderrKeep-l.buf.Len()); keep > 0 {
			l.buf.Write(b[:keep])
		}
		// sudo may warn before the relay starts (e.g. "unable to resolve
		// host"), so look for the marker anywhere.
		if bytes.Contains(l.buf.Bytes(), []byte(relayReady)) {
			l.readyOnce.Do(func() { close(l.ready) })
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// text is what the relay said, without the marker.
func (l *stderrLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(strings.Replace(l.buf.String(), relayReady, "", 1))
}

// relayConn is a net.Conn over the relay session's stdin and stdout.
type relayConn struct {
	sess   *ssh.Session
	client *Client
	path   string
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *stderrLog
	closed atomic.Bool

	exited  chan struct{} // closed when the session has ended
	exitErr error         // sess.Wait's result, once exited is closed
}

// exitWait bounds how long a Read at EOF waits for the relay's exit
// status. The relay has already exited when EOF arrives (see
// relayScript), so sshd sends the status at once.
const exitWait = 5 * time.Second

// Read returns io.EOF when the socket closed cleanly, and a lost
// connection error when the relay failed or the SSH connection broke.
func (r *relayConn) Read(b []byte) (int, error) {
	n, err := r.stdout.Read(b)
	if !errors.Is(err, io.EOF) {
		return n, err
	}
	if r.closed.Load() {
		return n, net.ErrClosed
	}
	select {
	case <-r.exited:
	case <-time.After(exitWait):
		return n, r.client.lostError(fmt.Errorf("relay to %s sent EOF but no exit status within %s", r.path, exitWait))
	}
	<-r.stderr.done // the channel's EOF ended stderr too
	var exit *ssh.ExitError
	switch {
	case r.exitErr == nil:
		return n, io.EOF
	case errors.As(r.exitErr, &exit):
		return n, r.client.lostError(fmt.Errorf("relay to %s failed: %s (exit status %d)", r.path, r.stderr.text(), exit.ExitStatus()))
	default:
		return n, r.client.lostError(r.exitErr)
	}
}

func (r *relayConn) Write(b []byte) (int, error) { return r.stdin.Write(b) }

// CloseWrite half-closes: the relay shuts down the socket's write side.
func (r *relayConn) CloseWrite() error { return r.stdin.Close() }

// Close ends the session; sshd closes the relay's pipes, and the relay
// exits when it next touches them or the socket closes.
func (r *relayConn) Close() error {
	r.closed.Store(true)
	if err := r.sess.Close(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// The addresses are those of sshd's forwarding (x/crypto's chanConn).
func (r *relayConn) LocalAddr() net.Addr  { return &net.UnixAddr{Name: "@", Net: "unix"} }
func (r *relayConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: r.path, Net: "unix"} }

// Deadlines are unsupported, as on sshd's forwarded conns: x/crypto's
// channels have none.
func (r *relayConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (r *relayConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (r *relayConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = errors.New("sshdial: relayed conn: deadline not supported")
