package sshdial

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"
)

// The errors below are what an operator sees when a master cannot be
// reached, so each names the host and says what to do. Only
// *UnreachableError is worth retrying: the others are configuration that
// a retry cannot change (see Retryable).

// Retryable reports whether err may go away by itself: the network or the
// master's sshd was not there (yet), or an established connection broke.
func Retryable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// Where names the hop that failed, for messages.
type Where struct {
	Master string `json:"master"`         // the master's host:port
	Jump   string `json:"jump,omitempty"` // the jump host's host:port, "" when none
	AtJump bool   `json:"atJump"`         // the failure is at the jump host itself
}

func (w Where) String() string {
	switch {
	case w.AtJump:
		return fmt.Sprintf("jump host %s (for master %s)", w.Jump, w.Master)
	case w.Jump != "":
		return fmt.Sprintf("master %s (through jump host %s)", w.Master, w.Jump)
	default:
		return "master " + w.Master
	}
}

// host is the address of the hop that failed.
func (w Where) host() string {
	if w.AtJump {
		return w.Jump
	}
	return w.Master
}

// HostKeyError: the host's key could not be verified against known_hosts.
// kopsdr never accepts a key it cannot verify, so the fix is always for
// the operator to check the key and pin it.
type HostKeyError struct {
	Where
	KnownHosts  string `json:"knownHosts"`  // the known_hosts file consulted
	FileMissing bool   `json:"fileMissing"` // ... and it does not exist
	// KeyType and Fingerprint describe the key the host presented; empty
	// when it offered none of the key types known_hosts has for it.
	KeyType     string `json:"keyType,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Line is the known_hosts line that would pin the presented key.
	Line string `json:"line,omitempty"`
	// Known are the keys known_hosts has for this host. Empty: the host
	// is unknown. Not empty: the host's key CHANGED.
	Known   []knownhosts.KnownKey `json:"-"`
	Revoked bool                  `json:"revoked,omitempty"` // the key is marked @revoked
	// Offered are the host key types the host offered when none matched
	// the ones known_hosts has.
	Offered []string `json:"offered,omitempty"`
}

// Changed reports whether known_hosts has a different key for the host:
// either the instance was replaced or reinstalled, or someone is in the
// middle.
func (e *HostKeyError) Changed() bool { return len(e.Known) > 0 }

func (e *HostKeyError) Error() string {
	entry := knownhosts.Normalize(e.host())
	verify := fmt.Sprintf("check that %s is among the host key fingerprints the instance printed at boot "+
		"(aws ec2 get-console-output --instance-id <instance id> --output text, between BEGIN and END SSH HOST KEY FINGERPRINTS)",
		e.Fingerprint)
	pin := fmt.Sprintf("echo '%s' >> %s", e.Line, e.KnownHosts)
	switch {
	case e.Revoked:
		return fmt.Sprintf("ssh to %s: host key %s %s is marked @revoked in known_hosts file %s; kopsdr will not connect "+
			"(fix: the host needs new host keys; find out why the key was revoked)",
			e.Where, e.KeyType, e.Fingerprint, e.KnownHosts)
	case e.Changed() && e.Fingerprint == "":
		host, port, _ := net.SplitHostPort(e.host())
		return fmt.Sprintf("ssh to %s: HOST KEY CHANGED: known_hosts file %s pins %s for %s, but the host offers only %s keys. "+
			"Either the instance was replaced or reinstalled, or someone is intercepting the connection; kopsdr will not connect "+
			"(fix: find the host's key fingerprints in its console output (aws ec2 get-console-output --instance-id <instance id> --output text); "+
			"fetch its key with ssh-keyscan -p %s %s, compare with ssh-keygen -lf, and only if they match replace the old entry: ssh-keygen -R '%s' -f %s, then append the key to %s)",
			e.Where, e.KnownHosts, describeKnown(e.Known), entry, strings.Join(e.Offered, ", "),
			port, host, entry, e.KnownHosts, e.KnownHosts)
	case e.Changed():
		return fmt.Sprintf("ssh to %s: HOST KEY CHANGED: it presented %s key %s, but known_hosts file %s pins %s for %s. "+
			"Either the instance was replaced or reinstalled, or someone is intercepting the connection; kopsdr will not connect "+
			"(fix: %s; only if it is, replace the old key: ssh-keygen -R '%s' -f %s && %s)",
			e.Where, e.KeyType, e.Fingerprint, e.KnownHosts, describeKnown(e.Known), entry,
			verify, entry, e.KnownHosts, pin)
	case e.FileMissing:
		return fmt.Sprintf("ssh to %s: known_hosts file %s does not exist, so the %s key %s the host presented cannot be verified "+
			"(fix: %s; only if it is, pin it: %s; or set ssh.knownHosts to the file that holds the masters' keys)",
			e.Where, e.KnownHosts, e.KeyType, e.Fingerprint, verify, pin)
	default:
		return fmt.Sprintf("ssh to %s: unknown host key: it presented %s key %s, and known_hosts file %s has no key for %s; "+
			"kopsdr never accepts a key it cannot verify (fix: %s; only if it is, pin it: %s)",
			e.Where, e.KeyType, e.Fingerprint, e.KnownHosts, entry, verify, pin)
	}
}

func describeKnown(keys []knownhosts.KnownKey) string {
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s %s (line %d)", k.Key.Type(), fingerprint(k.Key), k.Line))
	}
	return strings.Join(s, ", ")
}

// AuthError: the host refused every key offered for the user.
type AuthError struct {
	Where
	User    string   `json:"user"`
	KeyFile string   `json:"keyFile,omitempty"` // the key file offered; "" when the agent was used
	Agent   string   `json:"agent,omitempty"`   // the agent socket, when used
	Keys    []string `json:"keys,omitempty"`    // the keys offered, "TYPE SHA256:..."
	Err     error    `json:"-"`
}

func (e *AuthError) Error() string {
	var offered, add string
	switch {
	case e.KeyFile != "":
		offered = fmt.Sprintf("key file %s (%s)", e.KeyFile, strings.Join(e.Keys, ""))
		add = fmt.Sprintf("add its public key (ssh-keygen -y -f %s) to ~%s/.ssh/authorized_keys on the %s", e.KeyFile, e.User, e.role())
	case len(e.Keys) == 0:
		return fmt.Sprintf("ssh to %s: the ssh-agent at SSH_AUTH_SOCK=%s holds no keys "+
			"(fix: load the cluster's SSH private key into the worker's agent with ssh-add, or set ssh.keyFile)", e.Where, e.Agent)
	default:
		offered = fmt.Sprintf("the %d key(s) in the ssh-agent at SSH_AUTH_SOCK=%s (%s)", len(e.Keys), e.Agent, strings.Join(e.Keys, ", "))
		add = fmt.Sprintf("add the cluster's SSH public key to ~%s/.ssh/authorized_keys on the %s, or load the matching private key into the agent", e.User, e.role())
	}
	return fmt.Sprintf("ssh to %s: user %s was refused with %s (fix: %s; or set %s to the user and ssh.keyFile to the key kops installed: "+
		"kops gives user %s the cluster's SSH key (kops create sshpublickey) on its Ubuntu images)",
		e.Where, e.User, offered, add, e.userField(), DefaultUser)
}

func (e *AuthError) Unwrap() error { return e.Err }

func (e *AuthError) role() string {
	if e.AtJump {
		return "jump host"
	}
	return "master"
}

func (e *AuthError) userField() string {
	if e.AtJump {
		return "the user in ssh.jump (user@host)"
	}
	return "ssh.user"
}

// UnreachableError: no SSH connection could be made (TCP refused or timed
// out, sshd hung up during the handshake), or an established one broke.
// It is the one retryable error.
type UnreachableError struct {
	Where
	Lost bool  `json:"lost,omitempty"` // an established connection broke
	Err  error `json:"-"`
}

func (e *UnreachableError) Error() string {
	if e.Lost {
		return fmt.Sprintf("ssh to %s: connection lost: %v (retrying will reconnect)", e.Where, e.Err)
	}
	_, port, _ := net.SplitHostPort(e.host())
	from := "this worker"
	if e.Jump != "" && !e.AtJump {
		from = "the jump host"
	}
	return fmt.Sprintf("ssh to %s: cannot connect: %v (retrying may help; otherwise check that the instance runs, "+
		"that sshd listens on port %s and that security groups let %s reach it)", e.Where, e.Err, port, from)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// SocketError: connected, but the socket could not be opened: sshd would
// not connect to it, or (Sudo) the relay could not.
type SocketError struct {
	Where
	Path string `json:"path"`
	User string `json:"user"`
	// Prohibited: sshd said it does not forward unix sockets at all.
	// OpenSSH does not say so: it answers "open failed" both for a
	// missing socket and for AllowStreamLocalForwarding no.
	Prohibited bool `json:"prohibited,omitempty"`
	// Sudo: the socket was to be opened by the relay under sudo
	// (Config.UsesSudo), not by sshd.
	Sudo bool `json:"sudo,omitempty"`
	// Problem says why the relay could not run: ProblemSudoPassword,
	// ProblemNoSudo or ProblemNoPython; "" when it ran and the socket
	// itself failed.
	Problem string `json:"problem,omitempty"`
	// Reason is sshd's answer, e.g. "open failed", or the relay's stderr
	// and exit status.
	Reason string `json:"reason"`
}

// The relay's problems (SocketError.Problem).
const (
	ProblemSudoPassword = "sudo-password" // sudo -n: "a password is required"
	ProblemNoSudo       = "no-sudo"       // no sudo on the master
	ProblemNoPython     = "no-python3"    // no python3 on the master
)

func (e *SocketError) Error() string {
	allow := "AllowStreamLocalForwarding yes (and no DisableForwarding) in /etc/ssh/sshd_config, then sudo systemctl reload ssh"
	asRoot := "or set ssh.user to root if root may log in with the cluster's key"
	switch {
	case e.Problem == ProblemSudoPassword:
		return fmt.Sprintf("ssh to %s: user %s may not use sudo without a password, and kopsdr opens unix socket %s as root "+
			"through sudo -n (it said %q) (fix: allow user %s passwordless sudo on the master, as kops's images do for ubuntu: "+
			"echo '%s ALL=(ALL) NOPASSWD:ALL' | sudo tee /etc/sudoers.d/90-kopsdr; %s)",
			e.Where, e.User, e.Path, e.Reason, e.User, e.User, asRoot)
	case e.Problem == ProblemNoSudo:
		return fmt.Sprintf("ssh to %s: sudo is not installed on the master, and kopsdr opens unix socket %s as root through sudo "+
			"because user %s may not (the shell said %q) (fix: install sudo and allow user %s passwordless sudo; %s)",
			e.Where, e.Path, e.User, e.Reason, e.User, asRoot)
	case e.Problem == ProblemNoPython:
		return fmt.Sprintf("ssh to %s: python3 is not installed on the master, and kopsdr's relay to unix socket %s runs on it "+
			"(sudo said %q) (fix: install python3 on the master (kops's images have it: cloud-init needs it); "+
			"or set ssh.user to root and ssh.sudo to false, so that sshd opens the socket itself)",
			e.Where, e.Path, e.Reason)
	case e.Sudo:
		return fmt.Sprintf("ssh to %s: cannot open unix socket %s on the master as root: the relay says %q "+
			"(fix: on the master check that containerd runs (sudo systemctl status containerd) and listens on %s)",
			e.Where, e.Path, e.Reason, e.Path)
	case e.Prohibited:
		return fmt.Sprintf("ssh to %s: sshd refuses to forward unix socket %s: %s (fix: on the master set %s)",
			e.Where, e.Path, e.Reason, allow)
	}
	return fmt.Sprintf("ssh to %s: cannot open unix socket %s on the master: sshd says %q "+
		"(fix: on the master check that containerd runs (sudo systemctl status containerd) and listens on %s; "+
		"that user %s may open the socket, since sshd connects to it as that user (kops's containerd socket is root's alone: "+
		"leave ssh.sudo unset or set it to true, so that kopsdr opens it through sudo); "+
		"and that sshd allows it: %s. The master's sshd log names the cause: sudo journalctl -u ssh)",
		e.Where, e.Path, e.Reason, e.Path, e.User, allow)
}
