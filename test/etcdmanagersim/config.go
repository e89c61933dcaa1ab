package etcdmanagersim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is one stand-in process: one member of one etcd cluster (main or
// events) on one master, as one etcd-manager container is on kops.
type Config struct {
	Name        string // this member, e.g. "a"
	ClusterName string // "main" or "events"; names the etcd cluster token
	Peers       []Peer // every member, this one included, sorted by name

	// ClientURL is where clients connect while the cluster serves, e.g.
	// https://0.0.0.0:4001. Its host must be an IP (etcd binds it).
	ClientURL string
	// AdvertiseClientURL is what MemberList shows; default: ClientURL's
	// scheme and port on this member's peer host.
	AdvertiseClientURL string
	// CertFile and KeyFile serve TLS on https URLs and also authenticate
	// this process to its own etcd when it acts as the apiserver; CAFile
	// verifies client certificates (client cert auth is always on).
	CertFile, KeyFile, CAFile string

	BackupStore string // file:///abs/path (or s3://...), read via internal/backupstore
	DataDir     string // etcd data, the restore marker and scratch space
	Leader      string // the member that runs restores; default the lowest name
	// QuarantinePort is the loopback client port of the new cluster while a
	// restore fills it; nothing is served on ClientURL meanwhile.
	QuarantinePort int

	RestoreDelay  time.Duration // how long old data is served before a pending restore starts
	PollInterval  time.Duration // how often non-leaders look whether the restore is over
	RetryInterval time.Duration // how often the leader retries a failed restore
	// BackupAfterRestore: the leader takes a backup of the restored data
	// after deleting the command and before serving, as etcd-manager does.
	BackupAfterRestore bool

	// APIServerIP, when set, makes this process also act as that master's
	// kube-apiserver: it keeps /registry/masterleases/<ip> alive.
	APIServerIP string
	LeaseTTL    time.Duration
	LeaseRenew  time.Duration

	TickMs, ElectionMs uint
	UnsafeNoFsync      bool
	EtcdLogLevel       string // etcd's own zap logs, to stderr
}

// Peer is one member's name and peer URL.
type Peer struct{ Name, URL string }

// ParseFlags reads the command line of etcdmanager-sim.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	var peers string
	fs := flag.NewFlagSet("etcdmanager-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Name, "name", "", "this member's name, e.g. a")
	fs.StringVar(&c.ClusterName, "cluster-name", "main", "etcd cluster name: main or events")
	fs.StringVar(&peers, "peers", "", "every member as name=peerURL, comma separated, e.g. a=http://etcd-a:2380,b=...")
	fs.StringVar(&c.ClientURL, "client-url", "https://0.0.0.0:4001", "client URL to listen on while serving")
	fs.StringVar(&c.AdvertiseClientURL, "advertise-client-url", "", "client URL shown in the member list (default: on the peer host)")
	fs.StringVar(&c.CertFile, "cert", "", "server certificate (PEM), also used as client cert for the local apiserver")
	fs.StringVar(&c.KeyFile, "key", "", "key of --cert (PEM)")
	fs.StringVar(&c.CAFile, "cacert", "", "CA that signs client and peer certificates (PEM)")
	fs.StringVar(&c.BackupStore, "backup-store", "", "backup store URL, e.g. file:///backups/main")
	fs.StringVar(&c.DataDir, "data-dir", "/data", "data directory, kept across restarts")
	fs.StringVar(&c.Leader, "leader", "", "member that runs restores (default: the lowest name)")
	fs.IntVar(&c.QuarantinePort, "quarantine-port", 3994, "loopback client port of the cluster while it is restored")
	fs.DurationVar(&c.RestoreDelay, "restore-delay", 3*time.Second, "how long old data is served before a pending restore starts")
	fs.DurationVar(&c.PollInterval, "poll-interval", 500*time.Millisecond, "how often non-leaders check whether the restore is over")
	fs.DurationVar(&c.RetryInterval, "retry-interval", 3*time.Second, "how often the leader retries a failed restore")
	fs.BoolVar(&c.BackupAfterRestore, "backup-after-restore", true, "take a backup of the restored data before serving it, as etcd-manager does")
	fs.StringVar(&c.APIServerIP, "apiserver-ip", "", "act as this master's kube-apiserver and keep /registry/masterleases/<ip> alive")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 15*time.Second, "TTL of the master lease")
	fs.DurationVar(&c.LeaseRenew, "lease-renew", 10*time.Second, "how often the master lease is renewed")
	fs.UintVar(&c.TickMs, "tick-ms", 100, "etcd heartbeat interval")
	fs.UintVar(&c.ElectionMs, "election-ms", 1000, "etcd election timeout")
	fs.BoolVar(&c.UnsafeNoFsync, "unsafe-no-fsync", false, "skip fsync in etcd (test data only)")
	fs.StringVar(&c.EtcdLogLevel, "etcd-log-level", "error", "level of etcd's own logs on stderr")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Peers, err = ParsePeers(peers); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// ParsePeers reads "a=http://etcd-a:2380,b=http://etcd-b:2380".
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("--peers: %q is not name=peerURL", part)
		}
		peers = append(peers, Peer{Name: name, URL: u})
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	return peers, nil
}

// Validate checks the settings and fills defaults.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("--name is required")
	}
	if c.BackupStore == "" {
		return errors.New("--backup-store is required")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if len(c.Peers) == 0 {
		return errors.New("--peers is required")
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if seen[p.Name] {
			return fmt.Errorf("--peers: %q appears twice", p.Name)
		}
		seen[p.Name] = true
		if _, err := url.Parse(p.URL); err != nil {
			return fmt.Errorf("--peers: %s: %w", p.Name, err)
		}
	}
	if !seen[c.Name] {
		return fmt.Errorf("--peers does not list this member %q", c.Name)
	}
	if c.Leader == "" {
		c.Leader = c.Peers[0].Name
	} else if !seen[c.Leader] {
		return fmt.Errorf("--leader %q is not in --peers", c.Leader)
	}
	cu, err := url.Parse(c.ClientURL)
	if err != nil || cu.Port() == "" {
		return fmt.Errorf("--client-url %q: need scheme://ip:port", c.ClientURL)
	}
	if cu.Scheme == "https" && (c.CertFile == "" || c.KeyFile == "" || c.CAFile == "") {
		return errors.New("an https --client-url needs --cert, --key and --cacert")
	}
	if c.AdvertiseClientURL == "" {
		host := cu.Hostname()
		if pu, err := url.Parse(c.ownPeer().URL); err == nil {
			host = pu.Hostname()
		}
		c.AdvertiseClientURL = cu.Scheme + "://" + net.JoinHostPort(host, cu.Port())
	}
	if c.QuarantinePort <= 0 || c.QuarantinePort > 65535 {
		return fmt.Errorf("--quarantine-port %d is not a port", c.QuarantinePort)
	}
	if c.APIServerIP != "" && net.ParseIP(c.APIServerIP) == nil {
		return fmt.Errorf("--apiserver-ip %q is not an IP", c.APIServerIP)
	}
	if c.APIServerIP != "" && (c.LeaseTTL < time.Second || c.LeaseRenew <= 0) {
		return errors.New("--lease-ttl must be at least 1s and --lease-renew positive (etcd leases count whole seconds)")
	}
	if c.PollInterval <= 0 || c.RetryInterval <= 0 || c.RestoreDelay < 0 {
		return errors.New("--poll-interval and --retry-interval must be positive, --restore-delay not negative")
	}
	return nil
}

func (c *Config) ownPeer() Peer {
	for _, p := range c.Peers {
		if p.Name == c.Name {
			return p
		}
	}
	return Peer{}
}

// isLeader: the designated leader drives restores, as the etcd-manager
// that holds leadership would.
func (c *Config) isLeader() bool { return c.Name == c.Leader }

// initialCluster is etcd's --initial-cluster value.
func (c *Config) initialCluster() string {
	parts := make([]string, len(c.Peers))
	for i, p := range c.Peers {
		parts[i] = p.Name + "=" + p.URL
	}
	return strings.Join(parts, ",")
}

// clientPort is ClientURL's port, which the local apiserver dials on loopback.
func (c *Config) clientPort() int {
	u, _ := url.Parse(c.ClientURL)
	p, _ := strconv.Atoi(u.Port())
	return p
}
