package masters

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/etcdmanagersim"
)

// Etcd is how a test reaches a harness's two etcd clusters, main and
// events: the Docker harness here and the containerd one (test/cmasters)
// embed it.
type Etcd struct {
	MainStore, EventsStore string // file:// URLs of the backup stores
	// MainEndpoints and EventsEndpoints are https://127.0.0.1:<port>, one per
	// master in Masters order; the ports stay the same across restarts.
	MainEndpoints, EventsEndpoints []string
	CACert, ClientCert, ClientKey  string // PEM files on the host
	Members                        int    // members per etcd cluster: one per master
}

// MasterLeaseKey is the key a kube-apiserver at ip keeps alive.
func MasterLeaseKey(ip string) string { return etcdmanagersim.MasterLeasePrefix + ip }

// ConnConfig is what an operator would give kopsdr to reach etcdCluster.
func (e *Etcd) ConnConfig(t testing.TB, etcdCluster string) etcdconn.Config {
	t.Helper()
	return etcdconn.Config{
		Endpoints: append([]string(nil), e.Endpoints(t, etcdCluster)...),
		CACert:    e.CACert, Cert: e.ClientCert, Key: e.ClientKey,
	}
}

// Client connects to all endpoints of etcdCluster through etcdconn.New,
// the production path, and closes the client when the test ends.
func (e *Etcd) Client(t testing.TB, etcdCluster string) *clientv3.Client {
	t.Helper()
	return e.dial(t, e.ConnConfig(t, etcdCluster))
}

// EndpointClient connects to one endpoint only, to check what that master
// serves.
func (e *Etcd) EndpointClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	return e.dial(t, etcdconn.Config{Endpoints: []string{endpoint}, CACert: e.CACert, Cert: e.ClientCert, Key: e.ClientKey})
}

func (e *Etcd) dial(t testing.TB, cfg etcdconn.Config) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := etcdconn.New(ctx, cfg)
	if err != nil {
		t.Fatalf("masters: connect to %v: %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Seed puts kvs into etcdCluster and returns the revision after the last put.
func (e *Etcd) Seed(t testing.TB, etcdCluster string, kvs map[string]string) int64 {
	t.Helper()
	cli := e.Client(t, etcdCluster)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for k, v := range kvs {
		resp, err := cli.Put(ctx, k, v)
		if err != nil {
			t.Fatalf("masters: seed %s: %v", k, err)
		}
		rev = max(rev, resp.Header.Revision)
	}
	return rev
}

// SeedMasterLeases writes /registry/masterleases/<ip> for each ip into
// main, each with a lease of ttl as an apiserver would (one that nobody
// renews: these masters are gone). Take the backup before ttl passes and
// the backup holds them, as it holds the IPs of masters replaced since.
func (e *Etcd) SeedMasterLeases(t testing.TB, ttl time.Duration, ips ...string) {
	t.Helper()
	cli := e.Client(t, Main)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ip := range ips {
		lease, err := cli.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			t.Fatalf("masters: lease for %s: %v", ip, err)
		}
		if _, err := cli.Put(ctx, MasterLeaseKey(ip), etcdmanagersim.MasterLeaseValue(ip), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatalf("masters: master lease %s: %v", ip, err)
		}
	}
}

// Backup takes a backup of etcdCluster in etcd-manager's format into its
// store (snapshot of the first master, gzip'd, then the meta) and returns
// its name. This is the harness's own simple way; kopsdr's backup
// workflow writes the same format.
func (e *Etcd) Backup(t testing.TB, etcdCluster string) string {
	t.Helper()
	cli := e.Client(t, etcdCluster)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := etcdmanager.ClusterSpec{MemberCount: int32(e.Members), EtcdVersion: version.Version}
	name, err := etcdmanagersim.WriteBackup(ctx, cli, e.Endpoints(t, etcdCluster)[0], e.Store(t, etcdCluster), spec)
	if err != nil {
		t.Fatalf("masters: backup %s: %v", etcdCluster, err)
	}
	return name
}

// WaitServing waits until every endpoint of both clusters answers a
// linearizable read and lists all members.
func (e *Etcd) WaitServing(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, ec := range []string{Main, Events} {
		for _, ep := range e.Endpoints(t, ec) {
			for {
				err := e.ServesWithMembers(ep)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("masters: %s endpoint %s does not serve after %s: %v", ec, ep, d, err)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
}

// ServesWithMembers reports (nil) whether endpoint answers a linearizable
// read and lists as many members as there are masters.
func (e *Etcd) ServesWithMembers(endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cli, err := etcdconn.New(ctx, etcdconn.Config{Endpoints: []string{endpoint}, CACert: e.CACert, Cert: e.ClientCert, Key: e.ClientKey, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "/", clientv3.WithCountOnly()); err != nil {
		return err
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	if n := len(members.Members); n != e.Members {
		return fmt.Errorf("%d members, want %d", n, e.Members)
	}
	return nil
}

// openStore opens a backup store URL of these clusters.
func (e *Etcd) openStore(t testing.TB, url string) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(context.Background(), url, backupstore.Options{})
	if err != nil {
		t.Fatalf("masters: open store %s: %v", url, err)
	}
	return s
}

// Store opens the backup store of etcdCluster ("main" or "events").
func (e *Etcd) Store(t testing.TB, etcdCluster string) backupstore.Store {
	t.Helper()
	if etcdCluster == Events {
		return e.openStore(t, e.EventsStore)
	}
	e.checkCluster(t, etcdCluster)
	return e.openStore(t, e.MainStore)
}

// Endpoints are etcdCluster's client URLs on the host.
func (e *Etcd) Endpoints(t testing.TB, etcdCluster string) []string {
	t.Helper()
	if etcdCluster == Events {
		return e.EventsEndpoints
	}
	e.checkCluster(t, etcdCluster)
	return e.MainEndpoints
}

func (e *Etcd) checkCluster(t testing.TB, etcdCluster string) {
	t.Helper()
	if etcdCluster != Main && etcdCluster != Events {
		t.Fatalf("masters: etcd cluster %q: want %q or %q", etcdCluster, Main, Events)
	}
}
