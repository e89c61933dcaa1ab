package etcdmanagersim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
)

// These tests run three stand-ins in this process on loopback ports, so the
// restore logic is checked without Docker; test/masters runs the same code
// in containers and restarts them the way kopsdr does.

// node is one in-process stand-in; stop and start play the container
// dying and the kubelet starting it again.
type node struct {
	cfg    Config
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

type simCluster struct {
	nodes []*node
	store backupstore.Store
	conn  etcdconn.Config
}

func startSims(t *testing.T, restoreDelay time.Duration) *simCluster {
	t.Helper()
	dir := t.TempDir()
	certs, err := etcdtest.GenerateCerts(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	ports := loopback.Ports(t, 9)
	var peers []Peer
	for i, name := range []string{"a", "b", "c"} {
		peers = append(peers, Peer{Name: name, URL: fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])})
	}
	storeURL := "file://" + filepath.Join(dir, "store")
	ctx := context.Background()
	store, err := backupstore.Open(ctx, storeURL, backupstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := etcdmanager.WriteClusterSpec(ctx, store, etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: version.Version}); err != nil {
		t.Fatal(err)
	}
	c := &simCluster{store: store, conn: etcdconn.Config{CACert: certs.CACert, Cert: certs.ClientCert, Key: certs.ClientKey}}
	for i, p := range peers {
		cfg := Config{
			Name: p.Name, ClusterName: "main", Peers: peers,
			ClientURL: fmt.Sprintf("https://127.0.0.1:%d", ports[i]),
			CertFile:  certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CACert,
			BackupStore: storeURL, DataDir: filepath.Join(dir, "data", p.Name),
			QuarantinePort: ports[6+i], RestoreDelay: restoreDelay,
			PollInterval: 200 * time.Millisecond, RetryInterval: time.Second, BackupAfterRestore: true,
			LeaseTTL: 15 * time.Second, LeaseRenew: 10 * time.Second,
			TickMs: 50, ElectionMs: 500, UnsafeNoFsync: true, EtcdLogLevel: "fatal",
		}
		c.nodes = append(c.nodes, &node{cfg: cfg, out: &syncBuffer{}})
		c.conn.Endpoints = append(c.conn.Endpoints, cfg.ClientURL)
	}
	c.startAll(t)
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("log of %s:\n%s", n.cfg.Name, n.out.String())
			}
		}
	})
	return c
}

func (c *simCluster) startAll(t *testing.T) {
	for _, n := range c.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel, n.done = cancel, make(chan error, 1)
		go func() { n.done <- Run(ctx, n.cfg, n.out) }()
	}
}

func (c *simCluster) stopAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.cancel == nil {
			continue
		}
		wg.Go(func() { n.cancel(); <-n.done; n.cancel = nil })
	}
	wg.Wait()
}

// client connects to one member, waiting up to 30 s for it to answer:
// tests call it right after starting the members, and on a loaded machine
// (CI, with the e2e shards beside it) a member took 5 s to serve, longer
// than etcdconn's default dial timeout.
func (c *simCluster) client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	conn := c.conn
	conn.Endpoints = []string{endpoint}
	conn.DialTimeout = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := etcdconn.New(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// get reads key from one endpoint; ok is false while it does not serve.
func get(cli *clientv3.Client, key string) (value string, found, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", false, false
	}
	if len(resp.Kvs) == 0 {
		return "", false, true
	}
	return string(resp.Kvs[0].Value), true, true
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRestoreInProcess(t *testing.T) {
	c := startSims(t, 3*time.Second)
	clis := make([]*clientv3.Client, len(c.nodes))
	for i, ep := range c.conn.Endpoints {
		clis[i] = c.client(t, ep)
	}
	waitFor(t, 30*time.Second, "all members to serve", func() bool {
		for _, cli := range clis {
			if _, _, ok := get(cli, "x"); !ok {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	cli := clis[0]
	for i := range 30 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/k%02d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, MasterLeasePrefix+"10.0.0.1", MasterLeaseValue("10.0.0.1"), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	backup, err := WriteBackup(ctx, cli, c.conn.Endpoints[0], c.store, etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: version.Version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/registry/after-backup", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/registry/k00", "changed"); err != nil {
		t.Fatal(err)
	}
	spec, err := etcdmanager.ReadClusterSpec(ctx, c.store)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := etcdmanager.WriteRestoreCommand(ctx, c.store, time.Now(), spec, backup)
	if err != nil {
		t.Fatal(err)
	}

	c.stopAll()
	c.startAll(t)

	// Right after the restart the old data is back, as with etcd-manager.
	waitFor(t, 20*time.Second, "old data served after the restart", func() bool {
		v, _, _ := get(clis[1], "/registry/k00")
		return v == "changed"
	})
	waitFor(t, 30*time.Second, "restored data on every member", func() bool {
		for _, cli := range clis {
			v, _, ok := get(cli, "/registry/k00")
			_, after, _ := get(cli, "/registry/after-backup")
			if !ok || v != "v0" || after {
				return false
			}
		}
		return true
	})
	if _, err := c.store.Stat(ctx, etcdmanager.CommandFolder(time.Unix(0, cmd.Timestamp))+"/"+etcdmanager.CommandFile); err == nil {
		t.Fatal("restored data is served but the command is still there")
	}
	checkRestoredKeys(t, cli)
	// As etcd-manager does, the leader backs the restored data up.
	waitFor(t, 10*time.Second, "a backup of the restored data", func() bool {
		backups, err := etcdmanager.ListBackups(ctx, c.store)
		return err == nil && len(backups) == 2 && backups[0] == backup
	})
	members, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 3 {
		t.Fatalf("%d members after the restore, want 3", len(members.Members))
	}
}

// checkRestoredKeys: every key was re-put in key order from revision 2,
// without a lease.
func checkRestoredKeys(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(context.Background(), "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 31 {
		t.Fatalf("%d keys after the restore, want 31", len(resp.Kvs))
	}
	for i, kv := range resp.Kvs {
		if kv.CreateRevision != int64(2+i) || kv.ModRevision != kv.CreateRevision || kv.Version != 1 || kv.Lease != 0 {
			t.Errorf("%s: create %d mod %d version %d lease %x; want create=mod=%d, version 1, no lease",
				kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease, 2+i)
		}
	}
}

// A restore that cannot succeed leaves the cluster serving nothing, the
// leader retrying, until the command is deleted. A backup whose snapshot
// lost its sha256 trailer (a copied bolt file) is such a restore: the hash
// check is not skipped.
func TestBadBackupServesNothingUntilDeleted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backup  func(t *testing.T, c *simCluster, cli *clientv3.Client) string
		wantLog string
	}{
		{"missing backup", func(*testing.T, *simCluster, *clientv3.Client) string { return "2020-01-01T00:00:00Z-000001" }, "object not found"},
		{"snapshot without sha256 trailer", backupWithoutTrailer, "snapshot missing hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startSims(t, 200*time.Millisecond)
			cli := c.client(t, c.conn.Endpoints[0])
			waitFor(t, 30*time.Second, "the cluster to serve", func() bool { _, _, ok := get(cli, "x"); return ok })
			ctx := context.Background()
			if _, err := cli.Put(ctx, "/registry/k", "old"); err != nil {
				t.Fatal(err)
			}
			// WriteRestoreCommand refuses a missing backup, so write the
			// command by hand, as an older tool might.
			now := time.Now()
			spec := etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: version.Version}
			data := etcdmanager.MarshalCommand(etcdmanager.Command{Timestamp: now.UnixNano(),
				RestoreBackup: &etcdmanager.RestoreBackupCommand{ClusterSpec: &spec, Backup: tc.backup(t, c, cli)}})
			key := etcdmanager.CommandFolder(now) + "/" + etcdmanager.CommandFile
			if _, err := c.store.Put(ctx, key, bytes.NewReader(data), backupstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			c.stopAll()
			c.startAll(t)

			leader := c.nodes[0].out
			waitFor(t, 30*time.Second, "the leader to fail twice", func() bool {
				return strings.Count(leader.String(), "ERROR restoring backup") >= 2
			})
			if !strings.Contains(leader.String(), tc.wantLog) {
				t.Errorf("the leader's log does not say %q:\n%s", tc.wantLog, leader.String())
			}
			for _, ep := range c.conn.Endpoints {
				if listening(ep) {
					t.Fatalf("%s takes connections while the restore fails", ep)
				}
			}
			if err := etcdmanager.DeleteCommand(ctx, c.store, strings.TrimPrefix(etcdmanager.CommandFolder(now), etcdmanager.ControlDir+"/")); err != nil {
				t.Fatal(err)
			}
			// Deleting the command ends it: the (empty) new cluster serves.
			waitFor(t, 30*time.Second, "the cluster to serve again", func() bool {
				_, found, ok := get(cli, "/registry/k")
				return ok && !found
			})
		})
	}
}

// backupWithoutTrailer takes a backup and rewrites its snapshot without
// the sha256 trailer, as if the bolt file had been copied.
func backupWithoutTrailer(t *testing.T, c *simCluster, cli *clientv3.Client) string {
	t.Helper()
	ctx := context.Background()
	name, err := WriteBackup(ctx, cli, c.conn.Endpoints[0], c.store, etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: version.Version})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.store.Get(ctx, name+"/"+etcdmanager.DataFile)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw[:len(raw)-sha256.Size])
	zw.Close()
	if _, err := c.store.Put(ctx, name+"/"+etcdmanager.DataFile, &buf, backupstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// listening reports whether anything accepts connections at endpoint.
func listening(endpoint string) bool {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "https://"), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
