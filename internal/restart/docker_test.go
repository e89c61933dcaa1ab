package restart_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// Short waits keep the tests fast; the production defaults are longer.
func fast() restart.Restarter {
	return restart.NewDocker(restart.WithGrace(time.Second), restart.WithTimeout(30*time.Second), restart.WithPoll(100*time.Millisecond))
}

func TestFindMatchesKopsNamesByPrefix(t *testing.T) {
	cli, tg := docker(t)
	n1 := node(t, cli)
	n10 := n1 + "0" // ip-10-x-1 vs ip-10-x-10: a bare prefix would match both
	uid := random(8)

	old := run(t, cli, spec{name: kopsName("main", n1, uid, 0)})
	if err := cli.ContainerKill(context.Background(), old, "KILL"); err != nil {
		t.Fatal(err)
	}
	cur := run(t, cli, spec{name: kopsName("main", n1, uid, 1)})
	other := run(t, cli, spec{name: kopsName("main", n10, random(8), 0)})
	events := run(t, cli, spec{name: kopsName("events", n1, random(8), 0)})
	run(t, cli, spec{name: "k8s_POD_etcd-manager-main-" + n1 + "_kube-system_" + uid + "_0"}) // the pod's pause container
	r := fast()
	ctx := ctxT(t)

	tg.Master = n1
	got, err := r.Find(ctx, tg, "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != cur || got[1].ID != old {
		t.Fatalf("Find(main, %s) = %+v; want running %s then exited %s", n1, got, cur, old)
	}
	if !got[0].Running || got[1].Running || got[1].State != "exited" || got[0].StartedAt.IsZero() {
		t.Errorf("states: %+v", got)
	}
	if got[0].Name != kopsName("main", n1, uid, 1) {
		t.Errorf("name %q", got[0].Name)
	}

	ev, err := r.Find(ctx, tg, "events")
	if err != nil || len(ev) != 1 || ev[0].ID != events {
		t.Fatalf("Find(events) = %+v, %v; want %s", ev, err, events)
	}

	// Without a master every node's main containers match, running first.
	tg.Master = ""
	all, err := r.Find(ctx, tg, "main")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	sawStopped := false
	for _, c := range all {
		ids[c.ID] = true
		if !strings.HasPrefix(c.Name, "k8s_etcd-manager_etcd-manager-main-") {
			t.Errorf("Find(main, any) returned %s", c.Name)
		}
		if !c.Running {
			sawStopped = true
		} else if sawStopped {
			t.Errorf("running %s listed after a stopped container", c.Name)
		}
	}
	for _, id := range []string{old, cur, other} {
		if !ids[id] {
			t.Errorf("Find(main, any) misses %s", id)
		}
	}
	if ids[events] {
		t.Error("Find(main, any) returned the events container")
	}
}

func TestRestartKubeletReplacesKilledContainer(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	uid := random(8)
	orig := run(t, cli, spec{name: kopsName("main", tg.Master, uid, 0)})
	replaced := kubelet(t, cli, orig, kopsName("main", tg.Master, uid, 1))
	// The full default grace: a busy machine must not make Restart start
	// the old container before the simulated kubelet is done.
	r := restart.NewDocker(restart.WithPoll(100 * time.Millisecond))
	ctx := ctxT(t)
	since := time.Now() // the restore command was written after the container started

	res, err := r.Restart(ctx, tg, "main", since)
	if err != nil {
		t.Fatal(err)
	}
	var newID string
	select {
	case newID = <-replaced:
	case <-ctx.Done():
		t.Fatalf("the kubelet never replaced the container; Restart = %+v", res)
	}
	if res.Action != restart.ActionKilled || res.Before.ID != orig || res.After.ID != newID {
		t.Fatalf("Restart = %+v; want killed %s, after %s", res, orig, newID)
	}
	if !res.After.Running || !res.After.StartedAt.After(res.Before.StartedAt) || res.After.Name != kopsName("main", tg.Master, uid, 1) {
		t.Errorf("after: %+v", res.After)
	}
	if in := inspect(t, cli, orig); in.State.Running || in.State.ExitCode != 137 {
		t.Errorf("original container: running=%v exit=%d; want killed (137)", in.State.Running, in.State.ExitCode)
	}

	// A retried activity calls again with the same since: nothing is
	// killed, the kubelet's container keeps running.
	again, err := r.Restart(ctx, tg, "main", since)
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != restart.ActionAlreadyRestarted || again.After.ID != newID || !again.After.StartedAt.Equal(res.After.StartedAt) {
		t.Fatalf("second Restart = %+v; want already-restarted %s", again, newID)
	}
	in := inspect(t, cli, newID)
	if !in.State.Running || in.State.StartedAt != res.After.StartedAt.Format(time.RFC3339Nano) {
		t.Errorf("replacement was disturbed: running=%v started=%s", in.State.Running, in.State.StartedAt)
	}
	if cs, _ := r.Find(ctx, tg, "main"); len(cs) != 2 {
		t.Errorf("%d containers after two Restarts, want 2: %+v", len(cs), cs)
	}
}

func TestRestartStartsKilledContainerWithoutKubelet(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	id := run(t, cli, spec{name: kopsName("events", tg.Master, random(8), 0)})
	r := fast()
	ctx := ctxT(t)

	res, err := r.Restart(ctx, tg, "events", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != restart.ActionStartedByKopsdr || res.Before.ID != id || res.After.ID != id {
		t.Fatalf("Restart = %+v; want started-by-kopsdr of %s", res, id)
	}
	if !res.After.Running || !res.After.StartedAt.After(res.Before.StartedAt) {
		t.Errorf("after: %+v", res.After)
	}
	// Both runs are in the log: the process really started again.
	waitLog(t, r, tg, "events", "stderr last line")
	out, err := r.LogTail(ctx, tg, "events", 0)
	if err != nil || strings.Count(out, "sleeper start") != 2 {
		t.Errorf("log shows %d starts, want 2: %q %v", strings.Count(out, "sleeper start"), out, err)
	}
}

// TestDockerRestartPolicyIgnoresKill records how Docker 20.10 treats a
// restart policy: a container killed through the API (ContainerKill, as
// `docker kill`) counts as stopped by hand and is NOT restarted, whatever
// the policy; a process that dies by itself is. So without a kubelet,
// Restart must start the container itself.
func TestDockerRestartPolicyIgnoresKill(t *testing.T) {
	cli, tg := docker(t)
	r := fast()
	ctx := ctxT(t)
	for _, policy := range []container.RestartPolicyMode{container.RestartPolicyAlways, container.RestartPolicyUnlessStopped} {
		t.Run(string(policy), func(t *testing.T) {
			tg := tg
			tg.Master = node(t, cli)
			id := run(t, cli, spec{name: kopsName("main", tg.Master, random(8), 0), policy: policy})
			res, err := r.Restart(ctx, tg, "main", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != restart.ActionStartedByKopsdr || res.After.ID != id || res.After.RestartCount != 0 {
				t.Fatalf("Restart = %+v; want Docker to leave the killed container alone (restart count 0) and kopsdr to start it", res)
			}
		})
	}
	t.Run("crash", func(t *testing.T) {
		n := node(t, cli)
		id := run(t, cli, spec{name: kopsName("main", n, random(8), 0), policy: container.RestartPolicyAlways, args: []string{"crash"}})
		deadline := time.Now().Add(20 * time.Second)
		for inspect(t, cli, id).RestartCount == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Docker never restarted a crashed container with policy always")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func TestRestartStartsStoppedContainer(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	id := run(t, cli, spec{name: kopsName("main", tg.Master, random(8), 0), noStart: true})
	res, err := fast().Restart(ctxT(t), tg, "main", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != restart.ActionStartedByKopsdr || res.After.ID != id || !res.After.Running {
		t.Fatalf("Restart = %+v; want kopsdr to start the stopped %s", res, id)
	}
}

func TestRestartRefusesSeveralRunning(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	uid := random(8)
	a := run(t, cli, spec{name: kopsName("main", tg.Master, uid, 0)})
	b := run(t, cli, spec{name: kopsName("main", tg.Master, uid, 1)})
	_, err := fast().Restart(ctxT(t), tg, "main", time.Now())
	if err == nil || !strings.Contains(err.Error(), "2 k8s_etcd-manager_etcd-manager-main-"+tg.Master) {
		t.Fatalf("err = %v; want a refusal naming both containers", err)
	}
	t.Log(err)
	for _, id := range []string{a, b} {
		if !inspect(t, cli, id).State.Running {
			t.Errorf("%s was killed", id)
		}
	}
}

func TestNotFoundListsWhatIsThere(t *testing.T) {
	cli, tg := docker(t)
	n := node(t, cli)
	run(t, cli, spec{name: kopsName("main", n, random(8), 0)})
	r := fast()
	ctx := ctxT(t)

	tg.Master = n + ".ec2.internal" // a plausible wrong node name
	cs, err := r.Find(ctx, tg, "main")
	if err != nil || len(cs) != 0 {
		t.Fatalf("Find = %v, %v; want none", cs, err)
	}
	_, err = r.Restart(ctx, tg, "main", time.Now())
	var nf *restart.NotFoundError
	if !errors.As(err, &nf) || nf.Master != tg.Master || !strings.Contains(err.Error(), tg.Master) ||
		!strings.Contains(err.Error(), "k8s_etcd-manager_etcd-manager-main-"+n+"_") {
		t.Fatalf("Restart err = %v; want *NotFoundError naming the master and listing %s's container", err, n)
	}
	t.Log(err)
	if _, err := r.LogTail(ctx, tg, "main", 10); !errors.As(err, &nf) {
		t.Fatalf("LogTail err = %v; want *NotFoundError", err)
	}
}

func TestLogTail(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	run(t, cli, spec{name: kopsName("main", tg.Master, random(8), 0)})
	r := fast()
	waitLog(t, r, tg, "main", "stderr last line")

	out, err := r.LogTail(ctxT(t), tg, "main", 2)
	if err != nil {
		t.Fatal(err)
	}
	// Demultiplexed: plain text from both streams, no 8-byte frame headers.
	if out != "stdout line 5\nstderr last line\n" {
		t.Fatalf("LogTail(2) = %q", out)
	}
	all, err := r.LogTail(ctxT(t), tg, "main", 0)
	if err != nil || !strings.HasPrefix(all, "sleeper start pid=1\n") || strings.Count(all, "\n") != 7 {
		t.Fatalf("LogTail(0) = %q, %v; want all 7 lines", all, err)
	}
}

func TestUnreachableDaemonNamesMaster(t *testing.T) {
	tg := restart.Target{Master: "ip-10-0-0-1.ec2.internal", Endpoint: "tcp://127.0.0.1:1"}
	r := restart.NewDocker()
	ctx := ctxT(t)
	_, findErr := r.Find(ctx, tg, "main")
	_, restartErr := r.Restart(ctx, tg, "main", time.Now())
	_, logErr := r.LogTail(ctx, tg, "main", 10)
	for _, err := range []error{findErr, restartErr, logErr} {
		var ue *restart.UnreachableError
		if !errors.As(err, &ue) || ue.Master != tg.Master || ue.Endpoint != tg.Endpoint {
			t.Fatalf("err = %v; want *UnreachableError", err)
		}
		t.Log(err)
		if msg := err.Error(); !strings.Contains(msg, "master ip-10-0-0-1.ec2.internal") || !strings.Contains(msg, "tcp://127.0.0.1:1") {
			t.Errorf("message %q does not name master and endpoint", msg)
		}
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := restart.Target{Endpoint: "unix:///var/run/docker.sock"}
	for _, c := range []struct {
		name    string
		tg      restart.Target
		cluster string
		field   string
	}{
		{"no endpoint", restart.Target{}, "main", "dockerEndpoint"},
		{"http endpoint", restart.Target{Endpoint: "http://10.0.0.1:2375"}, "main", "dockerEndpoint"},
		{"tcp without port", restart.Target{Endpoint: "tcp://10.0.0.1"}, "main", "dockerEndpoint"},
		{"unix without path", restart.Target{Endpoint: "unix://"}, "main", "dockerEndpoint"},
		{"tls over unix", restart.Target{Endpoint: "unix:///var/run/docker.sock", TLSCA: ca}, "main", "dockerEndpoint"},
		{"cert without ca", restart.Target{Endpoint: "tcp://10.0.0.1:2376", TLSCert: ca, TLSKey: ca}, "main", "dockerTLSCA"},
		{"cert without key", restart.Target{Endpoint: "tcp://10.0.0.1:2376", TLSCA: ca, TLSCert: ca}, "main", "dockerTLSCert"},
		{"missing key file", restart.Target{Endpoint: "tcp://10.0.0.1:2376", TLSCA: ca, TLSCert: ca, TLSKey: filepath.Join(dir, "nope")}, "main", "dockerTLSKey"},
		{"cluster", ok, "Main", "etcdCluster"},
		{"master", restart.Target{Endpoint: ok.Endpoint, Master: "a_b"}, "main", "master"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := restart.NewDocker().Find(context.Background(), c.tg, c.cluster)
			ie, isInput := inputerr.As(err)
			if !isInput || ie.Field != c.field {
				t.Fatalf("err = %v; want *inputerr.Error on %s", err, c.field)
			}
		})
	}
}

// TestTLSEndpoint reaches the engine as a master's daemon would be reached
// over the network: tcp:// with TLS and a client certificate, through a
// TLS proxy in front of the local socket that demands the client cert.
func TestTLSEndpoint(t *testing.T) {
	cli, tg := docker(t)
	u, _ := url.Parse(tg.Endpoint)
	if u.Scheme != "unix" {
		t.Skipf("engine at %s; the TLS proxy needs a unix socket", tg.Endpoint)
	}
	certs, err := etcdtest.GenerateCerts(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsProxy(t, u.Path, certs)
	tg = restart.Target{Endpoint: "tcp://" + addr, TLSCA: certs.CACert, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey, Master: node(t, cli)}
	id := run(t, cli, spec{name: kopsName("main", tg.Master, random(8), 0)})
	r := fast()
	waitLog(t, r, tg, "main", "stderr last line")

	cs, err := r.Find(ctxT(t), tg, "main")
	if err != nil || len(cs) != 1 || cs[0].ID != id {
		t.Fatalf("Find over TLS = %+v, %v", cs, err)
	}
	res, err := r.Restart(ctxT(t), tg, "main", time.Now())
	if err != nil || res.Action != restart.ActionStartedByKopsdr {
		t.Fatalf("Restart over TLS = %+v, %v", res, err)
	}

	// Without a client cert the daemon refuses; the error names the master.
	tg.TLSCert, tg.TLSKey = "", ""
	_, err = r.Find(ctxT(t), tg, "main")
	if err == nil || !strings.Contains(err.Error(), tg.Master) {
		t.Fatalf("Find without client cert: %v", err)
	}
	t.Log(err)
}

// tlsProxy serves the Docker API of socket on 127.0.0.1 over TLS, requiring
// a client certificate signed by the test CA, like dockerd --tlsverify.
func tlsProxy(t *testing.T, socket string, certs etcdtest.CertFiles) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "docker"
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}},
		FlushInterval: -1,
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
