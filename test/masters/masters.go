// Package masters runs a kops-like control plane's etcd side in real Docker
// containers on this machine's engine, for tests of kopsdr's restore: per
// master one etcd-manager container for etcd "main" and one for "events",
// named as the kubelet names them under Docker, running the stand-in of
// test/etcdmanagersim. All masters share one Docker engine and a private
// network per test; each container's client port is published on
// 127.0.0.1, and the backup stores are a host folder mounted at the same
// path in every container, so file:// store URLs mean the same inside and
// out.
//
// Docker does not restart a container that was killed through its API,
// whatever the restart policy (checked on Docker 20.10: "always",
// "unless-stopped" and "on-failure" all stay exited after ContainerKill).
// So the harness emulates the kubelet: when a container dies it starts a
// NEW container for the same pod with the attempt number (the name's
// last field) one higher, after Options.KubeletDelay, like the kubelet's
// next sync. See kubelet.go.
package masters

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"go.etcd.io/etcd/api/v3/version"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// The two etcd clusters of a kops cluster.
const (
	Main   = "main"
	Events = "events"
)

// OldMasterIPs are the apiserver IPs of masters that no longer exist, for
// SeedMasterLeases: after a restore their keys come back without a lease.
var OldMasterIPs = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}

// Options shape a test control plane.
type Options struct {
	Masters int // default 3
	// RestoreDelay is how long the stand-in serves old data after a restart
	// before it starts a pending restore (real etcd-manager: 20-35 s).
	RestoreDelay time.Duration // default 2s
	// WithAPIServer makes each master's main container also play its
	// kube-apiserver, keeping /registry/masterleases/<Master.IP> alive.
	WithAPIServer bool
	// LeaseRenew is how often the apiservers renew their master lease
	// (real: 10 s); the lease TTL is LeaseTTL(LeaseRenew).
	LeaseRenew time.Duration // default 2s
	// KubeletDelay is how long after a container dies its replacement is
	// started (the kubelet notices within about a second).
	KubeletDelay time.Duration // default 1s
}

// Defaults fills in what o leaves zero (also for test/cmasters).
func (o *Options) Defaults() {
	if o.Masters <= 0 {
		o.Masters = 3
	}
	if o.RestoreDelay <= 0 {
		o.RestoreDelay = 2 * time.Second
	}
	if o.LeaseRenew <= 0 {
		o.LeaseRenew = 2 * time.Second
	}
	if o.KubeletDelay <= 0 {
		o.KubeletDelay = time.Second
	}
}

// leaseTTL is LeaseTTL(o.LeaseRenew).
func (o *Options) leaseTTL() time.Duration { return LeaseTTL(o.LeaseRenew) }

// LeaseTTL is renew plus the real apiserver's 5 s of slack (its 15 s TTL
// over its 10 s renewal), in whole seconds (etcd's unit). The slack is
// absolute, not a ratio: with a 3 s TTL renewed every 2 s a live master's
// key lapsed whenever one renewal took over a second on a loaded machine,
// and a backup taken at that moment lacked it (seen in CI: the restored
// key then came back at a later revision than the restore's re-put).
func LeaseTTL(renew time.Duration) time.Duration {
	return (renew + 5*time.Second + time.Second - 1).Truncate(time.Second)
}

// Cluster is one test control plane. Everything kopsdr needs to reach it
// is in the exported fields.
type Cluster struct {
	Name    string // kops cluster name, unique per test
	Masters []Master
	// StoreDir is the host folder holding the state store; it is mounted at
	// the same path in every container.
	StoreDir string
	// Etcd has the stores, endpoints and client certs; its methods reach
	// the etcd clusters (Client, Seed, Backup...).
	Etcd
	DockerHost string // e.g. unix:///var/run/docker.sock

	id      string
	cli     *client.Client
	opts    Options
	kubelet *kubelet
}

// Master is one master node.
type Master struct {
	Node string // the node name in container names, unique per test
	IP   string // the apiserver IP it claims, when Options.WithAPIServer
	// MainContainer and EventsContainer are the names of the first
	// containers (attempt 0). Replacements end in _1, _2...; Container
	// gives the current one.
	MainContainer, EventsContainer string
}

// Labels on everything the harness creates.
const (
	labelTest = "kopsdr.test/masters" // the Cluster's id: what cleanup removes
	labelPod  = "kopsdr.test/pod"     // pod name, to map events to pods
)

// dockerClient connects the harness to Docker; the kubelet's own test
// puts a proxy in between.
var dockerClient = testenv.Docker

// Start builds the stand-in (once per test binary) and its image (once
// per engine and binary), starts the containers and waits until both
// clusters serve on every master with all members. t.Cleanup removes the
// containers and the network, also after a failure (and first logs the
// containers' output when the test failed).
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	o.Defaults()
	cli := dockerClient(t)
	image := simImage(t, cli)

	id := randomHex(4)
	base := t.TempDir()
	c := &Cluster{
		Name:       "masters-" + id + ".k8s.local",
		StoreDir:   filepath.Join(base, "state"),
		Etcd:       Etcd{Members: o.Masters},
		DockerHost: cli.DaemonHost(),
		id:         id,
		cli:        cli,
		opts:       o,
	}
	c.MainStore = "file://" + filepath.Join(c.StoreDir, c.Name, "backups", "etcd", Main)
	c.EventsStore = "file://" + filepath.Join(c.StoreDir, c.Name, "backups", "etcd", Events)

	hosts := []string{"127.0.0.1", "localhost"}
	for i := range o.Masters {
		hosts = append(hosts, alias(Main, i), alias(Events, i))
	}
	certs, err := etcdtest.GenerateCerts(filepath.Join(base, "pki"), hosts...)
	if err != nil {
		t.Fatalf("masters: certs: %v", err)
	}
	c.CACert, c.ClientCert, c.ClientKey = certs.CACert, certs.ClientCert, certs.ClientKey

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// kops writes the cluster spec when it creates the cluster.
	spec := etcdmanager.ClusterSpec{MemberCount: int32(o.Masters), EtcdVersion: version.Version}
	for _, u := range []string{c.MainStore, c.EventsStore} {
		if err := etcdmanager.WriteClusterSpec(ctx, c.openStore(t, u), spec); err != nil {
			t.Fatalf("masters: %v", err)
		}
	}

	netName := "kopsdr-masters-" + id
	if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{Driver: "bridge", Labels: map[string]string{labelTest: id}}); err != nil {
		t.Fatalf("masters: create network: %v", err)
	}
	c.kubelet = newKubelet(cli, image, netName, o.KubeletDelay)
	t.Cleanup(func() { c.cleanup(t) })

	ports := HostPorts(t, 2*o.Masters)
	var pods []*pod
	for i := range o.Masters {
		node := fmt.Sprintf("master-%c-%s", 'a'+i, id)
		m := Master{Node: node, IP: fmt.Sprintf("10.0.1.%d", i+1)}
		for j, ec := range []string{Main, Events} {
			p := c.newPod(ec, i, node, m.IP, ports[2*i+j], filepath.Join(base, "data", ec, node), certs)
			pods = append(pods, p)
			endpoint := "https://127.0.0.1:" + p.hostPort
			if ec == Main {
				m.MainContainer = p.containerName(0)
				c.MainEndpoints = append(c.MainEndpoints, endpoint)
			} else {
				m.EventsContainer = p.containerName(0)
				c.EventsEndpoints = append(c.EventsEndpoints, endpoint)
			}
		}
		c.Masters = append(c.Masters, m)
	}
	if err := c.kubelet.start(pods); err != nil {
		t.Fatalf("masters: %v", err)
	}
	c.WaitServing(t, 2*time.Minute)
	return c
}

// etcd ports inside the containers, as kops uses them.
type ports struct{ client, peer, quarantine int }

var clusterPorts = map[string]ports{
	Main:   {client: 4001, peer: 2380, quarantine: 3994},
	Events: {client: 4002, peer: 2381, quarantine: 3995},
}

// alias is member i's DNS name on the test network.
func alias(etcdCluster string, i int) string { return fmt.Sprintf("master-%c-%s", 'a'+i, etcdCluster) }

// newPod describes the etcd-manager pod of etcdCluster on master i.
func (c *Cluster) newPod(etcdCluster string, i int, node, ip, hostPort, dataDir string, certs etcdtest.CertFiles) *pod {
	pp := clusterPorts[etcdCluster]
	var peers []string
	for j := range c.opts.Masters {
		peers = append(peers, fmt.Sprintf("%c=http://%s:%d", 'a'+j, alias(etcdCluster, j), pp.peer))
	}
	store := c.MainStore
	if etcdCluster == Events {
		store = c.EventsStore
	}
	args := []string{
		"--name", string(rune('a' + i)),
		"--cluster-name", etcdCluster,
		"--peers", strings.Join(peers, ","),
		"--client-url", fmt.Sprintf("https://0.0.0.0:%d", pp.client),
		"--cert", "/pki/server.crt", "--key", "/pki/server.key", "--cacert", "/pki/ca.crt",
		"--backup-store", store,
		"--data-dir", "/data",
		"--quarantine-port", strconv.Itoa(pp.quarantine),
		"--restore-delay", c.opts.RestoreDelay.String(),
		"--unsafe-no-fsync",
		"--etcd-log-level", "error",
	}
	if etcdCluster == Main && c.opts.WithAPIServer {
		args = append(args, "--apiserver-ip", ip,
			"--lease-ttl", c.opts.leaseTTL().String(), "--lease-renew", c.opts.LeaseRenew.String())
	}
	return &pod{
		name:          "etcd-manager-" + etcdCluster + "-" + node,
		uid:           randomUID(),
		testID:        c.id,
		alias:         alias(etcdCluster, i),
		args:          args,
		containerPort: strconv.Itoa(pp.client),
		hostPort:      hostPort,
		binds: []string{
			c.StoreDir + ":" + c.StoreDir,
			filepath.Dir(certs.CACert) + ":/pki:ro",
			mustMkdir(dataDir) + ":/data",
		},
	}
}

// cleanup stops the kubelet first, so nothing is restarted while the
// containers are removed, then removes containers and network. The
// containers' logs are logged first when the test failed, or always with
// KOPSDR_MASTERS_LOGS=1.
func (c *Cluster) cleanup(t testing.TB) {
	c.kubelet.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if t.Failed() || os.Getenv("KOPSDR_MASTERS_LOGS") == "1" {
		t.Logf("masters: timeline:\n%s", c.kubelet.timeline())
		c.logContainers(t, ctx)
	}
	list, err := c.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelTest+"="+c.id))})
	if err != nil {
		t.Errorf("masters: list containers for cleanup: %v", err)
	}
	for _, ct := range list {
		if err := c.cli.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("masters: remove container %s: %v", ct.Names, err)
		}
	}
	if err := c.cli.NetworkRemove(ctx, c.kubelet.network); err != nil && !client.IsErrNotFound(err) {
		t.Errorf("masters: remove network %s: %v", c.kubelet.network, err)
	}
}

// logContainers logs the tail of every container's output, dead ones too.
func (c *Cluster) logContainers(t testing.TB, ctx context.Context) {
	for _, p := range c.kubelet.snapshot() {
		for _, name := range p.names {
			t.Logf("masters: log of %s:\n%s", name, c.containerLogs(ctx, name, "150"))
		}
	}
}

// HostPorts keeps n ports on 127.0.0.1 for the published client ports
// until t ends (see test/loopback: docker-proxy binds them with
// SO_REUSEADDR, and no one else can take them while a container restarts).
// They are fixed per pod, because kopsdr is given the endpoints once and
// the kubelet's replacement containers must keep them.
func HostPorts(t testing.TB, n int) []string {
	t.Helper()
	var ports []string
	for _, p := range loopback.Ports(t, n) {
		ports = append(ports, strconv.Itoa(p))
	}
	return ports
}

func mustMkdir(dir string) string {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		panic(err)
	}
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomUID looks like a pod UID.
func randomUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
