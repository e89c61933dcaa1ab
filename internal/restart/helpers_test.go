package restart_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/containerdtest"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// The sleeper image is built once per test binary and removed by TestMain.
var (
	imageTag  = fmt.Sprintf("kopsdr-restart-sleeper:test-%d", os.Getpid())
	imageOnce sync.Once
	imageOK   bool
)

// sleeperPkg is the stand-in for etcd-manager in the Docker and the
// containerd tests, built once per test binary.
const sleeperPkg = "./internal/restart/testdata/sleeper"

func TestMain(m *testing.M) {
	code := m.Run()
	if imageOK {
		if cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err == nil {
			_, _ = cli.ImageRemove(context.Background(), imageTag, image.RemoveOptions{Force: true, PruneChildren: true})
			cli.Close()
		}
	}
	containerdtest.RemoveBuilt()
	os.Exit(code)
}

// docker returns the engine's client and a Target for it, building the
// sleeper image on first use.
func docker(t *testing.T) (*client.Client, restart.Target) {
	t.Helper()
	cli := testenv.Docker(t)
	imageOnce.Do(func() {
		bin := containerdtest.BuildStatic(t, sleeperPkg)
		testenv.BuildScratchImage(t, cli, imageTag, map[string]string{"/sleeper": bin}, "/sleeper")
		imageOK = true
	})
	if !imageOK {
		t.Fatal("sleeper image was not built (see the first test's failure)")
	}
	return cli, restart.Target{Endpoint: cli.DaemonHost()}
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// node returns a node name unique to this test run, so that tests match
// only their own containers, and removes every container carrying it when
// the test ends (including ones a simulated kubelet made).
func node(t *testing.T, cli *client.Client) string {
	t.Helper()
	n := "ip-10-" + random(3)
	t.Cleanup(func() { removeAll(t, cli, n) })
	return n
}

func removeAll(t *testing.T, cli *client.Client, substr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", substr))})
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, c := range list {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: remove %v: %v", c.Names, err)
		}
	}
}

// kopsName is a kubelet container name as on a kops master.
func kopsName(cluster, node, podUID string, attempt int) string {
	return fmt.Sprintf("k8s_etcd-manager_etcd-manager-%s-%s_kube-system_%s_%d", cluster, node, podUID, attempt)
}

type spec struct {
	name    string
	policy  container.RestartPolicyMode // "" = no
	args    []string
	noStart bool
}

// run creates (and, unless noStart, starts) a sleeper container.
func run(t *testing.T, cli *client.Client, s spec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{Image: imageTag, Cmd: s.args, Labels: map[string]string{"io.kubernetes.container.name": "etcd-manager"}},
		&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: s.policy}, NetworkMode: "none"},
		nil, nil, s.name)
	if err != nil {
		t.Fatalf("create %s: %v", s.name, err)
	}
	if !s.noStart {
		if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
			t.Fatalf("start %s: %v", s.name, err)
		}
	}
	return resp.ID
}

func inspect(t *testing.T, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return in
}

// kubelet stands in for the kubelet: when the container it watches stops,
// it creates and starts newName (the next attempt of the same pod
// container), once, and reports the new container's id.
func kubelet(t *testing.T, cli *client.Client, id, newName string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	out := make(chan string, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			in, err := cli.ContainerInspect(ctx, id)
			if err == nil && !in.State.Running {
				resp, err := cli.ContainerCreate(ctx, &container.Config{Image: imageTag}, &container.HostConfig{NetworkMode: "none"}, nil, nil, newName)
				if err == nil {
					err = cli.ContainerStart(ctx, resp.ID, container.StartOptions{})
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("kubelet: %v", err)
				}
				out <- resp.ID
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
}

// waitLog waits until the container's log holds want, so log assertions
// do not race the process writing it.
func waitLog(t *testing.T, r restart.Restarter, tg restart.Target, cluster, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		out, err := r.LogTail(ctx, tg, cluster, 0)
		if err == nil && strings.Contains(out, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("log never showed %q (last: %q, %v)", want, out, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}
