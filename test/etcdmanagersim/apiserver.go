package etcdmanagersim

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// MasterLeasePrefix is where kube-apiservers announce themselves; the
// kubernetes service's endpoints list the IPs found here.
const MasterLeasePrefix = "/registry/masterleases/"

// MasterLeaseValue is what the stand-in apiserver stores for ip. The real
// one stores a protobuf v1.Endpoints; JSON carries the same facts readably.
func MasterLeaseValue(ip string) string {
	return fmt.Sprintf(`{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":%q},"subsets":[{"addresses":[{"ip":%q}],"ports":[{"port":443}]}]}`, ip, ip)
}

// runAPIServer plays this master's kube-apiserver towards etcd until ctx
// ends: every LeaseRenew it puts /registry/masterleases/<ip> with a fresh
// LeaseTTL lease, through the local client URL as the apiserver does. So
// the key expires LeaseTTL after this master dies, and comes back within
// LeaseRenew when someone deletes it while the master lives.
func (s *sim) runAPIServer(ctx context.Context) {
	key := MasterLeasePrefix + s.cfg.APIServerIP
	cli, err := s.localClient()
	if err != nil {
		s.logf("ERROR apiserver %s: %v", s.cfg.APIServerIP, err)
		return
	}
	defer cli.Close()
	ttl := int64(s.cfg.LeaseTTL / time.Second)
	renewing, logged := false, false
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		present, err := renewMasterLease(rctx, cli, key, s.cfg.APIServerIP, ttl)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !logged { // etcd is often still electing a leader: say it once
				s.logf("apiserver %s: cannot renew %s yet: %v", s.cfg.APIServerIP, key, err)
				logged = true
			}
		case !renewing:
			how := "created"
			if present {
				how = "took over the existing"
			}
			s.logf("apiserver %s: %s %s, now with a %ds lease renewed every %s", s.cfg.APIServerIP, how, key, ttl, s.cfg.LeaseRenew)
		case !present:
			s.logf("apiserver %s: %s was deleted; re-created it with a %ds lease", s.cfg.APIServerIP, key, ttl)
		}
		if err == nil {
			renewing, logged = true, false
		}
		if sleep(ctx, s.cfg.LeaseRenew) != nil {
			return
		}
	}
}

// renewMasterLease puts key with a new lease of ttl seconds and says
// whether the key existed before.
func renewMasterLease(ctx context.Context, cli *clientv3.Client, key, ip string, ttl int64) (bool, error) {
	get, err := cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	lease, err := cli.Grant(ctx, ttl)
	if err != nil {
		return false, err
	}
	if _, err := cli.Put(ctx, key, MasterLeaseValue(ip), clientv3.WithLease(lease.ID)); err != nil {
		return false, err
	}
	return get.Count > 0, nil
}

// localClient connects to this member's client port on loopback, with the
// member's certificate as client certificate, as the apiserver on a kops
// master connects to https://127.0.0.1:4001.
func (s *sim) localClient() (*clientv3.Client, error) {
	u, err := url.Parse(s.cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	cfg := clientv3.Config{DialTimeout: 3 * time.Second, Logger: zap.NewNop()}
	if u.Scheme == "https" {
		tls, err := transport.TLSInfo{CertFile: s.cfg.CertFile, KeyFile: s.cfg.KeyFile, TrustedCAFile: s.cfg.CAFile}.ClientConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tls
	}
	cfg.Endpoints = []string{u.Scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.clientPort()))}
	return clientv3.New(cfg)
}
