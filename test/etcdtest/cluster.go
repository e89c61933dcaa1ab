// Package etcdtest runs real etcd clusters inside the test process
// (go.etcd.io/etcd/server/v3/embed), with TLS and client-cert auth like the
// etcd that etcd-manager runs on kops masters. Tests talk to them through
// the same code paths as production; nothing is mocked.
package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/test/loopback"
)

// startTimeout bounds waiting for a cluster to elect a leader and serve.
const startTimeout = 60 * time.Second

// Cluster is a running embedded etcd cluster. Endpoints and the PEM paths
// are what an operator would pass to kopsdr.
type Cluster struct {
	Endpoints  []string
	CACert     string // "" without TLS
	ClientCert string
	ClientKey  string
	Certs      CertFiles // all generated files, zero without TLS
	Members    []*Member

	opts  options
	token string
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	Dir       string // data dir
	ClientURL string
	PeerURL   string

	mu      sync.Mutex
	etcd    *embed.Etcd // nil while stopped
	cluster *Cluster
}

// Option changes how Start sets a cluster up.
type Option func(*options)

type options struct {
	tls        bool
	certs      *CertFiles
	quotaBytes int64
	logger     *zap.Logger
}

// WithoutTLS serves plain http on client and peer URLs.
func WithoutTLS() Option { return func(o *options) { o.tls = false } }

// WithCerts serves TLS with certs (from GenerateCerts) instead of a PKI of
// the cluster's own, so that several clusters share one CA and client cert,
// as kops' main and events clusters do. The server cert's SANs must include
// 127.0.0.1.
func WithCerts(certs CertFiles) Option {
	return func(o *options) { o.tls, o.certs = true, &certs }
}

// WithQuotaBytes raises etcd's backend quota (default 2 GiB) for big test DBs.
func WithQuotaBytes(n int64) Option { return func(o *options) { o.quotaBytes = n } }

// WithLogger sends etcd's own logs to lg (default: see quietLogger).
func WithLogger(lg *zap.Logger) Option { return func(o *options) { o.logger = lg } }

func buildOptions(opts []Option) options {
	o := options{tls: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = quietLogger()
	}
	return o
}

// Start runs a cluster of members (1 or 3) and waits until every member
// serves. Data lives in t.TempDir(); t.Cleanup stops the cluster.
func Start(t testing.TB, members int, opts ...Option) *Cluster {
	t.Helper()
	return start(t, members, buildOptions(opts), nil)
}

// start does the work for Start and StartFromSnapshot. prepare, when set,
// fills each member's data dir before etcd starts (used for restores).
// Each member's ports stay kept for it until the test ends (test/loopback),
// so no other process takes them, neither before etcd first binds them nor
// while RestartMember brings a member back.
func start(t testing.TB, members int, o options, prepare func(c *Cluster, m *Member) error) *Cluster {
	t.Helper()
	if members != 1 && members != 3 {
		t.Fatalf("etcdtest: %d members; use 1 or 3", members)
	}
	base := t.TempDir()
	c := &Cluster{opts: o}
	if o.tls {
		certs := o.certs
		if certs == nil {
			generated, err := GenerateCerts(filepath.Join(base, "pki"))
			if err != nil {
				t.Fatalf("etcdtest: generate certs: %v", err)
			}
			certs = &generated
		}
		c.Certs, c.CACert, c.ClientCert, c.ClientKey = *certs, certs.CACert, certs.ClientCert, certs.ClientKey
	}
	if err := c.boot(t, base, members, prepare); err != nil {
		c.stopAll()
		t.Fatalf("etcdtest: start %d-member cluster: %v", members, err)
	}
	t.Cleanup(c.stopAll)
	return c
}

// boot lays out the members under dir, starts them all and waits for them.
func (c *Cluster) boot(t testing.TB, dir string, members int, prepare func(*Cluster, *Member) error) error {
	scheme := "http"
	if c.opts.tls {
		scheme = "https"
	}
	// A token of its own keeps a stray peer of another test cluster, which
	// may have had the same port a moment ago, from being mistaken for ours.
	c.token = fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	c.Members, c.Endpoints = nil, nil
	for i := range members {
		ports := loopback.Ports(t, 2)
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			Dir:       filepath.Join(dir, fmt.Sprintf("m%d", i)),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[0]),
			PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[1]),
			cluster:   c,
		}
		c.Members = append(c.Members, m)
		c.Endpoints = append(c.Endpoints, m.ClientURL)
	}
	for _, m := range c.Members {
		if prepare != nil {
			if err := prepare(c, m); err != nil {
				return err
			}
		}
		// StartEtcd returns once the member listens; it needs no quorum yet.
		if err := m.start(); err != nil {
			return err
		}
	}
	return c.waitReady()
}

// initialCluster is etcd's --initial-cluster value.
func (c *Cluster) initialCluster() string {
	parts := make([]string, len(c.Members))
	for i, m := range c.Members {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

func (m *Member) config() *embed.Config {
	c := m.cluster
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cu, pu := mustURL(m.ClientURL), mustURL(m.PeerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = c.initialCluster()
	cfg.InitialClusterToken = c.token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored once the data dir exists
	if c.opts.tls {
		tls := transport.TLSInfo{
			CertFile:       c.Certs.ServerCert,
			KeyFile:        c.Certs.ServerKey,
			TrustedCAFile:  c.Certs.CACert,
			ClientCertAuth: true,
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tls, tls
	}
	if c.opts.quotaBytes > 0 {
		cfg.QuotaBackendBytes = c.opts.quotaBytes
	}
	// Shorter raft timing than the defaults (100 ms / 1 s) so a cluster
	// elects a leader quickly, but not so short that a busy 2-core machine
	// makes leadership flap.
	cfg.TickMs, cfg.ElectionMs = 50, 500
	// Test data is throwaway; skipping fsync makes Fill several times faster.
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.opts.logger.Named(m.Name))
	return cfg
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.config())
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// waitReady waits until every running member has joined and serves.
func (c *Cluster) waitReady() error {
	deadline := time.After(startTimeout)
	for _, m := range c.Members {
		m.mu.Lock()
		e := m.etcd
		m.mu.Unlock()
		if e == nil {
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			return fmt.Errorf("member %s: %w", m.Name, err)
		case <-deadline:
			return fmt.Errorf("member %s not ready after %s", m.Name, startTimeout)
		}
	}
	return nil
}

// stop closes the member's etcd; stopping a stopped member does nothing.
func (m *Member) stop() {
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// stopAll stops every member at once. All first halt raft and their peer
// transports (HardStop), and only then close: a leader closed gracefully
// waits seconds trying to hand leadership to peers that are stopping too.
// Closing in parallel because each close still waits up to a second for
// peer connections to drain.
func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(m.hardStop)
	}
	wg.Wait()
	for _, m := range c.Members {
		wg.Go(m.stop)
	}
	wg.Wait()
}

func (m *Member) hardStop() {
	m.mu.Lock()
	e := m.etcd
	m.mu.Unlock()
	if e != nil {
		e.Server.HardStop()
	}
}

// StopMember stops member i, keeping its data dir so RestartMember can bring
// it back.
func (c *Cluster) StopMember(i int) { c.Members[i].stop() }

// RestartMember starts a stopped member i on its old data dir and ports and
// waits until it serves (which needs a quorum of the cluster to be up).
func (c *Cluster) RestartMember(t testing.TB, i int) {
	t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	running := m.etcd != nil
	m.mu.Unlock()
	if running {
		t.Fatalf("etcdtest: member %s is running", m.Name)
	}
	if err := m.start(); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
	if err := c.waitReady(); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

// ConnConfig is what an operator would give kopsdr to reach this cluster.
func (c *Cluster) ConnConfig() etcdconn.Config {
	return etcdconn.Config{
		Endpoints: append([]string(nil), c.Endpoints...),
		CACert:    c.CACert,
		Cert:      c.ClientCert,
		Key:       c.ClientKey,
	}
}

// Client connects through etcdconn.New, the production path, and closes the
// client when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := etcdconn.New(ctx, c.ConnConfig())
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// MemberClient connects to member i alone, closed when the test ends. A
// linearizable read through it returns only once that member has applied
// everything committed before: a test that writes through the leader and
// then reads a follower's snapshot calls Sync first.
func (c *Cluster) MemberClient(t testing.TB, i int) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := c.ConnConfig()
	cfg.Endpoints = []string{c.Endpoints[i]}
	cli, err := etcdconn.New(ctx, cfg)
	if err != nil {
		t.Fatalf("etcdtest: client of member %d: %v", i, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Sync waits until member i has applied every write committed so far.
func (c *Cluster) Sync(t testing.TB, i int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.MemberClient(t, i).Get(ctx, "\x00", clientv3.WithCountOnly()); err != nil {
		t.Fatalf("etcdtest: sync member %d: %v", i, err)
	}
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// quietLogger discards etcd's logs unless ETCDTEST_LOG names a level
// (debug, info, warn, error): even at error level a stopping member logs
// stack traces for its closed listeners, which would bury test output.
// Failures to start reach the test as errors either way.
func quietLogger() *zap.Logger {
	name := os.Getenv("ETCDTEST_LOG")
	if name == "" {
		return zap.NewNop()
	}
	level, err := zapcore.ParseLevel(name)
	if err != nil {
		level = zapcore.InfoLevel
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	lg, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return lg
}
