package restart_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/containerdtest"
)

// ctrd is one test's containerd: a real daemon, the sleeper image, a
// kubelet stand-in and the proxy kopsdr talks through, which counts what
// kopsdr asks containerd to do.
type ctrd struct {
	d     *containerdtest.Daemon
	k     *containerdtest.Kubelet
	proxy *containerdtest.Proxy
	img   containerdtest.Image
}

func startCtrd(t *testing.T) *ctrd {
	t.Helper()
	d := containerdtest.Start(t)
	bin := containerdtest.BuildStatic(t, sleeperPkg)
	c := &ctrd{d: d, img: d.ImportImage(t, "kopsdr.test/sleeper:latest", map[string]string{"/sleeper": bin}, "/sleeper")}
	c.k = d.NewKubelet(t, 300*time.Millisecond)
	c.proxy = d.NewProxy(t, c.k)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("timeline:\n%s", c.k.Timeline())
		}
	})
	return c
}

// target reaches node's containers through the proxy.
func (c *ctrd) target(node string) restart.Target {
	return restart.Target{Master: node, Endpoint: c.proxy.Endpoint(), Runtime: restart.RuntimeContainerd}
}

// pod runs etcdCluster's etcd-manager pod on node and returns its first
// container's ID once it runs.
func (c *ctrd) pod(t *testing.T, etcdCluster, node string) string {
	t.Helper()
	p, err := c.k.Run(containerdtest.PodSpec{Node: node, Name: "etcd-manager-" + etcdCluster + "-" + node, Container: "etcd-manager", Image: c.img})
	if err != nil {
		t.Fatal(err)
	}
	return c.waitAttempt(t, p.Spec.Name, 0)
}

// waitAttempt waits until pod's current container is attempt and runs.
func (c *ctrd) waitAttempt(t *testing.T, pod string, attempt int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := c.k.Pod(pod)
		if v.Attempt == attempt && c.running(v.Current) {
			return v.Current
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: attempt %d never ran (now %d)", pod, attempt, v.Attempt)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *ctrd) running(id string) bool {
	got, err := c.d.Tasks().Get(containerdtest.NS(context.Background()), &tasksapi.GetRequest{ContainerID: id})
	return err == nil && got.GetProcess().GetStatus() == task.Status_RUNNING
}

// kill kills a container's task directly (not through the proxy), as an
// earlier attempt whose kill reached containerd would have.
func (c *ctrd) kill(t *testing.T, id string) {
	t.Helper()
	_, err := c.d.Tasks().Kill(containerdtest.NS(context.Background()), &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true})
	if err != nil {
		t.Fatal(err)
	}
}

// noStarts fails t if kopsdr asked containerd to create or start anything.
func (c *ctrd) noStarts(t *testing.T) {
	t.Helper()
	for _, m := range []string{containerdtest.MethodTaskStart, containerdtest.MethodTaskCreate, containerdtest.MethodContainerCreate} {
		if n := c.proxy.Calls(m); n != 0 {
			t.Errorf("kopsdr called %s %d times; it must leave creating and starting to the kubelet", m, n)
		}
	}
}

// fastCtrd waits less than production does; the kubelet stand-in replaces
// within a second.
func fastCtrd(timeout time.Duration) restart.Restarter {
	return restart.NewContainerd(nil, restart.WithTimeout(timeout), restart.WithPoll(100*time.Millisecond))
}

// criName is the CRI plugin's name of a container of a pod made by c.k.
func (c *ctrd) criName(pod string, attempt int) string {
	v, _ := c.k.Pod(pod)
	return fmt.Sprintf("etcd-manager_%s_kube-system_%s_%d", pod, v.UID, attempt)
}
