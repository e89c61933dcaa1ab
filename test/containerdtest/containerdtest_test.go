package containerdtest_test

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kopsdr/kopsdr/test/containerdtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	containerdtest.RemoveBuilt()
	os.Exit(code)
}

// TestKubeletReplacesKilledTask pins down what the restarter relies on: a
// container whose task is killed through containerd is replaced by a new
// container (new ID, next attempt) with the same CRI labels, unless the
// node's kubelet is paused; and the proxy counts the kills it passed on.
func TestKubeletReplacesKilledTask(t *testing.T) {
	d := containerdtest.Start(t)
	bin := containerdtest.BuildStatic(t, "./internal/restart/testdata/sleeper")
	img := d.ImportImage(t, "kopsdr.test/sleeper:1", map[string]string{"/sleeper": bin}, "/sleeper")
	k := d.NewKubelet(t, 300*time.Millisecond)
	proxy := d.NewProxy(t, k)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("timeline:\n%s", k.Timeline())
		}
	}()

	pod, err := k.Run(containerdtest.PodSpec{Node: "n1", Name: "etcd-manager-main-n1", Container: "etcd-manager", Image: img})
	if err != nil {
		t.Fatal(err)
	}
	first := waitAttempt(t, d, k, pod.Spec.Name, 0)

	cs, err := d.Containers().Get(containerdtest.NS(context.Background()), &containersapi.GetContainerRequest{ID: first})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		containerdtest.LabelPodName: "etcd-manager-main-n1", containerdtest.LabelPodNamespace: "kube-system",
		containerdtest.LabelContainerName: "etcd-manager", containerdtest.LabelPodUID: pod.UID,
	} {
		if got := cs.GetContainer().GetLabels()[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}

	// Killed through the proxy, as kopsdr would: replaced by attempt 1.
	kill(t, proxy, first)
	second := waitAttempt(t, d, k, pod.Spec.Name, 1)
	if second == first {
		t.Fatal("the replacement has the killed container's ID")
	}
	if n := proxy.Kills(first); n != 1 {
		t.Errorf("proxy counted %d kills of %s, want 1", n, first)
	}
	if n := proxy.Calls(containerdtest.MethodTaskStart); n != 0 {
		t.Errorf("proxy saw %d task starts; only the kubelet starts tasks, directly", n)
	}
	view, _ := k.Pod(pod.Spec.Name)
	waitFor(t, "the log of attempt 1", func() bool {
		log, _ := os.ReadFile(view.LogPath)
		return strings.Contains(string(log), "stderr last line")
	})

	// A paused kubelet replaces nothing until resumed.
	k.Pause("n1")
	kill(t, proxy, second)
	time.Sleep(1500 * time.Millisecond)
	if v, _ := k.Pod(pod.Spec.Name); v.Current != second {
		t.Fatalf("a paused kubelet replaced %s by %s", second, v.Current)
	}
	k.Resume("n1")
	waitAttempt(t, d, k, pod.Spec.Name, 2)

	// A lost kill reaches nothing.
	proxy.DropKills(1)
	third, _ := k.Pod(pod.Spec.Name)
	cli := tasksapi.NewTasksClient(dialProxy(t, proxy))
	_, err = cli.Kill(containerdtest.NS(context.Background()), &tasksapi.KillRequest{ContainerID: third.Current, Signal: uint32(syscall.SIGKILL), All: true})
	if err == nil || proxy.Dropped() != 1 || proxy.Kills(third.Current) != 0 {
		t.Fatalf("dropped kill: err %v, dropped %d, counted %d", err, proxy.Dropped(), proxy.Kills(third.Current))
	}
}

// waitAttempt waits until the pod's current container is attempt and its
// task runs, and returns its ID.
func waitAttempt(t *testing.T, d *containerdtest.Daemon, k *containerdtest.Kubelet, pod string, attempt int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := k.Pod(pod)
		if v.Attempt == attempt {
			got, err := d.Tasks().Get(containerdtest.NS(context.Background()), &tasksapi.GetRequest{ContainerID: v.Current})
			if err == nil && got.GetProcess().GetStatus() == task.Status_RUNNING {
				return v.Current
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: attempt %d never ran (now attempt %d)", pod, attempt, v.Attempt)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func kill(t *testing.T, p *containerdtest.Proxy, id string) {
	t.Helper()
	cli := tasksapi.NewTasksClient(dialProxy(t, p))
	if _, err := cli.Kill(containerdtest.NS(context.Background()), &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		t.Fatalf("kill %s: %v", id, err)
	}
}

func dialProxy(t *testing.T, p *containerdtest.Proxy) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
