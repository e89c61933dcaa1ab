package restart

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// Runtimes is the Restarter of a restore whose masters may run different
// runtimes: it hands each call to the implementation of the target's
// runtime. A runtime left nil is refused, naming the master.
type Runtimes struct {
	Docker     Restarter
	Containerd Restarter
	Reboot     Restarter
}

func (rs Runtimes) pick(t Target) (Restarter, error) {
	var r Restarter
	switch t.RuntimeOf() {
	case RuntimeDocker:
		r = rs.Docker
	case RuntimeContainerd:
		r = rs.Containerd
	case RuntimeReboot:
		r = rs.Reboot
	}
	if r == nil {
		return nil, fmt.Errorf("%s: this worker cannot restart etcd-manager through runtime %q", masterName(t.Master), t.Runtime)
	}
	return r, nil
}

// Find implements Restarter.
func (rs Runtimes) Find(ctx context.Context, t Target, etcdCluster string) ([]Container, error) {
	r, err := rs.pick(t)
	if err != nil {
		return nil, err
	}
	return r.Find(ctx, t, etcdCluster)
}

// Restart implements Restarter (histories from before the baseline only
// ever had Docker targets).
func (rs Runtimes) Restart(ctx context.Context, t Target, etcdCluster string, since time.Time) (Restarted, error) {
	r, err := rs.pick(t)
	if err != nil {
		return Restarted{}, err
	}
	return r.Restart(ctx, t, etcdCluster, since)
}

// Replace implements Restarter.
func (rs Runtimes) Replace(ctx context.Context, t Target, etcdCluster string, baseline []Container) (Restarted, error) {
	r, err := rs.pick(t)
	if err != nil {
		return Restarted{}, err
	}
	return r.Replace(ctx, t, etcdCluster, baseline)
}

// LogTail implements Restarter.
func (rs Runtimes) LogTail(ctx context.Context, t Target, etcdCluster string, lines int) (string, error) {
	r, err := rs.pick(t)
	if err != nil {
		return "", err
	}
	return r.LogTail(ctx, t, etcdCluster, lines)
}

// SSHConfig is the login to one master: its address, [user@]host[:port]
// (port 22 when omitted), with the user, key, known_hosts and jump host of
// defaults where the address does not say.
func SSHConfig(addr string, defaults sshdial.Config) *sshdial.Config {
	c := defaults
	hostport := addr
	if user, rest, ok := strings.Cut(addr, "@"); ok {
		c.User, hostport = user, rest
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), "22")
	}
	c.Address = hostport
	return &c
}
