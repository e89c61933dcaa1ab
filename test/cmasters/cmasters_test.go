package cmasters_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/cmasters"
	"github.com/kopsdr/kopsdr/test/containerdtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	containerdtest.RemoveBuilt()
	os.Exit(code)
}

// TestMastersServeAndKubeletReplaces: three masters' main and events
// clusters serve with three members each, and a killed etcd-manager task
// is replaced by a new container that rejoins on the same endpoint.
func TestMastersServeAndKubeletReplaces(t *testing.T) {
	start := time.Now()
	c := cmasters.Start(t, cmasters.Options{})
	t.Logf("3 masters x {main, events} serving after %s", time.Since(start).Round(time.Millisecond))
	for _, ep := range append(append([]string(nil), c.MainEndpoints...), c.EventsEndpoints...) {
		if err := c.ServesWithMembers(ep); err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
	}
	if len(c.CurrentIDs()) != 6 {
		t.Fatalf("%d containers, want 6", len(c.CurrentIDs()))
	}

	b := c.Masters[1]
	killed := c.Kill(t, b.Node, cmasters.Main, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "attempt 1 of main on master b to serve", func() bool {
		return c.Attempt(t, b.Node, cmasters.Main) == 1 && c.ServesWithMembers(c.MainEndpoints[1]) == nil
	})
	ids := c.ContainerIDs(t, b.Node, cmasters.Main)
	if len(ids) != 2 || ids[0] != killed || ids[1] == killed || c.Running(killed) {
		t.Errorf("containers of the pod: %v; want the killed %s (dead) and a new one", ids, killed)
	}
	if c.Attempt(t, b.Node, cmasters.Events) != 0 {
		t.Error("events on master b was replaced too")
	}
	t.Logf("timeline:\n%s", c.Timeline())
}

// TestReplaceRestoresAllEtcdManagers restores main and events as kopsdr
// does on containerd masters: queue the restore commands, record the
// baseline, then Replace all six etcd-managers at once through the kill
// gate. Each is killed exactly once and replaced by the kubelet, kopsdr
// starts nothing, and the restored data is served with all members.
func TestReplaceRestoresAllEtcdManagers(t *testing.T) {
	// As real etcd-manager (20-35 s), the leader waits for every peer the
	// kubelet stand-in brings back; 2 s could beat a slow replacement on a
	// loaded machine, as it once did for the Docker harness.
	c := cmasters.Start(t, cmasters.Options{RestoreDelay: 10 * time.Second})
	ctx := ctxT(t, 3*time.Minute)

	mainKVs, eventsKVs := map[string]string{}, map[string]string{}
	for i := range 20 {
		mainKVs[fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)] = fmt.Sprintf("v%d", i)
	}
	for i := range 10 {
		eventsKVs[fmt.Sprintf("/registry/events/default/ev-%03d", i)] = fmt.Sprintf("e%d", i)
	}
	c.Seed(t, cmasters.Main, mainKVs)
	c.Seed(t, cmasters.Events, eventsKVs)
	backups := map[string]string{cmasters.Main: c.Backup(t, cmasters.Main), cmasters.Events: c.Backup(t, cmasters.Events)}
	mainCli := c.Client(t, cmasters.Main)
	mustPut(ctx, t, mainCli, "/registry/configmaps/default/cm-000", "changed")
	mustPut(ctx, t, mainCli, "/registry/configmaps/default/after-backup", "x")
	for ec, backup := range backups {
		spec, err := etcdmanager.ReadClusterSpec(ctx, c.Store(t, ec))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcdmanager.WriteRestoreCommand(ctx, c.Store(t, ec), time.Now(), spec, backup); err != nil {
			t.Fatal(err)
		}
	}

	r := restart.NewContainerd(nil)
	type call struct {
		tg   restart.Target
		ec   string
		base []restart.Container
	}
	var calls []call
	for _, tg := range c.Targets() {
		for _, ec := range []string{cmasters.Main, cmasters.Events} {
			base, err := r.Find(ctx, tg, ec)
			if err != nil || len(base) != 1 || !base[0].Running {
				t.Fatalf("baseline of %s on %s: %+v, %v", ec, tg.Master, base, err)
			}
			calls = append(calls, call{tg, ec, base})
		}
	}
	start := time.Now()
	gctx := restart.WithKillGate(ctx, restart.NewKillGate(len(calls)))
	results := make([]restart.Restarted, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, cl := range calls {
		wg.Go(func() { results[i], errs[i] = r.Replace(gctx, cl.tg, cl.ec, cl.base) })
	}
	wg.Wait()
	t.Logf("6 etcd-managers replaced in %s", time.Since(start).Round(time.Millisecond))
	for i, cl := range calls {
		res := results[i]
		if errs[i] != nil {
			t.Fatalf("Replace %s on %s: %v", cl.ec, cl.tg.Master, errs[i])
		}
		old := cl.base[0].ID
		if res.Action != restart.ActionKilled || res.Killed != old || res.After.ID == old || res.After.RestartCount != 1 {
			t.Errorf("Replace %s on %s = %+v; want %s killed, attempt 1 after it", cl.ec, cl.tg.Master, res, old)
		}
		if n := c.Kills(old); n != 1 {
			t.Errorf("%s on %s: %s killed %d times, want once", cl.ec, cl.tg.Master, old, n)
		}
	}
	if kills := c.AllKills(); len(kills) != len(calls) {
		t.Errorf("kills %v; want one per etcd-manager", kills)
	}
	for _, m := range []string{containerdtest.MethodTaskStart, containerdtest.MethodTaskCreate, containerdtest.MethodContainerCreate} {
		if n := c.Proxy.Calls(m); n != 0 {
			t.Errorf("kopsdr called %s %d times", m, n)
		}
	}

	waitFor(t, 90*time.Second, "the restored data on every endpoint, commands gone", func() bool {
		for _, ec := range []string{cmasters.Main, cmasters.Events} {
			cmds, err := etcdmanager.ListCommands(ctx, c.Store(t, ec))
			if err != nil || len(cmds) != 0 {
				return false
			}
			for _, ep := range c.Endpoints(t, ec) {
				if c.ServesWithMembers(ep) != nil {
					return false
				}
			}
		}
		for _, ep := range c.MainEndpoints {
			cli := c.EndpointClient(t, ep)
			resp, err := cli.Get(ctx, "/registry/configmaps/", clientv3.WithPrefix())
			if err != nil || len(resp.Kvs) != len(mainKVs) {
				return false
			}
			for _, kv := range resp.Kvs {
				if mainKVs[string(kv.Key)] != string(kv.Value) {
					return false
				}
			}
		}
		return true
	})
	t.Logf("restored %s after the kills; timeline:\n%s", time.Since(start).Round(time.Millisecond), c.Timeline())
}

func mustPut(ctx context.Context, t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := cli.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
