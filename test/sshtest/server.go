// Package sshtest runs a real OpenSSH sshd on 127.0.0.1 for tests, with a
// fresh host key and user key per run, so SSH code is tested against the
// server it meets on kops masters rather than against a Go imitation.
//
// Start writes everything into t.TempDir(): the keys, an authorized_keys
// file, a known_hosts file for the server, sshd_config and sshd's log. The
// user is the one running the test (root in CI), so no account is created.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kopsdr/kopsdr/test/loopback"
)

// SSHD is the daemon Start runs. sshd re-executes itself for every
// connection, so it refuses to run unless started by absolute path.
const SSHD = "/usr/sbin/sshd"

// RequireAllEnv, when "1", turns a missing sshd from a skip into a
// failure, so CI cannot silently skip the SSH tests.
const RequireAllEnv = "KOPSDR_REQUIRE_ALL"

// Options change the server from the default, which allows everything
// kopsdr needs (unix socket and TCP forwarding).
type Options struct {
	// NoStreamLocalForwarding sets AllowStreamLocalForwarding no, as a
	// hardened master might.
	NoStreamLocalForwarding bool
	// NoTCPForwarding sets AllowTcpForwarding no, as a hardened bastion
	// might.
	NoTCPForwarding bool
	// UserKey, when set, is the user key to authorize instead of a new
	// one, so one key can log in to several servers (a jump host and a
	// master).
	UserKey ed25519.PrivateKey
	// Config lines are appended to sshd_config.
	Config []string
}

// Server is one running sshd.
type Server struct {
	Addr string // 127.0.0.1:PORT
	Host string // 127.0.0.1
	Port int
	User string // the user running the test; its key is authorized

	KeyFile    string             // the authorized user's private key (OpenSSH format, no passphrase)
	UserKey    ed25519.PrivateKey // the same key, e.g. to load into a test agent
	KnownHosts string             // a known_hosts file with the host key as [127.0.0.1]:PORT

	HostKey            ssh.PublicKey
	HostKeyFingerprint string // ssh.FingerprintSHA256(HostKey), "SHA256:..."

	Dir string // the temp dir holding all of the above
	log string // sshd's log file
}

// Start runs sshd until the test ends. It skips the test when sshd is not
// installed (fails under KOPSDR_REQUIRE_ALL=1).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(SSHD); err != nil {
		if os.Getenv(RequireAllEnv) == "1" {
			t.Fatalf("sshtest: %s not found (install openssh-server): %v", SSHD, err)
		}
		t.Skipf("sshtest: %s not found (install openssh-server)", SSHD)
	}
	// Privilege separation needs this directory; fresh containers lack it.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		t.Fatalf("sshtest: privsep dir: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: t.TempDir()}
	s.log = filepath.Join(s.Dir, "sshd.log")
	s.writeKeys(t, opts.UserKey)

	// The port stays ours until the test ends (sshd binds with
	// SO_REUSEADDR; see test/loopback), so no other process takes it first.
	s.Port = loopback.Ports(t, 1)[0]
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.writeConfig(t, opts)
	if err := s.run(t); err != nil {
		t.Fatalf("sshtest: sshd did not start: %v\n%s", err, s.LogTail(30))
	}
	s.KnownHosts = s.writeKnownHosts(t, "known_hosts", s.HostKey)
	return s
}

func (s *Server) writeConfig(t testing.TB, opts Options) {
	t.Helper()
	yesNo := func(no bool) string {
		if no {
			return "no"
		}
		return "yes"
	}
	lines := []string{
		"ListenAddress " + s.Addr,
		"HostKey " + filepath.Join(s.Dir, "host_ed25519"),
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		// The temp dir's modes are not sshd's business here.
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"UseDNS no",
		"AllowStreamLocalForwarding " + yesNo(opts.NoStreamLocalForwarding),
		"AllowTcpForwarding " + yesNo(opts.NoTCPForwarding),
		"LogLevel VERBOSE",
	}
	lines = append(lines, opts.Config...)
	writeFile(t, filepath.Join(s.Dir, "sshd_config"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// run starts sshd and waits until its port speaks SSH. It returns an error
// when sshd exits first (e.g. the port was taken), so Start can retry.
func (s *Server) run(t testing.TB) error {
	t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer logf.Close()
	// -D: stay in the foreground so we own the process; -e: log to stderr,
	// which is the log file.
	cmd := exec.Command(SSHD, "-D", "-e", "-f", filepath.Join(s.Dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that killing it also ends the per-
	// connection children a failed test may have left connected.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start %s: %v", SSHD, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited: %v", err)
		default:
		}
		if speaksSSH(s.Addr) {
			t.Cleanup(func() {
				kill()
				<-exited
			})
			return nil
		}
		if time.Now().After(deadline) {
			kill()
			<-exited
			return fmt.Errorf("sshd did not answer on %s within 15s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// speaksSSH reports whether addr accepts TCP and sends an SSH banner, so
// we know it is our sshd and not whatever else listens there.
func speaksSSH(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	n, _ := c.Read(buf)
	return bytes.Equal(buf[:n], []byte("SSH-"))
}

// LogTail is the last n lines of sshd's log, for failure messages.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no sshd log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
