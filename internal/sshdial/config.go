// Package sshdial reaches a socket on a kops master over SSH: it opens an
// SSH connection (optionally through a jump host, the kops bastion) and
// forwards connections to a unix socket on the master, as OpenSSH's
// streamlocal forwarding (ssh -L local:/run/containerd/containerd.sock)
// does, or, for a login user other than root, through a relay that opens
// the socket as root under sudo (Config.UsesSudo). Host keys are always
// verified against a known_hosts file.
//
// Dial opens a Client; Client.DialUnix forwards one connection. DialSocket
// does both for a conn that owns its SSH connection, and SocketDialer
// wraps it for grpc.WithContextDialer (the containerd client).
//
// Failures an operator must act on are typed and say what to do:
// *HostKeyError, *AuthError, *SocketError and *inputerr.Error for a bad
// Config. *UnreachableError is the one Retryable error.
package sshdial

import "cmp"

// Config says how to reach one master. It holds paths, never key
// material, because it travels in workflow inputs and history.
type Config struct {
	// Address is the master's sshd, host:port (port 22 when omitted).
	Address string `json:"address"`
	// User logs in; default DefaultUser (kops's default Ubuntu images).
	User string `json:"user,omitempty"`
	// KeyFile is a private key file on the worker. Empty: use the SSH
	// agent at $SSH_AUTH_SOCK.
	KeyFile string `json:"keyFile,omitempty"`
	// KnownHosts is the known_hosts file on the worker that must hold the
	// master's (and the jump host's) key; default ~/.ssh/known_hosts.
	KnownHosts string `json:"knownHosts,omitempty"`
	// Jump is an optional jump host, [user@]host[:port] (the kops
	// bastion); it uses the same key and known_hosts.
	Jump string `json:"jump,omitempty"`
	// Sudo: open the socket as root through `sudo -n` on the master;
	// needed when the login user is not root, as on kops's images, whose
	// containerd socket only root may open. Unset (the default) means
	// true unless the user is root; see UsesSudo.
	Sudo *bool `json:"sudo,omitempty"`
}

// UsesSudo reports whether DialUnix opens sockets through the sudo relay
// (see Client.DialUnix) rather than sshd's own forwarding, which opens
// the socket as the login user. Sudo decides when set; otherwise every
// user but root does, because kops's default user (ubuntu) cannot open
// the containerd socket itself, and root needs no sudo.
func (c Config) UsesSudo() bool {
	if c.Sudo != nil {
		return *c.Sudo
	}
	return cmp.Or(c.User, DefaultUser) != "root"
}

// DefaultUser is the login user of kops's default images (Ubuntu).
const DefaultUser = "ubuntu"
