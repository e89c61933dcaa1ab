package sshtest_test

import (
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kopsdr/kopsdr/test/sshtest"
)

// TestServer checks the harness with x/crypto/ssh alone: the host key in
// KnownHosts verifies, KeyFile logs in and a unix socket is forwarded.
func TestServer(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	hostKeys, err := knownhosts.New(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
	})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, s.LogTail(20))
	}
	defer c.Close()

	conn, err := c.Dial("unix", sshtest.EchoSocket(t))
	if err != nil {
		t.Fatalf("forward: %v\n%s", err, s.LogTail(20))
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}

	if tail := s.LogTail(3); !strings.Contains(tail, "Accepted publickey for "+s.User) {
		t.Errorf("sshd log tail lacks the login:\n%s", tail)
	}
}
