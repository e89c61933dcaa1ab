package sshdial_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/sshdial"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/sshtest"
)

// config reaches s with its own key and known_hosts.
func config(s *sshtest.Server) sshdial.Config {
	return sshdial.Config{Address: s.Addr, User: s.User, KeyFile: s.KeyFile, KnownHosts: s.KnownHosts}
}

func dial(t *testing.T, s *sshtest.Server, c sshdial.Config) *sshdial.Client {
	t.Helper()
	cl, err := sshdial.Dial(context.Background(), c)
	if err != nil {
		t.Fatalf("Dial: %v\nsshd log:\n%s", err, s.LogTail(20))
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// echo checks that conn is connected to an echo server.
func echo(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
}

// dialErr dials c, expecting an error of type T, and logs its message:
// that message is what an operator reads.
func dialErr[T error](t *testing.T, ctx context.Context, c sshdial.Config) T {
	t.Helper()
	cl, err := sshdial.Dial(ctx, c)
	if err == nil {
		_ = cl.Close()
		t.Fatal("Dial succeeded; want an error")
	}
	var want T
	if !errors.As(err, &want) {
		t.Fatalf("error %T %q; want %T", err, err, want)
	}
	t.Logf("operator sees: %v", err)
	return want
}

func wantIn(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message lacks %q:\n%s", p, msg)
		}
	}
}

func TestForwardUnixSocket(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	cl := dial(t, s, config(s))
	conn, err := cl.DialUnix(context.Background(), sshtest.EchoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn, "containerd?")
}

func TestJumpHost(t *testing.T) {
	jump := sshtest.Start(t, sshtest.Options{})
	master := sshtest.Start(t, sshtest.Options{UserKey: jump.UserKey})
	c := config(master)
	c.Jump = jump.User + "@" + jump.Addr
	c.KnownHosts = sshtest.KnownHostsFile(t, jump, master)

	cl := dial(t, master, c)
	conn, err := cl.DialUnix(context.Background(), sshtest.EchoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn, "through the bastion")

	t.Run("jump host unknown", func(t *testing.T) {
		c := c
		c.KnownHosts = master.KnownHosts // has only the master
		e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
		if !e.AtJump || e.Changed() || e.Fingerprint != jump.HostKeyFingerprint {
			t.Errorf("got %+v; want the jump host's key, unknown", e)
		}
		wantIn(t, e.Error(), "jump host "+jump.Addr, "for master "+master.Addr, jump.HostKeyFingerprint)
	})
	t.Run("master unknown", func(t *testing.T) {
		c := c
		c.KnownHosts = jump.KnownHosts // has only the jump host
		e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
		if e.AtJump || e.Fingerprint != master.HostKeyFingerprint {
			t.Errorf("got %+v; want the master's key", e)
		}
		wantIn(t, e.Error(), "master "+master.Addr+" (through jump host "+jump.Addr+")", master.HostKeyFingerprint)
	})
	t.Run("master down", func(t *testing.T) {
		c := c
		c.Address = loopback.Refused(t)
		e := dialErr[*sshdial.UnreachableError](t, context.Background(), c)
		wantIn(t, e.Error(), "the jump host could not connect", "security groups let the jump host reach it")
	})
	// The master's handshake runs in a channel of the jump host's
	// connection, which has no deadlines: ctx must still end it.
	// ctx is cancelled once the jump host has connected to the silent
	// master, so the master's handshake is what it must end, however long
	// the jump host's own handshake took on a loaded machine.
	t.Run("master silent", func(t *testing.T) {
		c := c
		var accepted <-chan struct{}
		c.Address, accepted = acceptingSilentPort(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { <-accepted; cancel() }()
		_, err := sshdial.Dial(ctx, c)
		if !errors.Is(err, context.Canceled) || sshdial.Retryable(err) {
			t.Fatalf("got %v; want context.Canceled, not retryable", err)
		}
		wantIn(t, err.Error(), "master "+c.Address+" (through jump host")
	})
}

func TestJumpHostForbidsTCPForwarding(t *testing.T) {
	jump := sshtest.Start(t, sshtest.Options{NoTCPForwarding: true})
	master := sshtest.Start(t, sshtest.Options{UserKey: jump.UserKey})
	c := config(master)
	c.Jump = jump.Addr // user defaults to the master's
	c.KnownHosts = sshtest.KnownHostsFile(t, jump, master)
	_, err := sshdial.Dial(context.Background(), c)
	if err == nil || sshdial.Retryable(err) {
		t.Fatalf("got %v; want a non-retryable error", err)
	}
	t.Logf("operator sees: %v", err)
	wantIn(t, err.Error(), "AllowTcpForwarding yes")
}

func TestUnknownHostKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KnownHosts = s.EmptyKnownHosts(t)
	e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
	if e.Changed() || e.FileMissing || sshdial.Retryable(e) {
		t.Errorf("got %+v; want an unknown host, not retryable", e)
	}
	wantIn(t, e.Error(), "unknown host key", s.HostKeyFingerprint, "ssh-ed25519", c.KnownHosts,
		"aws ec2 get-console-output", "echo '[127.0.0.1]:"+strconv.Itoa(s.Port)+" ssh-ed25519 ")

	// The fix in the message works.
	runFix(t, e.Error(), "pin it: ")
	dial(t, s, c)
}

func TestChangedHostKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KnownHosts = s.ChangedKnownHosts(t)
	e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
	if !e.Changed() || sshdial.Retryable(e) {
		t.Errorf("got %+v; want a changed key, not retryable", e)
	}
	wantIn(t, e.Error(), "HOST KEY CHANGED", s.HostKeyFingerprint, "intercepting", c.KnownHosts,
		"ssh-keygen -R '[127.0.0.1]:"+strconv.Itoa(s.Port)+"' -f "+c.KnownHosts)

	runFix(t, e.Error(), "replace the old key: ")
	dial(t, s, c)
}

// A master reinstalled with other key types offers none of the types
// known_hosts pins: that is a changed key too, not a negotiation error.
func TestChangedHostKeyType(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{Config: []string{"HostKeyAlgorithms ssh-ed25519"}})
	c := config(s)
	c.KnownHosts = s.KnownHostsWith(t, "known_hosts_ecdsa", ecdsaPublicKey(t))
	e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
	if !e.Changed() || e.Fingerprint != "" {
		t.Errorf("got %+v; want a changed key of unknown fingerprint", e)
	}
	wantIn(t, e.Error(), "HOST KEY CHANGED", "offers only ssh-ed25519", "ssh-keyscan -p "+strconv.Itoa(s.Port)+" 127.0.0.1")
}

func TestMissingKnownHosts(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KnownHosts = filepath.Join(t.TempDir(), "nope", "known_hosts")
	e := dialErr[*sshdial.HostKeyError](t, context.Background(), c)
	if !e.FileMissing {
		t.Errorf("got %+v; want FileMissing", e)
	}
	wantIn(t, e.Error(), "known_hosts file "+c.KnownHosts+" does not exist", s.HostKeyFingerprint, "ssh.knownHosts")
}

func TestWrongUserKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KeyFile = s.WrongKeyFile(t)
	e := dialErr[*sshdial.AuthError](t, context.Background(), c)
	if sshdial.Retryable(e) {
		t.Error("an auth error must not be retryable")
	}
	wantIn(t, e.Error(), "master "+s.Addr, "user "+s.User+" was refused", c.KeyFile, "SHA256:",
		"~"+s.User+"/.ssh/authorized_keys", "ssh.user")
}

func TestEncryptedKeyFile(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KeyFile = s.EncryptedKeyFile(t, "secret")
	_, err := sshdial.Dial(context.Background(), c)
	e, ok := inputerr.As(err)
	if !ok || e.Field != "ssh.keyFile" {
		t.Fatalf("got %v; want an input error on ssh.keyFile", err)
	}
	t.Logf("operator sees: %v", err)
	wantIn(t, err.Error(), "passphrase", "ssh-add "+c.KeyFile, "SSH_AUTH_SOCK")
}

func TestAgent(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := config(s)
	c.KeyFile = ""

	t.Run("works", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", sshtest.ServeAgent(t, s.UserKey))
		cl := dial(t, s, c)
		conn, err := cl.DialUnix(context.Background(), sshtest.EchoSocket(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		echo(t, conn, "agent")
	})
	t.Run("wrong key", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", sshtest.ServeAgent(t, sshtest.NewKey(t)))
		e := dialErr[*sshdial.AuthError](t, context.Background(), c)
		wantIn(t, e.Error(), "ssh-agent at SSH_AUTH_SOCK="+os.Getenv("SSH_AUTH_SOCK"), "1 key(s)")
	})
	t.Run("empty agent", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", sshtest.ServeAgent(t))
		e := dialErr[*sshdial.AuthError](t, context.Background(), c)
		wantIn(t, e.Error(), "holds no keys", "ssh-add")
	})
	t.Run("no agent", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		_, err := sshdial.Dial(context.Background(), c)
		if e, ok := inputerr.As(err); !ok || e.Field != "ssh.keyFile" {
			t.Fatalf("got %v; want an input error on ssh.keyFile", err)
		}
		t.Logf("operator sees: %v", err)
	})
}

func TestUnreachable(t *testing.T) {
	c := sshdial.Config{Address: loopback.Refused(t), KeyFile: sshtest.Start(t, sshtest.Options{}).KeyFile,
		KnownHosts: "/nonexistent/known_hosts"}
	e := dialErr[*sshdial.UnreachableError](t, context.Background(), c)
	if !sshdial.Retryable(e) {
		t.Error("unreachable must be retryable")
	}
	wantIn(t, e.Error(), "master "+c.Address, "connection refused")
}

func TestMissingSocket(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	cl := dial(t, s, config(s))
	path := filepath.Join(s.Dir, "containerd.sock")
	_, err := cl.DialUnix(context.Background(), path)
	var e *sshdial.SocketError
	if !errors.As(err, &e) || e.Prohibited || sshdial.Retryable(err) {
		t.Fatalf("got %v; want a non-retryable *SocketError", err)
	}
	t.Logf("operator sees: %v", err)
	wantIn(t, err.Error(), "master "+s.Addr, path, "systemctl status containerd", "user "+s.User)

	// The connection is still good for the right path.
	conn, err := cl.DialUnix(context.Background(), sshtest.EchoSocket(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo(t, conn, "still here")
}

// OpenSSH answers "open failed" here too, as for a missing socket, so
// the message must name both causes.
func TestStreamLocalForwardingOff(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{NoStreamLocalForwarding: true})
	cl := dial(t, s, config(s))
	_, err := cl.DialUnix(context.Background(), sshtest.EchoSocket(t))
	var e *sshdial.SocketError
	if !errors.As(err, &e) {
		t.Fatalf("got %v; want a *SocketError", err)
	}
	t.Logf("operator sees: %v", err)
	wantIn(t, err.Error(), "AllowStreamLocalForwarding yes")
}

func TestCancelDuringHandshake(t *testing.T) {
	addr := silentPort(t)
	c := sshdial.Config{Address: addr, KeyFile: sshtest.Start(t, sshtest.Options{}).KeyFile,
		KnownHosts: "/nonexistent/known_hosts"}

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		// A Dial that ignored ctx would hang here until the test times out.
		_, err := sshdial.Dial(ctx, c)
		if !errors.Is(err, context.Canceled) || sshdial.Retryable(err) {
			t.Fatalf("got %v; want context.Canceled, not retryable", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		e := dialErr[*sshdial.UnreachableError](t, ctx, c)
		wantIn(t, e.Error(), "no SSH answer within")
	})
}

// silentPort completes TCP handshakes and never says a word, as a hung
// sshd would: the kernel accepts connections into the backlog of a
// listener that never calls Accept.
func silentPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// acceptingSilentPort accepts connections and never answers; accepted is
// closed at the first one.
func acceptingSilentPort(t *testing.T) (string, <-chan struct{}) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		var once sync.Once
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			once.Do(func() { close(accepted) })
		}
	}()
	return l.Addr().String(), accepted
}

// runFix runs the shell command an error message gives after prefix (up
// to the message's closing parenthesis), to prove the fix works as
// written.
func runFix(t *testing.T, msg, prefix string) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	i := strings.Index(msg, prefix)
	if i < 0 {
		t.Fatalf("message lacks %q", prefix)
	}
	cmd := strings.TrimSuffix(msg[i+len(prefix):], ")")
	if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("fix %q: %v\n%s", cmd, err, out)
	}
}

func ecdsaPublicKey(t *testing.T) ssh.PublicKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
