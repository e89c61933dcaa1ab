package cmasters

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"

	"github.com/kopsdr/kopsdr/test/containerdtest"
)

// PodName is the kubelet's name of etcdCluster's etcd-manager pod on node.
func PodName(etcdCluster, node string) string { return "etcd-manager-" + etcdCluster + "-" + node }

// pod is the kubelet's view of etcdCluster's pod on node.
func (c *Cluster) pod(t testing.TB, node, etcdCluster string) containerdtest.PodView {
	t.Helper()
	c.checkCluster(t, etcdCluster)
	v, ok := c.Kubelet.Pod(PodName(etcdCluster, node))
	if !ok {
		t.Fatalf("cmasters: no %s pod on node %q", etcdCluster, node)
	}
	return v
}

func (c *Cluster) checkCluster(t testing.TB, etcdCluster string) {
	t.Helper()
	if etcdCluster != Main && etcdCluster != Events {
		t.Fatalf("cmasters: etcd cluster %q: want %q or %q", etcdCluster, Main, Events)
	}
}

// ContainerID is the ID of the current container of etcdCluster's pod on
// node (the newest attempt).
func (c *Cluster) ContainerID(t testing.TB, node, etcdCluster string) string {
	t.Helper()
	return c.pod(t, node, etcdCluster).Current
}

// ContainerIDs are the IDs of every container the pod has had, oldest
// first; a new one per attempt.
func (c *Cluster) ContainerIDs(t testing.TB, node, etcdCluster string) []string {
	t.Helper()
	return c.pod(t, node, etcdCluster).IDs
}

// Attempt is the attempt number of the pod's current container: 0 at
// first, one more per replacement.
func (c *Cluster) Attempt(t testing.TB, node, etcdCluster string) int {
	t.Helper()
	return c.pod(t, node, etcdCluster).Attempt
}

// CurrentIDs are the current containers of every pod, main and events,
// sorted.
func (c *Cluster) CurrentIDs() []string {
	var ids []string
	for _, p := range c.Kubelet.Pods() {
		ids = append(ids, p.Current)
	}
	sort.Strings(ids)
	return ids
}

// Kills is how many kill requests for container id reached containerd
// through ContainerdSocket.
func (c *Cluster) Kills(id string) int { return c.Proxy.Kills(id) }

// AllKills is every container's kill count through ContainerdSocket.
func (c *Cluster) AllKills() map[string]int { return c.Proxy.AllKills() }

// Running reports whether container id's task runs.
func (c *Cluster) Running(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Daemon.Tasks().Get(containerdtest.NS(ctx), &tasksapi.GetRequest{ContainerID: id})
	return err == nil && got.GetProcess().GetStatus() == task.Status_RUNNING
}

// Timeline lists the containers' starts, exits and kills with times.
func (c *Cluster) Timeline() string { return c.Kubelet.Timeline() }

// Kill sends sig to the current etcd-manager of etcdCluster on node,
// directly (not through ContainerdSocket, so it is not counted): SIGKILL
// as `crictl stop -t 0` or a crash would, SIGTERM as a graceful stop.
func (c *Cluster) Kill(t testing.TB, node, etcdCluster string, sig syscall.Signal) string {
	t.Helper()
	id := c.ContainerID(t, node, etcdCluster)
	c.Kubelet.Notef("test: signal %d to %s on %s", sig, PodName(etcdCluster, node), node)
	c.signal(t, id, sig)
	return id
}

func (c *Cluster) signal(t testing.TB, id string, sig syscall.Signal) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Daemon.Tasks().Kill(containerdtest.NS(ctx), &tasksapi.KillRequest{ContainerID: id, Signal: uint32(sig), All: true}); err != nil {
		t.Fatalf("cmasters: signal %s: %v", id, err)
	}
}

// StopMaster takes node down: its kubelet stops replacing containers and
// its etcd-managers are stopped (SIGTERM), until StartMaster.
func (c *Cluster) StopMaster(t testing.TB, node string) {
	t.Helper()
	c.Kubelet.Pause(node)
	for _, ec := range []string{Main, Events} {
		c.signal(t, c.ContainerID(t, node, ec), syscall.SIGTERM)
	}
}

// StartMaster brings a stopped node back: its kubelet replaces the
// stopped containers.
func (c *Cluster) StartMaster(t testing.TB, node string) {
	t.Helper()
	c.Kubelet.Resume(node)
}

// Logs is the output of the current container of etcdCluster on node.
func (c *Cluster) Logs(t testing.TB, node, etcdCluster string) string {
	t.Helper()
	b, err := os.ReadFile(c.pod(t, node, etcdCluster).LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// logOnFailure logs the timeline and every pod's current log when the
// test failed, or always with KOPSDR_MASTERS_LOGS=1.
func (c *Cluster) logOnFailure(t testing.TB) {
	if !t.Failed() && os.Getenv("KOPSDR_MASTERS_LOGS") != "1" {
		return
	}
	t.Logf("cmasters: timeline:\n%s", c.Timeline())
	for _, p := range c.Kubelet.Pods() {
		// Every attempt's log, not only the current one's: the cause is
		// often in an attempt that exited before (the kubelet keeps them
		// as 0.log, 1.log, ... beside the current one).
		for attempt := 0; attempt <= p.Attempt; attempt++ {
			path := filepath.Join(filepath.Dir(p.LogPath), strconv.Itoa(attempt)+".log")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Logf("cmasters: log of %s attempt %d: %v", p.Name, attempt, err)
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			t.Logf("cmasters: log of %s attempt %d (last lines):\n%s", p.Name, attempt, strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}
}
