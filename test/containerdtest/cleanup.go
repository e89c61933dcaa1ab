package containerdtest

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc/metadata"
)

// cleanup stops everything the daemon runs, then the daemon, and removes
// its folder. Shims outlive containerd, so tasks are killed and deleted
// through the API first; a shim left over anyway (the daemon died) is
// found by the socket it was given and killed by its pid. Failures are
// logged, not fatal: cleanup must get as far as it can.
func (d *Daemon) cleanup(t testing.TB) {
	if t.Failed() || os.Getenv("KOPSDR_CONTAINERD_LOGS") == "1" {
		t.Logf("containerdtest: containerd log (end):\n%s", d.logTail())
	}
	if d.conn != nil {
		d.removeAll(t)
		d.conn.Close()
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exit:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exit
		}
	}
	d.killShims(t)
	unmountUnder(t, d.Dir)
	removeCgroups(d.cgroupParent())
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("containerdtest: remove %s: %v", d.Dir, err)
	}
}

// removeAll kills and deletes every task and deletes every container in
// every namespace.
func (d *Daemon) removeAll(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := d.Namespaces().List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		t.Logf("containerdtest: cleanup: list namespaces: %v", err)
		return
	}
	for _, ns := range nss.GetNamespaces() {
		nctx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", ns.GetName())
		tasks, err := d.Tasks().List(nctx, &tasksapi.ListTasksRequest{})
		if err != nil {
			t.Logf("containerdtest: cleanup: list tasks: %v", err)
		}
		for _, p := range tasks.GetTasks() {
			_, _ = d.Tasks().Kill(nctx, &tasksapi.KillRequest{ContainerID: p.GetID(), Signal: uint32(syscall.SIGKILL), All: true})
			for i := 0; i < 50; i++ { // the task must have exited before Delete
				if _, err := d.Tasks().Delete(nctx, &tasksapi.DeleteTaskRequest{ContainerID: p.GetID()}); err == nil || isNotFound(err) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		cs, err := d.Containers().List(nctx, &containersapi.ListContainersRequest{})
		if err != nil {
			t.Logf("containerdtest: cleanup: list containers: %v", err)
		}
		for _, c := range cs.GetContainers() {
			if _, err := d.Containers().Delete(nctx, &containersapi.DeleteContainerRequest{ID: c.GetID()}); err != nil && !isNotFound(err) {
				t.Logf("containerdtest: cleanup: delete container %s: %v", c.GetID(), err)
			}
		}
	}
}

// killShims kills runc shims started for this daemon (their command line
// names its socket) that are still alive, by pid.
func (d *Daemon) killShims(t testing.TB) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(args[0], "containerd-shim") || !slices.Contains(args, d.Socket) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		t.Logf("containerdtest: killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder detaches every mount below dir, deepest first (rootfs
// bind mounts a shim did not undo).
func unmountUnder(t testing.TB, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Logf("containerdtest: unmount %s: %v", p, err)
		}
	}
}

// cgroupParent is the cgroup under which this daemon's containers run, so
// that cleanup can remove it and concurrent daemons never share one.
func (d *Daemon) cgroupParent() string { return "/kopsdr-containerdtest-" + d.id }

// removeCgroups removes the (by now empty) parent cgroup in every
// hierarchy, cgroup v1 or v2.
func removeCgroups(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	if more, _ := filepath.Glob("/sys/fs/cgroup" + parent); len(more) > 0 {
		dirs = append(dirs, more...)
	}
	for _, dir := range dirs {
		_ = os.Remove(dir)
	}
}
