// Command devetcd runs a local stand-in for a kops master's two etcd
// clusters, main on 127.0.0.1:4001 and events on 127.0.0.1:4002 (peer ports
// 5001 and 5002, see --main-peer-port and --events-peer-port), with TLS and
// client-certificate auth like kops, so a newcomer can try kopsdr without a
// Kubernetes cluster:
//
//	go run ./test/devetcd --dir .kopsdr-dev/etcd
//
// It prints the kopsdr flags that reach it and runs until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

func main() {
	dir := flag.String("dir", ".kopsdr-dev/etcd", "where certificates and data live")
	mainPort := flag.Int("main-port", 4001, "client port of etcd main")
	eventsPort := flag.Int("events-port", 4002, "client port of etcd events")
	mainPeer := flag.Int("main-peer-port", 5001, "peer port of etcd main (127.0.0.1 only)")
	eventsPeer := flag.Int("events-peer-port", 5002, "peer port of etcd events (127.0.0.1 only)")
	keys := flag.Int("keys", 500, "Kubernetes-like keys to put into a fresh main")
	flag.Parse()
	ports := map[int]string{}
	for _, p := range []struct {
		flag string
		port int
	}{{"--main-port", *mainPort}, {"--events-port", *eventsPort}, {"--main-peer-port", *mainPeer}, {"--events-peer-port", *eventsPeer}} {
		if p.port <= 0 || p.port > 65535 {
			log.Fatalf("%s %d: use a port between 1 and 65535", p.flag, p.port)
		}
		if other, dup := ports[p.port]; dup {
			log.Fatalf("%s and %s are both %d: give each its own port", other, p.flag, p.port)
		}
		ports[p.port] = p.flag
	}

	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	certs, err := etcdtest.GenerateCerts(filepath.Join(abs, "pki"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	for _, c := range []struct {
		name       string
		port, peer int
	}{{"main", *mainPort, *mainPeer}, {"events", *eventsPort, *eventsPeer}} {
		e, err := startEtcd(filepath.Join(abs, c.name), c.name, c.port, c.peer, certs)
		if err != nil {
			log.Fatalf("etcd %s (client port %d, peer port %d): %v; choose free ports with --%s-port and --%s-peer-port",
				c.name, c.port, c.peer, err, c.name, c.name)
		}
		defer e.Close()
	}
	conn := etcdconn.Config{Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", *mainPort)},
		CACert: certs.CACert, Cert: certs.ClientCert, Key: certs.ClientKey}
	if err := seed(ctx, conn, *keys); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("etcd main on https://127.0.0.1:%d (peer port %d), events on https://127.0.0.1:%d (peer port %d)\n",
		*mainPort, *mainPeer, *eventsPort, *eventsPeer)
	fmt.Printf("kopsdr flags: --cacert %s --cert %s --key %s\n", certs.CACert, certs.ClientCert, certs.ClientKey)
	<-ctx.Done()
}

func startEtcd(dir, name string, port, peer int, certs etcdtest.CertFiles) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cu, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", port))
	pu, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", peer))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", name, pu)
	tls := transport.TLSInfo{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, TrustedCAFile: certs.CACert, ClientCertAuth: true}
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = tls, tls
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	<-e.Server.ReadyNotify()
	return e, nil
}

// seed puts some Kubernetes-like objects into main the first time: what a
// restore drill requires of main (the first namespaces, the service IP
// range, a master lease, here without an etcd lease so it stays), and n
// config maps of 2 KiB.
func seed(ctx context.Context, conn etcdconn.Config, n int) error {
	cli, err := etcdconn.New(ctx, conn)
	if err != nil {
		return err
	}
	defer cli.Close()
	if resp, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count > 0 {
		return err
	}
	for _, k := range []string{"/registry/namespaces/default", "/registry/namespaces/kube-system",
		"/registry/ranges/serviceips", "/registry/masterleases/127.0.0.1"} {
		if _, err := cli.Put(ctx, k, `{"kind":"dev"}`); err != nil {
			return err
		}
	}
	for i := range n {
		if _, err := cli.Put(ctx, etcdtest.Key("/registry/configmaps/default/", i), string(etcdtest.Value("/registry/configmaps/default/", i, 2048))); err != nil {
			return err
		}
	}
	return nil
}
