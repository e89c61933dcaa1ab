package scratchetcd

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

const (
	// DefaultMemberName names the scratch member unless Options say.
	DefaultMemberName = "scratch"
	// DefaultStartTimeout bounds etcd's start on the restored data; a big
	// database takes a while to open, a broken one may never get ready.
	DefaultStartTimeout = 5 * time.Minute
	// Loopback with port 0: the kernel picks free client and peer ports
	// when etcd binds, so no other process can take them first. A single
	// member never dials its own peer URL, so advertising port 0 is harmless.
	loopback = "http://127.0.0.1:0"
	// grpcOverhead is room for gRPC framing on top of MaxRequestBytes in
	// the client's send limit, as etcd allows on its receiving side.
	grpcOverhead = 512 << 10
)

// Options tunes the scratch etcd. The zero value is fine.
type Options struct {
	// MemberName is the member's name; default DefaultMemberName. The same
	// name must be used to Restore and Start.
	MemberName string
	// Logger gets etcd's and etcdutl's logs; default none.
	Logger *zap.Logger
	// StartTimeout bounds Start; default DefaultStartTimeout.
	StartTimeout time.Duration
	// MaxTxnOps and MaxRequestBytes raise etcd's limits on one request (128
	// operations, 1.5 MiB) when set; the client is configured to send as
	// much. Replaying a captured revision as one transaction needs both: a
	// lease revoke or a range delete can remove thousands of keys at one
	// revision.
	MaxTxnOps       uint
	MaxRequestBytes uint
}

func (o Options) withDefaults() Options {
	if o.MemberName == "" {
		o.MemberName = DefaultMemberName
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	return o
}

// Restore restores the raw snapshot file at snap into d's DataDir the way
// etcd-manager does (etcdutl, sha256 trailer checked) as a single member
// cluster on loopback. An error means the snapshot did not restore.
func (d *Dir) Restore(snap string, opts Options) error {
	opts = opts.withDefaults()
	return snapshot.NewV3(opts.Logger).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snap,
		Name:                opts.MemberName,
		OutputDataDir:       d.DataDir(),
		PeerURLs:            []string{loopback},
		InitialCluster:      opts.MemberName + "=" + loopback,
		InitialClusterToken: d.token(),
	})
}

// Server is a scratch etcd serving a Dir's DataDir, and a client of it.
type Server struct {
	Etcd     *embed.Etcd
	Client   *clientv3.Client
	Endpoint string // the client URL, http://127.0.0.1:<port>

	closeOnce sync.Once
}

// Close stops etcd without the graceful leader hand-over, which has no
// one to hand over to and only costs time: the data is thrown away.
// Closing again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.Client.Close()
		s.Etcd.Server.HardStop()
		s.Etcd.Close()
	})
}

// Start runs etcd on d's DataDir (restored by Restore) on loopback, waits
// until it serves, and connects. ctx bounds the start and is the client's
// context: cancelling it later also ends the client's calls.
func (d *Dir) Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	u, _ := url.Parse(loopback)
	cfg := embed.NewConfig()
	cfg.Name = opts.MemberName
	cfg.Dir = d.DataDir()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*u}, []url.URL{*u}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*u}, []url.URL{*u}
	cfg.InitialCluster = opts.MemberName + "=" + loopback
	cfg.InitialClusterToken = d.token()
	// Nothing here needs to survive a crash, and fsync is slow.
	cfg.UnsafeNoFsync = true
	// The restored keyspace may be as big as the cluster's quota allowed;
	// etcd's 2 GiB default would put a bigger one in alarm.
	cfg.QuotaBackendBytes = 8 << 30
	if opts.MaxTxnOps > 0 {
		cfg.MaxTxnOps = opts.MaxTxnOps
	}
	if opts.MaxRequestBytes > 0 {
		cfg.MaxRequestBytes = opts.MaxRequestBytes
	}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(opts.Logger)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("not ready after %s", opts.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	endpoint := "http://" + e.Clients[0].Addr().String()
	ccfg := clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 10 * time.Second,
		Context:     ctx,
		Logger:      opts.Logger,
	}
	if opts.MaxRequestBytes > 0 {
		ccfg.MaxCallSendMsgSize = int(cfg.MaxRequestBytes) + grpcOverhead
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Server{Etcd: e, Client: cli, Endpoint: endpoint}, nil
}
