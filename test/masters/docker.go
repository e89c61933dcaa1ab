package masters

import (
	"bytes"
	"context"
	"sort"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/kopsdr/kopsdr/test/loopback"
)

// Container is the name of the current container of etcdCluster's
// etcd-manager pod on node (the newest attempt).
func (c *Cluster) Container(t testing.TB, node, etcdCluster string) string {
	t.Helper()
	c.checkCluster(t, etcdCluster)
	want := "etcd-manager-" + etcdCluster + "-" + node
	for _, p := range c.kubelet.snapshot() {
		if p.name == want {
			return p.currentName
		}
	}
	t.Fatalf("masters: no %s pod on node %q", etcdCluster, node)
	return ""
}

// Containers are the names of all current etcd-manager containers, main
// and events, sorted.
func (c *Cluster) Containers(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, p := range c.kubelet.snapshot() {
		names = append(names, p.currentName)
	}
	sort.Strings(names)
	return names
}

// RestartCount says how many times the pod of container (any attempt's
// name, the name without its attempt, or the pod name) was restarted:
// every container start after its first, whether the kubelet started a
// replacement or Docker restarted a container in place. It counts Docker
// "start" events, so it includes starts made by anyone, kopsdr included.
func (c *Cluster) RestartCount(t testing.TB, container string) int {
	t.Helper()
	p := c.kubelet.findPod(container)
	if p == nil {
		t.Fatalf("masters: no pod for container %q", container)
	}
	// Events arrive asynchronously; give a start that just happened a
	// moment to be counted.
	time.Sleep(200 * time.Millisecond)
	c.kubelet.mu.Lock()
	defer c.kubelet.mu.Unlock()
	return p.starts - 1
}

// Timeline lists the containers' starts and deaths as Docker reported
// them, with times, for test logs.
func (c *Cluster) Timeline() string { return c.kubelet.timeline() }

// StopMaster takes node down: its containers are stopped and the kubelet
// starts no replacement until StartMaster (a master that is off).
func (c *Cluster) StopMaster(t testing.TB, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range c.nodePods(t, node) {
		// No kubelet check may be starting a container meanwhile.
		p.work.Lock()
		c.kubelet.mu.Lock()
		p.stopped = true
		id := p.current
		c.kubelet.mu.Unlock()
		timeout := 5
		err := c.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout})
		p.work.Unlock()
		if err != nil {
			t.Fatalf("masters: stop %s: %v", p.name, err)
		}
	}
}

// StartMaster brings a stopped node back: the kubelet starts new containers.
func (c *Cluster) StartMaster(t testing.TB, node string) {
	t.Helper()
	for _, p := range c.nodePods(t, node) {
		c.kubelet.mu.Lock()
		p.stopped = false
		c.kubelet.mu.Unlock()
		select {
		case c.kubelet.wake <- p:
		default: // the periodic check starts it
		}
	}
}

// Reboot is what an EC2 reboot does to node's etcd-manager: its
// containers stop, and after downFor (the boot) the kubelet starts new ones.
func (c *Cluster) Reboot(t testing.TB, node string, downFor time.Duration) {
	t.Helper()
	c.StopMaster(t, node)
	time.Sleep(downFor)
	c.StartMaster(t, node)
}

func (c *Cluster) nodePods(t testing.TB, node string) []*pod {
	t.Helper()
	var pods []*pod
	for _, p := range c.kubelet.snapshotPods() {
		if p.name == "etcd-manager-"+Main+"-"+node || p.name == "etcd-manager-"+Events+"-"+node {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		t.Fatalf("masters: no node %q", node)
	}
	return pods
}

// Logs is the output of the current container of etcdCluster on node.
func (c *Cluster) Logs(t testing.TB, node, etcdCluster string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.containerLogs(ctx, c.Container(t, node, etcdCluster), "all")
}

// containerLogs is a container's stdout and stderr, interleaved as well as
// Docker's multiplexed stream allows; errors are returned as text.
func (c *Cluster) containerLogs(ctx context.Context, name, tail string) string {
	rc, err := c.cli.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: tail})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		out.WriteString("(reading logs: " + err.Error() + ")")
	}
	return out.String()
}

// UnreachableDockerHost is a DOCKER_HOST URL where no engine answers (a
// loopback port that refuses connections for the whole test), for tests of
// a master whose daemon is down.
func UnreachableDockerHost(t testing.TB) string {
	t.Helper()
	return "tcp://" + loopback.Refused(t)
}
