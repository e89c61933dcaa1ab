// Package restart restarts the etcd-manager containers on kops masters: the
// step of the restore runbook that makes etcd-manager read a queued restore
// command, because it reads commands only when it starts or gains
// leadership.
//
// Restarter is a seam. Docker (NewDocker) serves masters whose kubelet runs
// containers on Docker; containerd (NewContainerd) serves masters whose
// kubelet runs them through containerd's CRI plugin (kops with Kubernetes
// 1.24 and later), over a connection to the master's containerd socket.
package restart

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// Target is one master's container runtime.
type Target struct {
	// Master is the kubelet's node name (on kops/AWS the instance's private
	// DNS name, e.g. ip-10-0-1-10.ec2.internal). It narrows the match to
	// that node's containers and names the master in messages; "" matches
	// any node, which is right when Endpoint reaches a single master.
	Master string `json:"master,omitempty"`
	// Endpoint is the Docker daemon: unix:///var/run/docker.sock, or
	// tcp://10.0.1.10:2376 for a master's daemon reached over the network.
	// For RuntimeContainerd it is containerd's socket (default
	// DefaultContainerdSocket).
	Endpoint string `json:"endpoint"`
	// TLSCA, TLSCert and TLSKey are PEM file paths on the worker for a tcp
	// endpoint with TLS (Docker's --tlsverify). Paths, not contents, so no
	// key material ends up in workflow history.
	TLSCA   string `json:"tlsCA,omitempty"`
	TLSCert string `json:"tlsCert,omitempty"`
	TLSKey  string `json:"tlsKey,omitempty"`

	// Runtime is how this master's etcd-manager is restarted: RuntimeDocker
	// (also when empty, as in histories older than the field),
	// RuntimeContainerd or RuntimeReboot.
	Runtime string `json:"runtime,omitempty"`
	// SSH reaches a containerd master: Endpoint (unix:///run/containerd/
	// containerd.sock by default) is then a socket on the master, forwarded
	// over SSH. Without SSH a containerd Endpoint is dialled on the worker.
	SSH *sshdial.Config `json:"ssh,omitempty"`
	// InstanceID and Region name the master's EC2 instance, for
	// RuntimeReboot.
	InstanceID string `json:"instanceId,omitempty"`
	Region     string `json:"region,omitempty"`
}

// Runtimes a master's etcd-manager can be restarted through.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeReboot     = "reboot"
)

// DefaultContainerdSocket is where kops masters' containerd listens.
const DefaultContainerdSocket = "unix:///run/containerd/containerd.sock"

// RuntimeOf is t's runtime, RuntimeDocker when unset.
func (t Target) RuntimeOf() string {
	if t.Runtime == "" {
		return RuntimeDocker
	}
	return t.Runtime
}

// Name is how messages and status name the master: its node name, or its
// endpoint when the node name is not given.
func (t Target) Name() string {
	if t.Master != "" {
		return t.Master
	}
	return t.Endpoint
}

// Container is one etcd-manager container as the runtime reports it. Times
// are on the master's clock: they are only ever compared with other times
// the same master reported.
type Container struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	State        string    `json:"state"` // e.g. running, exited, created, restarting
	Created      time.Time `json:"created"`
	StartedAt    time.Time `json:"startedAt"`    // zero if it never started
	Running      bool      `json:"running"`      // running now (a container Docker is restarting is not)
	RestartCount int       `json:"restartCount"` // restarts by the runtime's restart policy
}

// What Restart and Replace did, in Restarted.Action.
const (
	// ActionKilled: kopsdr killed the running container and a new process
	// came up without its help (the kubelet made a new container).
	ActionKilled = "killed"
	// ActionAlreadyRestarted: a container started after `since` (Restart)
	// or proven replaced against the baseline (Replace) was already
	// running (an earlier attempt restarted it, or the kubelet did), or one
	// came up by itself while none was running; kopsdr killed nothing.
	ActionAlreadyRestarted = "already-restarted"
	// ActionStartedByKopsdr: nothing brought a container back within the
	// grace period (no kubelet, and Docker's restart policies ignore a
	// kill), so kopsdr started the stopped container itself.
	ActionStartedByKopsdr = "started-by-kopsdr"
)

// Restarted reports one Restart or Replace. After is the container now
// running. For Restart, Before is the one that was running (killed), or the
// newest stopped one when none was; when a fresh container was already
// running, nothing changed and Before equals After. For Replace, Before is
// the container the baseline saw running (or its newest one), whichever
// attempt killed it, and Proof says why After is not that process.
type Restarted struct {
	Master      string    `json:"master,omitempty"`
	EtcdCluster string    `json:"etcdCluster,omitempty"`
	Before      Container `json:"before"`
	After       Container `json:"after"`
	Action      string    `json:"action"`
	Proof       string    `json:"proof,omitempty"`
	// Killed is the container this call killed, if any (an earlier attempt
	// may have killed Before).
	Killed string `json:"killed,omitempty"`
}

// Restarter finds, restarts and reads the logs of one etcd cluster's
// etcd-manager container on one master. etcdCluster is kops's etcd cluster
// name: "main" or "events".
type Restarter interface {
	// Find returns the containers whose name starts with
	// NamePrefix(etcdCluster, t.Master) (under containerd: whose kubelet
	// labels name container etcd-manager of pod
	// etcd-manager-<etcdCluster>-<t.Master>): running ones first, then
	// newest first. It changes nothing; its result is what Replace takes
	// as the baseline.
	Find(ctx context.Context, t Target, etcdCluster string) ([]Container, error)

	// Restart makes a fresh etcd-manager process run, idempotently: if a
	// matching container that started after since is running, it does
	// nothing. Otherwise it kills the running container with SIGKILL and
	// waits (bounded) for a matching container started after the kill; if
	// none comes within a short grace period it starts the killed container
	// itself. since is on the worker's clock; it is compared with the
	// master's clock after correcting for the difference between the two.
	//
	// Deprecated: the clock correction is an estimate; use Replace. Kept
	// for restores whose history predates the baseline.
	Restart(ctx context.Context, t Target, etcdCluster string, since time.Time) (Restarted, error)

	// Replace makes a process run that is proven not to be one of the
	// baseline's (what Find returned after the restore command was
	// written): a running container whose ID is not in the baseline, or
	// whose StartedAt is later than the baseline's StartedAt for that ID.
	// Every time on both sides of that comparison is the master's, so no
	// clock correction is involved. Anything not proven is killed
	// (SIGKILL) and the replacement proven the same way; under Docker, if
	// no kubelet brings one within the grace period, kopsdr starts the
	// stopped container itself (under containerd it never does: the
	// container is the kubelet's, and Replace fails naming what to check).
	// It never lets two matching containers run at once and never trusts
	// what an earlier call did: a retry proves again.
	Replace(ctx context.Context, t Target, etcdCluster string, baseline []Container) (Restarted, error)

	// LogTail returns the last lines of the newest matching container's
	// log (stdout and stderr interleaved as written).
	LogTail(ctx context.Context, t Target, etcdCluster string, lines int) (string, error)
}

// Proven reports whether c is a process started after the baseline was
// taken, and says why: a container the baseline did not have, or one it
// had that has started again since (Docker keeps the ID across a start).
// c must be running to count.
func Proven(c Container, baseline []Container) (string, bool) {
	if !c.Running {
		return "", false
	}
	for _, b := range baseline {
		if b.ID != c.ID {
			continue
		}
		if c.StartedAt.After(b.StartedAt) {
			return fmt.Sprintf("container %s started again at %s, after the baseline's %s (master's clock)",
				shortID(c.ID), c.StartedAt.UTC().Format(time.RFC3339Nano), b.StartedAt.UTC().Format(time.RFC3339Nano)), true
		}
		return "", false
	}
	return fmt.Sprintf("container %s (%s) is not in the baseline: it was created after the restore command was written", shortID(c.ID), c.Name), true
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// namePart is what kops puts into container names: Kubernetes node names
// and etcd cluster names are DNS names, and "_" separates the parts of a
// kubelet container name, so it must not occur inside one.
var namePart = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// NamePrefix is the prefix of the kubelet's Docker container names for an
// etcd cluster's etcd-manager, e.g.
// k8s_etcd-manager_etcd-manager-main-ip-10-0-1-10.ec2.internal_ for master
// ip-10-0-1-10.ec2.internal. The full name is
// k8s_etcd-manager_etcd-manager-<cluster>-<node>_kube-system_<pod uid>_<attempt>.
// The trailing "_" (or "-" when master is "") keeps node ip-10-0-1-1 from
// matching ip-10-0-1-10, and cluster main from matching mainx.
func NamePrefix(etcdCluster, master string) string {
	if master == "" {
		return "k8s_etcd-manager_etcd-manager-" + etcdCluster + "-"
	}
	return "k8s_etcd-manager_etcd-manager-" + etcdCluster + "-" + master + "_"
}

// checkNames rejects names that could not occur in a kops container name,
// which would otherwise just match nothing.
func checkNames(etcdCluster, master string) error {
	if !namePart.MatchString(etcdCluster) {
		return inputerr.New("etcdCluster", etcdCluster, `use kops's etcd cluster name: "main" or "events"`)
	}
	if master != "" && !namePart.MatchString(master) {
		return inputerr.New("master", master,
			"use the master's Kubernetes node name as kubectl get nodes shows it (e.g. ip-10-0-1-10.ec2.internal), or leave it empty")
	}
	return nil
}

// KillGate lines up the kills of several Replace calls: each call arrives
// once it knows what to kill (or that it kills nothing), and none kills
// before all have arrived. A restore's restarts must land together: a
// worker that dies between two kills spreads them over two attempts, and
// a peer restarted after etcd-manager's leader has restored is not
// re-added. With the gate, the kills go out within moments of each other,
// after the slow part (listing and inspecting containers) is done
// everywhere.
type KillGate struct {
	mu   sync.Mutex
	left int
	done chan struct{}
	// once holds what onceFor ran: a restart that serves several calls
	// (one reboot for both etcd clusters of a master) is done once.
	once map[string]*onceResult
}

type onceResult struct {
	once sync.Once
	err  error
}

// NewKillGate expects n calls.
func NewKillGate(n int) *KillGate {
	g := &KillGate{left: n, done: make(chan struct{})}
	if n <= 0 {
		close(g.done)
	}
	return g
}

func (g *KillGate) arrive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.left > 0 {
		g.left--
		if g.left == 0 {
			close(g.done)
		}
	}
}

// wait returns when every call has arrived, or ctx ends.
func (g *KillGate) wait(ctx context.Context) error {
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type killGateKey struct{}

// WithKillGate makes Replace calls under ctx arrive at g before they kill.
func WithKillGate(ctx context.Context, g *KillGate) context.Context {
	return context.WithValue(ctx, killGateKey{}, g)
}

// gateOf returns ctx's gate as arrive (once) and wait functions; without a
// gate both do nothing.
func gateOf(ctx context.Context) (arrive func(), wait func() error) {
	g, _ := ctx.Value(killGateKey{}).(*KillGate)
	if g == nil {
		return func() {}, func() error { return nil }
	}
	var once sync.Once
	return func() { once.Do(g.arrive) }, func() error { once.Do(g.arrive); return g.wait(ctx) }
}

// onceFor runs fn once per key under ctx's kill gate, and every caller
// gets its error; without a gate it just runs fn.
func onceFor(ctx context.Context, key string, fn func() error) error {
	g, _ := ctx.Value(killGateKey{}).(*KillGate)
	if g == nil {
		return fn()
	}
	g.mu.Lock()
	if g.once == nil {
		g.once = map[string]*onceResult{}
	}
	r := g.once[key]
	if r == nil {
		r = &onceResult{}
		g.once[key] = r
	}
	g.mu.Unlock()
	r.once.Do(func() { r.err = fn() })
	return r.err
}
