package masters_test

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// TestKubeletEmulation pins down how containers come back, which kopsdr's
// restart logic relies on: a killed container is replaced by a new one
// (attempt+1) on the same endpoint, a container Docker restarts in place
// is left alone, and a stopped master stays down until started again.
//
// The waits bound a failure, they time nothing: on a loaded machine (CI)
// Docker took 17-19 s to answer an inspect, and one replacement more than
// 30 s to serve.
func TestKubeletEmulation(t *testing.T) {
	const serveWait = 2 * time.Minute
	c := masters.Start(t, masters.Options{})
	docker := testenv.Docker(t)
	ctx := testenv.Context(t, 8*time.Minute)
	a, b := c.Masters[0], c.Masters[1]

	// Restarted in place by Docker: running again before the kubelet looks.
	if err := docker.ContainerRestart(ctx, a.MainContainer, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, serveWait, "main on master a to serve again", func() bool { return c.ServesWithMembers(c.MainEndpoints[0]) == nil })
	time.Sleep(3 * time.Second) // longer than the kubelet's delay and its periodic check
	if got := c.Container(t, a.Node, masters.Main); got != a.MainContainer {
		t.Errorf("after ContainerRestart the current container is %s, want %s still", got, a.MainContainer)
	}
	if n := c.RestartCount(t, a.MainContainer); n != 1 {
		t.Errorf("RestartCount after one ContainerRestart = %d, want 1", n)
	}

	// Killed: replaced by attempt 1, the dead one kept, same endpoint.
	if err := docker.ContainerKill(ctx, b.EventsContainer, "KILL"); err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(b.EventsContainer, "_0") + "_1"
	waitFor(t, serveWait, want+" to serve", func() bool {
		return c.Container(t, b.Node, masters.Events) == want && c.ServesWithMembers(c.EventsEndpoints[1]) == nil
	})
	old, err := docker.ContainerInspect(ctx, b.EventsContainer)
	if err != nil {
		t.Fatalf("the dead container should be kept, as the kubelet keeps it: %v", err)
	}
	if old.State.Running || old.State.ExitCode != 137 {
		t.Errorf("killed container: running %v, exit code %d; want exited with 137", old.State.Running, old.State.ExitCode)
	}
	if n := c.RestartCount(t, want); n != 1 {
		t.Errorf("RestartCount after one kill = %d, want 1", n)
	}

	// A stopped master stays down until it is started.
	c.StopMaster(t, b.Node)
	time.Sleep(3 * time.Second)
	if got := c.Container(t, b.Node, masters.Main); got != b.MainContainer {
		t.Errorf("a stopped master's container was replaced by %s", got)
	}
	if c.ServesWithMembers(c.MainEndpoints[1]) == nil {
		t.Error("a stopped master still serves")
	}
	c.StartMaster(t, b.Node)
	waitFor(t, serveWait, "master b to serve again", func() bool {
		return c.ServesWithMembers(c.MainEndpoints[1]) == nil && c.ServesWithMembers(c.EventsEndpoints[1]) == nil
	})
	t.Logf("container timeline:\n%s", c.Timeline())
}
