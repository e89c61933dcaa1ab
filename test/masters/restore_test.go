package masters_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// TestRestoreByKillingEtcdManagers does by hand what kopsdr automates:
// queue restore commands for main and events, kill every etcd-manager
// container through the Docker API, and wait until the restored data is
// served. It checks the stand-in and the harness behave as docs/formats.md
// says etcd-manager and the kubelet do.
func TestRestoreByKillingEtcdManagers(t *testing.T) {
	// The harness's one emulated kubelet brings the six containers back
	// one after another, 2-3 s each on a loaded machine (real masters each
	// have their own kubelet). With a 2 s restore delay main's leader once
	// restored before master b's main was back, and b stayed on the old
	// cluster (seen in CI, with the e2e package running beside it). Real
	// etcd-manager waits 20-35 s; 20 s leaves every peer in time.
	c := masters.Start(t, masters.Options{WithAPIServer: true, RestoreDelay: 20 * time.Second, LeaseRenew: 2 * time.Second})
	ctx := testenv.Context(t, 3*time.Minute)
	mainCli, eventsCli := c.Client(t, masters.Main), c.Client(t, masters.Events)

	// The state at backup time: objects, the master leases of three masters
	// replaced since, and those of the live masters.
	mainKVs, eventsKVs := map[string]string{}, map[string]string{}
	for i := range 40 {
		mainKVs[fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)] = fmt.Sprintf(`{"data":{"n":"%d"}}`, i)
	}
	for i := range 20 {
		eventsKVs[fmt.Sprintf("/registry/events/default/ev-%03d", i)] = fmt.Sprintf(`{"reason":"r%d"}`, i)
	}
	c.Seed(t, masters.Main, mainKVs)
	c.Seed(t, masters.Events, eventsKVs)
	c.SeedMasterLeases(t, time.Minute, masters.OldMasterIPs...)
	for _, m := range c.Masters {
		waitFor(t, 30*time.Second, "live master lease "+m.IP, func() bool {
			kv := get(ctx, mainCli, masters.MasterLeaseKey(m.IP))
			return kv != nil && kv.Lease != 0
		})
	}
	oldMainCluster, oldEventsCluster := clusterID(ctx, t, mainCli), clusterID(ctx, t, eventsCli)
	mainBackup, eventsBackup := c.Backup(t, masters.Main), c.Backup(t, masters.Events)

	// Changes after the backup, which the restore must undo.
	mustPut(ctx, t, mainCli, "/registry/configmaps/default/cm-000", "changed")
	mustPut(ctx, t, mainCli, "/registry/configmaps/default/after-backup", "x")
	if _, err := mainCli.Delete(ctx, "/registry/configmaps/default/cm-001"); err != nil {
		t.Fatal(err)
	}
	mustPut(ctx, t, eventsCli, "/registry/events/default/after-backup", "x")

	for ec, backup := range map[string]string{masters.Main: mainBackup, masters.Events: eventsBackup} {
		store := c.Store(t, ec)
		spec, err := etcdmanager.ReadClusterSpec(ctx, store)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcdmanager.WriteRestoreCommand(ctx, store, time.Now(), spec, backup); err != nil {
			t.Fatal(err)
		}
	}

	// Kill them all together, as the runbook says (docker kill).
	docker := testenv.Docker(t)
	killed := c.Containers(t)
	start := time.Now()
	var wg sync.WaitGroup
	for _, name := range killed {
		wg.Go(func() {
			if err := docker.ContainerKill(ctx, name, "KILL"); err != nil {
				t.Errorf("kill %s: %v", name, err)
			}
		})
	}
	wg.Wait()

	// Watch from outside, as kopsdr would.
	var oldServed, commandsGone, restored time.Duration
	deadline := start.Add(2 * time.Minute)
	for restored == 0 || commandsGone == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no restore within 2 minutes: old data served after %s, commands gone after %s, restored after %s",
				oldServed, commandsGone, restored)
		}
		if oldServed == 0 && servesChangedData(c) {
			oldServed = time.Since(start)
		}
		if commandsGone == 0 && noCommands(ctx, t, c) {
			commandsGone = time.Since(start)
		}
		if restored == 0 && servesRestoredData(c) {
			restored = time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("restore timeline after killing %d containers: old data served again at %s (0 = not seen), commands gone at %s, restored data with all members on every endpoint at %s",
		len(killed), oldServed.Round(time.Millisecond), commandsGone.Round(time.Millisecond), restored.Round(time.Millisecond))
	t.Logf("container timeline:\n%s", c.Timeline())

	if restored < commandsGone-time.Second {
		t.Errorf("restored data was served (%s) before the commands were gone (%s)", restored, commandsGone)
	}
	if id := clusterID(ctx, t, mainCli); id == oldMainCluster {
		t.Errorf("main still has cluster id %x: the restore must build a new cluster", id)
	}
	if id := clusterID(ctx, t, eventsCli); id == oldEventsCluster {
		t.Errorf("events still has cluster id %x: the restore must build a new cluster", id)
	}

	// Every key of the backup was put again in key order from revision 2,
	// without a lease; only live apiservers' keys have a lease again.
	live := map[string]bool{}
	wantMain := map[string]string{}
	for k, v := range mainKVs {
		wantMain[k] = v
	}
	for _, ip := range masters.OldMasterIPs {
		wantMain[masters.MasterLeaseKey(ip)] = ""
	}
	for _, m := range c.Masters {
		live[masters.MasterLeaseKey(m.IP)] = true
		wantMain[masters.MasterLeaseKey(m.IP)] = ""
	}
	checkRestored(ctx, t, eventsCli, eventsKVs, nil)
	// The live apiservers renew their keys within LeaseRenew of serving.
	waitFor(t, 15*time.Second, "live master leases renewed", func() bool {
		for k := range live {
			if kv := get(ctx, mainCli, k); kv == nil || kv.Lease == 0 {
				return false
			}
		}
		return true
	})
	checkRestored(ctx, t, mainCli, wantMain, live)

	// etcd-manager backs the restored data up; so does the stand-in.
	for ec, backup := range map[string]string{masters.Main: mainBackup, masters.Events: eventsBackup} {
		backups, err := etcdmanager.ListBackups(ctx, c.Store(t, ec))
		if err != nil || len(backups) != 2 || backups[0] != backup {
			t.Errorf("%s backups after the restore: %v, %v; want %s and one newer", ec, backups, err, backup)
		}
	}

	for _, name := range killed {
		if n := c.RestartCount(t, name); n != 1 {
			t.Errorf("%s was restarted %d times, want 1", name, n)
		}
	}
}

// checkRestored checks the restored cluster holds exactly want's keys (a
// "" value is not compared), each put once in key order from revision 2
// without a lease, except live keys, which must have a lease again.
func checkRestored(ctx context.Context, t *testing.T, cli *clientv3.Client, want map[string]string, live map[string]bool) {
	t.Helper()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var keys, got []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, kv := range resp.Kvs {
		k := string(kv.Key)
		got = append(got, k)
		if v := want[k]; v != "" && string(kv.Value) != v {
			t.Errorf("%s = %q, want %q", k, kv.Value, v)
		}
		if kv.CreateRevision != int64(2+i) {
			t.Errorf("%s: created at revision %d, want %d (re-put in key order from 2)", k, kv.CreateRevision, 2+i)
		}
		if live[k] {
			if kv.Lease == 0 {
				t.Errorf("%s: live apiserver key has no lease", k)
			}
			continue
		}
		if kv.Lease != 0 || kv.Version != 1 || kv.ModRevision != kv.CreateRevision {
			t.Errorf("%s: lease %x version %d mod %d; want no lease, put once", k, kv.Lease, kv.Version, kv.ModRevision)
		}
	}
	if strings.Join(got, "\n") != strings.Join(keys, "\n") {
		t.Errorf("restored keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(keys, "\n"))
	}
}

// servesChangedData: some main endpoint serves the data as changed after
// the backup (the old data, served briefly after the restart).
func servesChangedData(c *masters.Cluster) bool {
	for _, ep := range c.MainEndpoints {
		if v, ok := endpointGet(c, ep, "/registry/configmaps/default/cm-000"); ok && v == "changed" {
			return true
		}
	}
	return false
}

// servesRestoredData: every endpoint of both clusters serves the backup's
// data (the fingerprint of the backup) and lists all members.
func servesRestoredData(c *masters.Cluster) bool {
	for _, ep := range c.MainEndpoints {
		if v, ok := endpointGet(c, ep, "/registry/configmaps/default/cm-001"); !ok || v == "" {
			return false
		}
		if v, ok := endpointGet(c, ep, "/registry/configmaps/default/after-backup"); !ok || v != "" {
			return false
		}
	}
	for _, ep := range c.EventsEndpoints {
		if v, ok := endpointGet(c, ep, "/registry/events/default/after-backup"); !ok || v != "" {
			return false
		}
	}
	for _, ep := range append(append([]string(nil), c.MainEndpoints...), c.EventsEndpoints...) {
		if c.ServesWithMembers(ep) != nil {
			return false
		}
	}
	return true
}

// endpointGet reads key from one endpoint ("" when absent); ok is false
// while the endpoint does not serve.
func endpointGet(c *masters.Cluster, endpoint, key string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, TLS: tlsConfig(c), Logger: zap.NewNop()})
	if err != nil {
		return "", false
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", false
	}
	if len(resp.Kvs) == 0 {
		return "", true
	}
	return string(resp.Kvs[0].Value), true
}

func noCommands(ctx context.Context, t *testing.T, c *masters.Cluster) bool {
	for _, ec := range []string{masters.Main, masters.Events} {
		cmds, err := etcdmanager.ListCommands(ctx, c.Store(t, ec))
		if err != nil || len(cmds) > 0 {
			return false
		}
	}
	return true
}

func clusterID(ctx context.Context, t *testing.T, cli *clientv3.Client) uint64 {
	t.Helper()
	var resp *clientv3.MemberListResponse
	var err error
	for range 20 { // the client may still be reconnecting after the restore
		if resp, err = cli.MemberList(ctx); err == nil {
			return resp.Header.ClusterId
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("member list: %v", err)
	return 0
}

func get(ctx context.Context, cli *clientv3.Client, key string) *mvccpb.KeyValue {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func mustPut(ctx context.Context, t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := cli.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tlsConfig(c *masters.Cluster) *tls.Config {
	cfg, err := transport.TLSInfo{CertFile: c.ClientCert, KeyFile: c.ClientKey, TrustedCAFile: c.CACert}.ClientConfig()
	if err != nil {
		panic(err)
	}
	return cfg
}
