package etcdmanagersim

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// mode says where a member takes client connections.
type mode int

const (
	// serving: on ClientURL, where kopsdr and the apiserver connect.
	serving mode = iota
	// quarantined: only on loopback QuarantinePort, while a restore fills
	// a new cluster, so no client sees it half done (etcd-manager does the
	// same with its quarantine client URLs).
	quarantined
)

func (m mode) String() string {
	if m == quarantined {
		return "quarantine"
	}
	return "serving"
}

// etcdDir is the member's etcd data directory; wiping it is a restore's
// first step. Everything else in DataDir survives that.
func (s *sim) etcdDir() string { return filepath.Join(s.cfg.DataDir, "etcd") }

// normalToken is the cluster token of the cluster built at first boot.
func (s *sim) normalToken() string { return "etcd-cluster-token-" + s.cfg.ClusterName }

// startMember starts this member's embedded etcd in mode on the data dir.
// token and the initial cluster only matter while the data dir is empty.
// It returns once etcd listens; joining needs a quorum of peers, so
// readiness is logged from the background.
func (s *sim) startMember(m mode, token string) (*member, error) {
	cfg := embed.NewConfig()
	cfg.Name = s.cfg.Name
	cfg.Dir = s.etcdDir()

	own := s.cfg.ownPeer()
	pu, err := url.Parse(own.URL)
	if err != nil {
		return nil, err
	}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.ListenPeerUrls = []url.URL{bindURL(*pu)}

	var listen, advertise *url.URL
	switch m {
	case serving:
		if listen, err = url.Parse(s.cfg.ClientURL); err != nil {
			return nil, err
		}
		if advertise, err = url.Parse(s.cfg.AdvertiseClientURL); err != nil {
			return nil, err
		}
	case quarantined:
		listen = s.quarantineURL()
		advertise = listen
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*listen}, []url.URL{*advertise}

	cfg.InitialCluster = s.cfg.initialCluster()
	cfg.InitialClusterToken = token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored once the data dir exists

	// Client cert auth as on kops masters. The TLS settings only apply to
	// https URLs: the loopback quarantine URL is plain http.
	tls := transport.TLSInfo{CertFile: s.cfg.CertFile, KeyFile: s.cfg.KeyFile, TrustedCAFile: s.cfg.CAFile, ClientCertAuth: true}
	if s.cfg.CertFile != "" {
		cfg.ClientTLSInfo = tls
		if pu.Scheme == "https" {
			cfg.PeerTLSInfo = tls
		}
	}
	cfg.TickMs, cfg.ElectionMs = s.cfg.TickMs, s.cfg.ElectionMs
	cfg.UnsafeNoFsync = s.cfg.UnsafeNoFsync
	lg, muted := muteable(s.etcdLog.Named(m.String()))
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd (%s): %w", m, err)
	}
	where := listen.String()
	go func() {
		select {
		case <-e.Server.ReadyNotify():
			s.logf("etcd member %s is part of cluster %x and serves on %s (%s)",
				e.Server.MemberID(), uint64(e.Server.Cluster().ID()), where, m)
		case <-e.Server.StopNotify():
		}
	}()
	return &member{Etcd: e, muted: muted}, nil
}

// member is a running embedded etcd.
type member struct {
	*embed.Etcd
	muted *atomic.Bool
}

// quarantineURL is the loopback-only client URL used while restoring.
func (s *sim) quarantineURL() *url.URL {
	return &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.QuarantinePort))}
}

// stop stops etcd at once. All members stop at about the same time
// during a restore, and a graceful stop would wait for leadership handover
// to peers that are going away too. etcd's complaints about its own
// listeners closing are muted: they are expected, and would bury the
// stand-in's story in the log tail kopsdr shows.
func (m *member) stop() {
	if m == nil {
		return
	}
	m.muted.Store(true)
	m.Server.HardStop()
	m.Close()
}

// muteable wraps lg so that it can be silenced for good.
func muteable(lg *zap.Logger) (*zap.Logger, *atomic.Bool) {
	muted := &atomic.Bool{}
	return lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return muteCore{c, muted} })), muted
}

type muteCore struct {
	zapcore.Core
	muted *atomic.Bool
}

func (c muteCore) With(fields []zapcore.Field) zapcore.Core {
	return muteCore{c.Core.With(fields), c.muted}
}

func (c muteCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.muted.Load() || !c.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, c)
}

// bindURL is where to listen for a URL others use to reach us: etcd binds
// IPs only, so a host name (a Docker network alias) becomes 0.0.0.0.
func bindURL(u url.URL) url.URL {
	if ip := net.ParseIP(u.Hostname()); ip == nil && u.Hostname() != "localhost" {
		u.Host = net.JoinHostPort("0.0.0.0", u.Port())
	}
	return u
}
