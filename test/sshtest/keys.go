package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// writeKeys makes this run's host key and user key (unless given) and
// authorizes the user key.
func (s *Server) writeKeys(t testing.TB, userKey ed25519.PrivateKey) {
	t.Helper()
	host := NewKey(t)
	writePrivateKey(t, filepath.Join(s.Dir, "host_ed25519"), host, nil)
	s.HostKey = publicKey(t, host)
	s.HostKeyFingerprint = ssh.FingerprintSHA256(s.HostKey)

	s.UserKey = userKey
	if s.UserKey == nil {
		s.UserKey = NewKey(t)
	}
	s.KeyFile = filepath.Join(s.Dir, "id_ed25519")
	writePrivateKey(t, s.KeyFile, s.UserKey, nil)
	writeFile(t, filepath.Join(s.Dir, "authorized_keys"),
		ssh.MarshalAuthorizedKey(publicKey(t, s.UserKey)), 0o600)
}

// NewKey returns a fresh ed25519 key.
func NewKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: generate key: %v", err)
	}
	return k
}

// KnownHostsWith writes a known_hosts file that pins key for this server's
// address, and returns its path.
func (s *Server) KnownHostsWith(t testing.TB, name string, key ssh.PublicKey) string {
	t.Helper()
	return s.writeKnownHosts(t, name, key)
}

// KnownHostsAt is a known_hosts file that pins this server's host key for
// another address, e.g. a proxy in front of it.
func (s *Server) KnownHostsAt(t testing.TB, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, p, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, s.HostKey)+"\n"), 0o600)
	return p
}

// KnownHostsFile writes one known_hosts file with the host keys of all
// servers, e.g. a jump host and a master, and returns its path.
func KnownHostsFile(t testing.TB, servers ...*Server) string {
	t.Helper()
	var b []byte
	for _, s := range servers {
		b = append(b, knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)+"\n"...)
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, p, b, 0o600)
	return p
}

// ChangedKnownHosts is a known_hosts file that pins a different ed25519
// key for this server's address: what a client sees after a master was
// replaced, or when someone intercepts the connection.
func (s *Server) ChangedKnownHosts(t testing.TB) string {
	t.Helper()
	return s.writeKnownHosts(t, "known_hosts_changed", publicKey(t, NewKey(t)))
}

// EmptyKnownHosts is an existing, empty known_hosts file: the host is
// unknown.
func (s *Server) EmptyKnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(s.Dir, "known_hosts_empty")
	writeFile(t, p, nil, 0o600)
	return p
}

// WrongKeyFile is a private key file the server does not authorize.
func (s *Server) WrongKeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(s.Dir, "id_wrong")
	writePrivateKey(t, p, NewKey(t), nil)
	return p
}

// EncryptedKeyFile is the authorized user key, protected by passphrase.
func (s *Server) EncryptedKeyFile(t testing.TB, passphrase string) string {
	t.Helper()
	p := filepath.Join(s.Dir, "id_encrypted")
	writePrivateKey(t, p, s.UserKey, []byte(passphrase))
	return p
}

func (s *Server) writeKnownHosts(t testing.TB, name string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(s.Dir, name)
	// Normalize gives "[127.0.0.1]:PORT", the form OpenSSH uses for a
	// port other than 22.
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, key)
	writeFile(t, p, []byte(line+"\n"), 0o600)
	return p
}

func publicKey(t testing.TB, k ed25519.PrivateKey) ssh.PublicKey {
	t.Helper()
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatalf("sshtest: public key: %v", err)
	}
	return pub
}

func writePrivateKey(t testing.TB, path string, k ed25519.PrivateKey, passphrase []byte) {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == nil {
		block, err = ssh.MarshalPrivateKey(k, "sshtest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k, "sshtest", passphrase)
	}
	if err != nil {
		t.Fatalf("sshtest: marshal key: %v", err)
	}
	writeFile(t, path, pem.EncodeToMemory(block), 0o600)
}

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}
