package sshdial

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Validate checks the syntax of c without touching the network or the
// files it names, so a starter can refuse bad input before a workflow
// runs. Errors are *inputerr.Error naming the JSON field.
func (c Config) Validate() error {
	if c.Address == "" {
		return inputerr.New("ssh.address", "", "set ssh.address to the master's IP or DNS name, e.g. 10.0.1.10 or 10.0.1.10:22")
	}
	if strings.Contains(c.Address, "@") {
		return inputerr.New("ssh.address", c.Address, "put the user in ssh.user; ssh.address is host or host:port")
	}
	if _, _, err := splitHostPort(c.Address); err != nil {
		return inputerr.Wrap(err, "ssh.address", c.Address, "give the master's sshd as host or host:port, e.g. 10.0.1.10 or ip-10-0-1-10.ec2.internal:22")
	}
	if c.User != "" && !userRE.MatchString(c.User) {
		return inputerr.New("ssh.user", c.User, "give a login name such as ubuntu (the default), or leave ssh.user empty")
	}
	if c.Jump != "" {
		user, hostport, hasUser := splitUser(c.Jump)
		if hasUser && !userRE.MatchString(user) {
			return inputerr.Wrap(fmt.Errorf("bad user %q", user), "ssh.jump", c.Jump, "give the jump host as [user@]host[:port], e.g. ubuntu@bastion.example.com")
		}
		if _, _, err := splitHostPort(hostport); err != nil {
			return inputerr.Wrap(err, "ssh.jump", c.Jump, "give the jump host as [user@]host[:port], e.g. ubuntu@bastion.example.com")
		}
	}
	// JSON does not expand "~", and the worker's home is not the
	// operator's: a path starting with it would never be found.
	for _, f := range []struct{ field, path string }{{"ssh.keyFile", c.KeyFile}, {"ssh.knownHosts", c.KnownHosts}} {
		if strings.HasPrefix(f.path, "~") {
			return inputerr.New(f.field, f.path, "give an absolute path on the worker; \"~\" is not expanded")
		}
	}
	return nil
}

// userRE is a conservative login name: what useradd accepts, and what is
// safe to show in a shell command in our messages.
var userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)

// hostRE is a DNS name or IPv4 address: letters, digits, '-', '_' and
// dots, no leading or trailing '-' or '.'.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$`)

// splitHostPort accepts host, host:port, [ipv6]:port, [ipv6] and a bare
// ipv6 address; the port defaults to 22.
func splitHostPort(s string) (host, port string, err error) {
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host, port = s[1:len(s)-1], "22"
	case strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
		host, port = s, "22" // bare IPv6
	case strings.Contains(s, ":"):
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", "", err
		}
	default:
		host, port = s, "22"
	}
	if strings.Contains(host, ":") {
		if net.ParseIP(host) == nil {
			return "", "", fmt.Errorf("%q is not an IPv6 address", host)
		}
	} else if !hostRE.MatchString(host) || strings.Contains(host, "..") {
		return "", "", fmt.Errorf("%q is not a host name or IP address", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", errors.New("port must be a number from 1 to 65535")
	}
	return host, port, nil
}

// splitUser splits [user@]hostport.
func splitUser(s string) (user, hostport string, hasUser bool) {
	if u, h, ok := strings.Cut(s, "@"); ok {
		return u, h, true
	}
	return "", s, false
}
