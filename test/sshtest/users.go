package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// User is a throwaway login user other than root, as kops's ubuntu is,
// for tests of what such a user may and may not do on a master.
type User struct {
	Name string
	Home string
}

// NewUser creates a user whose authorized key is key, and removes it
// (userdel -r) when the test ends. Creating users needs root and useradd:
// without them the test is skipped (fails under KOPSDR_REQUIRE_ALL=1).
func NewUser(t testing.TB, key ed25519.PrivateKey) *User {
	t.Helper()
	if _, err := exec.LookPath("useradd"); err != nil || os.Geteuid() != 0 {
		skipOrFail(t, "creating a test user needs root and useradd (passwd package)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	u := &User{Name: "kdr" + hex.EncodeToString(b)}
	// -p '*': no password, but not locked ("!"), which sshd without PAM
	// would refuse.
	run(t, "useradd", "-m", "-p", "*", "-s", "/bin/sh", u.Name)
	t.Cleanup(func() {
		// userdel refuses while the user's processes (sshd's session
		// child, sudo) are still exiting after sshd was killed.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err := exec.Command("userdel", "-r", u.Name).CombinedOutput()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("sshtest: userdel -r %s: %v: %s", u.Name, err, out)
				return
			}
		}
	})
	u.Home = filepath.Join("/home", u.Name)
	dir := filepath.Join(u.Home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(publicKey(t, key)), 0o600)
	run(t, "chown", "-R", u.Name+":", dir)
	return u
}

// SSHDConfig are sshd_config lines (for Options.Config) that let u log in.
// The server's own authorized_keys lies in root's temp dir, and sshd
// reads it as the user, who cannot; u's is in its home.
func (u *User) SSHDConfig() []string {
	return []string{"Match User " + u.Name, "    AuthorizedKeysFile " + filepath.Join(u.Home, ".ssh", "authorized_keys")}
}

// AllowSudo gives u passwordless sudo, as kops's images give ubuntu,
// through a file in /etc/sudoers.d that visudo has checked and that is
// removed when the test ends.
func (u *User) AllowSudo(t testing.TB) {
	t.Helper()
	rule := []byte(u.Name + " ALL=(ALL) NOPASSWD:ALL\n")
	// A bad file in sudoers.d would break sudo for everyone: check first.
	tmp := filepath.Join(t.TempDir(), "sudoers")
	writeFile(t, tmp, rule, 0o440)
	run(t, "visudo", "-cf", tmp)
	// sudo ignores files in sudoers.d whose names contain a dot.
	p := filepath.Join("/etc/sudoers.d", "sshtest-"+u.Name)
	writeFile(t, p, rule, 0o440)
	t.Cleanup(func() { _ = os.Remove(p) })
}

// RequireSudo skips the test unless sudo and python3 are installed, as
// the sudo relay needs on a master (fails under KOPSDR_REQUIRE_ALL=1).
func RequireSudo(t testing.TB) {
	t.Helper()
	for _, prog := range []string{"sudo", "python3"} {
		if _, err := exec.LookPath(prog); err != nil {
			skipOrFail(t, prog+" is not installed (apt-get install sudo python3)")
		}
	}
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("sshtest: %s", why)
	}
	t.Skipf("sshtest: %s", why)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("sshtest: %s %v: %v: %s", name, args, err, out)
	}
}
