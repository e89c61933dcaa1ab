package masters

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/kopsdr/kopsdr/test/testenv"
)

// TestKubeletWorksPodsInParallel: with one pod's replacement stuck in
// Docker (its create held by a proxy), every other pod's container is
// replaced all the same, as each master's kubelet would; the stuck one
// follows once Docker answers. A kubelet that worked pods in turn would
// replace none of those queued behind the stuck one.
func TestKubeletWorksPodsInParallel(t *testing.T) {
	var hold atomic.Bool
	held := make(chan struct{}, 16) // one per create the proxy holds
	release := make(chan struct{})
	stuckPod := "" // set before hold, read by the proxy after
	dockerClient = func(t testing.TB) *client.Client {
		return holdingDocker(t, testenv.Docker(t).DaemonHost(), func(name string) bool {
			return hold.Load() && strings.Contains(name, "_"+stuckPod+"_") && !strings.HasSuffix(name, "_0")
		}, held, release)
	}
	t.Cleanup(func() { dockerClient = testenv.Docker })

	c := Start(t, Options{})
	direct := testenv.Docker(t)
	ctx := testenv.Context(t, 3*time.Minute)
	stuckPod = "etcd-manager-main-" + c.Masters[0].Node
	hold.Store(true)

	// Kill all six; the kubelet replaces each a second later.
	var first []string
	for _, m := range c.Masters {
		first = append(first, m.MainContainer, m.EventsContainer)
	}
	for _, name := range first {
		if err := direct.ContainerKill(ctx, name, "KILL"); err != nil {
			t.Fatalf("kill %s: %v", name, err)
		}
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the stuck pod's replacement was never created")
	}
	replaced := func(p podView) bool {
		if !strings.HasSuffix(p.currentName, "_1") {
			return false
		}
		in, err := direct.ContainerInspect(ctx, p.current)
		return err == nil && in.State.Running
	}
	waitUntil(t, ctx, "the five other pods replaced while one is stuck", func() bool {
		n := 0
		for _, p := range c.kubelet.snapshot() {
			if p.name != stuckPod && replaced(p) {
				n++
			}
		}
		return n == 5
	})
	for _, p := range c.kubelet.snapshot() {
		if p.name == stuckPod && p.currentName != c.Masters[0].MainContainer {
			t.Fatalf("the stuck pod moved on to %s while its create was held", p.currentName)
		}
	}

	close(release)
	waitUntil(t, ctx, "the stuck pod replaced once Docker answers", func() bool {
		for _, p := range c.kubelet.snapshot() {
			if p.name == stuckPod {
				return replaced(p)
			}
		}
		return false
	})
	t.Logf("container timeline:\n%s", c.kubelet.timeline())
}

// holdingDocker is a client of the Docker engine at host through a proxy
// that holds every container create whose name stuck(name) says, until
// release is closed, telling held each time.
func holdingDocker(t testing.TB, host string, stuck func(name string) bool, held chan<- struct{}, release <-chan struct{}) *client.Client {
	t.Helper()
	addr := testenv.DockerProxy(t, strings.TrimPrefix(host, "unix://"), func(_ http.ResponseWriter, req *http.Request) bool {
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/containers/create") && stuck(req.URL.Query().Get("name")) {
			held <- struct{}{}
			select {
			case <-release:
			case <-req.Context().Done():
				return true
			}
		}
		return false
	})
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+addr), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
