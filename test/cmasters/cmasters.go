// Package cmasters runs a kops-like control plane's etcd side on a real
// containerd, as kops masters run it since Kubernetes 1.24: per master
// one etcd-manager container for etcd "main" and one for "events", in
// containerd namespace k8s.io with the labels and CRI metadata the
// kubelet's CRI plugin gives them, running the stand-in of
// test/etcdmanagersim (the same binary test/masters runs on Docker).
//
// All masters share one containerd (test/containerdtest) and its kubelet
// stand-in, which replaces a container whose task died with a new one
// (attempt+1). Containers use the host's network: every member's peer,
// client and quarantine port is a distinct port on 127.0.0.1, fixed per
// pod, so replacements keep them. Stores, certificates and data folders
// are host folders mounted at the same paths, so file:// store URLs mean
// the same inside and out.
//
// kopsdr reaches the masters through ContainerdSocket, a proxy in front
// of the daemon that counts every kill per container (Kills), so tests can
// check that nothing was killed twice.
package cmasters

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

	"go.etcd.io/etcd/api/v3/version"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/containerdtest"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/masters"
)

// The two etcd clusters of a kops cluster.
const (
	Main   = masters.Main
	Events = masters.Events
)

// Options shape a test control plane, as for the Docker one.
type Options = masters.Options

// Cluster is one test control plane on containerd. Everything kopsdr
// needs to reach it is in the exported fields.
type Cluster struct {
	Name    string // kops cluster name, unique per test
	Masters []Master
	// StoreDir is the host folder holding the state store.
	StoreDir string
	// Etcd has the stores, endpoints and client certs; its methods reach
	// the etcd clusters (Client, Seed, Backup, ServesWithMembers...).
	masters.Etcd
	// ContainerdSocket is where kopsdr reaches every master's containerd
	// (all masters share one): a proxy that counts kills. No unix:// prefix.
	ContainerdSocket string

	Daemon  *containerdtest.Daemon
	Kubelet *containerdtest.Kubelet
	Proxy   *containerdtest.Proxy

	opts Options
}

// Master is one master node.
type Master struct {
	Node string // the node name in pod names, unique per test
	IP   string // the apiserver IP it claims, when Options.WithAPIServer
}

// Start starts containerd, imports the stand-in's image, runs every
// master's pods and waits until both clusters serve on every master with
// all members. Everything is stopped and removed when t ends; on failure
// the kubelet's timeline and the containers' logs are logged first (also
// with KOPSDR_MASTERS_LOGS=1).
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	o.Defaults()
	d := containerdtest.Start(t)
	bin, hash := masters.SimBinary(t)
	img := d.ImportImage(t, "kopsdr.test/etcdmanager-sim:"+hash[:16], map[string]string{"/etcdmanager-sim": bin}, "/etcdmanager-sim")

	id := randomHex(4)
	base := t.TempDir()
	c := &Cluster{
		Name:     "cmasters-" + id + ".k8s.local",
		StoreDir: filepath.Join(base, "state"),
		Etcd:     masters.Etcd{Members: o.Masters},
		Daemon:   d,
		opts:     o,
	}
	c.MainStore = "file://" + filepath.Join(c.StoreDir, c.Name, "backups", "etcd", Main)
	c.EventsStore = "file://" + filepath.Join(c.StoreDir, c.Name, "backups", "etcd", Events)
	certs, err := etcdtest.GenerateCerts(filepath.Join(base, "pki"), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatalf("cmasters: certs: %v", err)
	}
	c.CACert, c.ClientCert, c.ClientKey = certs.CACert, certs.ClientCert, certs.ClientKey

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// kops writes the cluster spec when it creates the cluster.
	spec := etcdmanager.ClusterSpec{MemberCount: int32(o.Masters), EtcdVersion: version.Version}
	for _, ec := range []string{Main, Events} {
		if err := etcdmanager.WriteClusterSpec(ctx, c.Store(t, ec), spec); err != nil {
			t.Fatalf("cmasters: %v", err)
		}
	}

	c.Kubelet = d.NewKubelet(t, o.KubeletDelay)
	c.Proxy = d.NewProxy(t, c.Kubelet)
	c.ContainerdSocket = c.Proxy.Socket
	t.Cleanup(func() { c.logOnFailure(t) }) // before the kubelet and daemon stop

	ports := c.allocatePorts(t)
	for i := range o.Masters {
		m := Master{Node: fmt.Sprintf("master-%c-%s", 'a'+i, id), IP: fmt.Sprintf("10.0.1.%d", i+1)}
		c.Masters = append(c.Masters, m)
		for _, ec := range []string{Main, Events} {
			p := ports[ec][i]
			c.endpoints(ec, "https://127.0.0.1:"+strconv.Itoa(p.client))
			pod := c.podSpec(img, ec, i, m, ports[ec], filepath.Join(base, "data", ec, m.Node), certs)
			if _, err := c.Kubelet.Run(pod); err != nil {
				t.Fatalf("cmasters: %v", err)
			}
		}
	}
	c.WaitServing(t, 2*time.Minute)
	return c
}

// memberPorts are one member's ports on 127.0.0.1.
type memberPorts struct{ client, peer, quarantine int }

// allocatePorts keeps distinct ports for every member until the test ends
// (test/loopback). The quarantine port is bound only when a restore starts,
// minutes later, and every member binds its ports again after each
// restart: a port that was merely free when the test began can meanwhile
// be taken by another process, and the member then fails to start.
func (c *Cluster) allocatePorts(t testing.TB) map[string][]memberPorts {
	t.Helper()
	n := c.opts.Masters
	free := loopback.Ports(t, 2*3*n)
	out := map[string][]memberPorts{}
	for j, ec := range []string{Main, Events} {
		for i := range n {
			k := 3 * (j*n + i)
			out[ec] = append(out[ec], memberPorts{client: free[k], peer: free[k+1], quarantine: free[k+2]})
		}
	}
	return out
}

func (c *Cluster) endpoints(etcdCluster, endpoint string) {
	if etcdCluster == Main {
		c.MainEndpoints = append(c.MainEndpoints, endpoint)
	} else {
		c.EventsEndpoints = append(c.EventsEndpoints, endpoint)
	}
}

// podSpec describes the etcd-manager pod of etcdCluster on master i: the
// stand-in with kops's flags, its ports on 127.0.0.1, and the store,
// certificates and data folder mounted at their host paths.
func (c *Cluster) podSpec(img containerdtest.Image, etcdCluster string, i int, m Master, ports []memberPorts, dataDir string, certs etcdtest.CertFiles) containerdtest.PodSpec {
	var peers []string
	for j, p := range ports {
		peers = append(peers, fmt.Sprintf("%c=http://127.0.0.1:%d", 'a'+j, p.peer))
	}
	store := c.MainStore
	if etcdCluster == Events {
		store = c.EventsStore
	}
	own := ports[i]
	args := []string{
		"--name", string(rune('a' + i)),
		"--cluster-name", etcdCluster,
		"--peers", strings.Join(peers, ","),
		"--client-url", fmt.Sprintf("https://127.0.0.1:%d", own.client),
		"--cert", certs.ServerCert, "--key", certs.ServerKey, "--cacert", certs.CACert,
		"--backup-store", store,
		"--data-dir", mustMkdir(dataDir),
		"--quarantine-port", strconv.Itoa(own.quarantine),
		"--restore-delay", c.opts.RestoreDelay.String(),
		"--unsafe-no-fsync",
		"--etcd-log-level", "error",
	}
	if etcdCluster == Main && c.opts.WithAPIServer {
		args = append(args, "--apiserver-ip", m.IP,
			"--lease-ttl", masters.LeaseTTL(c.opts.LeaseRenew).String(), "--lease-renew", c.opts.LeaseRenew.String())
	}
	return containerdtest.PodSpec{
		Node:      m.Node,
		Name:      "etcd-manager-" + etcdCluster + "-" + m.Node,
		Container: "etcd-manager",
		Image:     img,
		Args:      args,
		Env:       []string{"TMPDIR=" + dataDir},
		Mounts: []containerdtest.Mount{
			{Source: c.StoreDir, Destination: c.StoreDir},
			{Source: filepath.Dir(certs.CACert), Destination: filepath.Dir(certs.CACert), ReadOnly: true},
			{Source: dataDir, Destination: dataDir},
		},
	}
}

// Targets are what kopsdr is given for every master: its node name and
// containerd socket (the proxy), runtime containerd.
func (c *Cluster) Targets() []restart.Target {
	var out []restart.Target
	for _, m := range c.Masters {
		out = append(out, restart.Target{Master: m.Node, Endpoint: "unix://" + c.ContainerdSocket, Runtime: restart.RuntimeContainerd})
	}
	return out
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
