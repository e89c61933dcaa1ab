package drill

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
)

const (
	memberName = "drill"
	// startTimeout bounds etcd's start on the restored data; a big database
	// takes a while to open, a broken one may never get ready.
	startTimeout = 5 * time.Minute
	// Loopback with port 0: the kernel picks free client and peer ports
	// when etcd binds, so no other process can take them first. A single
	// member never dials its own peer URL, so advertising port 0 is harmless.
	loopback = "http://127.0.0.1:0"
)

// server is the scratch etcd and a client of it.
type server struct {
	etcd *embed.Etcd
	cli  *clientv3.Client
}

// close stops etcd without the graceful leader hand-over, which has no
// one to hand over to and only costs time: the data is thrown away.
func (s *server) close() {
	s.cli.Close()
	s.etcd.Server.HardStop()
	s.etcd.Close()
}

// restoreAndStart restores snap into a data dir the way etcd-manager does
// (etcdutl, hash check on) and serves it. A nil server with a nil error
// means the backup failed to restore or start, recorded in res.
func restoreAndStart(ctx context.Context, snap string, dir *scratch, opts Options, res *Result) (*server, error) {
	dataDir := filepath.Join(dir.path, "data")
	token := filepath.Base(dir.path) // unique, so nothing stray mistakes this cluster for another

	begin := time.Now()
	err := snapshot.NewV3(opts.Logger).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snap,
		Name:                memberName,
		OutputDataDir:       dataDir,
		PeerURLs:            []string{loopback},
		InitialCluster:      memberName + "=" + loopback,
		InitialClusterToken: token,
	})
	res.Timings.RestoreSeconds = time.Since(begin).Seconds()
	if err != nil {
		res.fail("restore", "etcd restore: %v", err)
		return nil, nil
	}
	// The data dir has its own copy; the raw file only costs space now.
	if err := os.Remove(snap); err != nil {
		return nil, fmt.Errorf("%w: %v", errScratch, err)
	}
	opts.Progress("start", 0)

	begin = time.Now()
	srv, err := start(ctx, dataDir, token, opts)
	res.Timings.StartSeconds = time.Since(begin).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.fail("start", "etcd on the restored data: %v", err)
		return nil, nil
	}
	return srv, nil
}

// start runs etcd on dataDir and waits until it serves, then connects.
func start(ctx context.Context, dataDir, token string, opts Options) (*server, error) {
	u, _ := url.Parse(loopback)
	cfg := embed.NewConfig()
	cfg.Name = memberName
	cfg.Dir = dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*u}, []url.URL{*u}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*u}, []url.URL{*u}
	cfg.InitialCluster = memberName + "=" + loopback
	cfg.InitialClusterToken = token
	// Nothing here needs to survive a crash, and fsync is slow.
	cfg.UnsafeNoFsync = true
	// The restored keyspace may be as big as the cluster's quota allowed;
	// etcd's 2 GiB default would put a bigger one in alarm.
	cfg.QuotaBackendBytes = 8 << 30
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(opts.Logger)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("not ready after %s", startTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + e.Clients[0].Addr().String()},
		DialTimeout: 10 * time.Second,
		Context:     ctx,
		Logger:      opts.Logger,
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return &server{etcd: e, cli: cli}, nil
}
