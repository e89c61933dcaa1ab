package restart_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/restart"
)

// Find matches by the kubelet's labels: the pod of one node (not a node
// whose name extends it), or with no master every node's pods of that etcd
// cluster; names and attempts come from the CRI metadata.
func TestContainerdFind(t *testing.T) {
	c := startCtrd(t)
	n1 := "ip-10-0-1-1"
	old := c.pod(t, "main", n1)
	c.kill(t, old)
	cur := c.waitAttempt(t, "etcd-manager-main-"+n1, 1)
	other := c.pod(t, "main", n1+"0") // ip-10-0-1-10
	events := c.pod(t, "events", n1)
	r := fastCtrd(20 * time.Second)
	ctx := ctxT(t)

	got, err := r.Find(ctx, c.target(n1), "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != cur || got[1].ID != old {
		t.Fatalf("Find(main, %s) = %+v; want running %s then dead %s", n1, got, cur, old)
	}
	if !got[0].Running || got[0].State != "running" || got[1].Running {
		t.Errorf("states: %+v", got)
	}
	if got[0].Name != c.criName("etcd-manager-main-"+n1, 1) || got[0].RestartCount != 1 || got[1].RestartCount != 0 {
		t.Errorf("names/attempts: %q %d, %q %d", got[0].Name, got[0].RestartCount, got[1].Name, got[1].RestartCount)
	}
	if !got[0].StartedAt.IsZero() || got[0].Created.IsZero() || !got[0].Created.After(got[1].Created) {
		t.Errorf("times: %+v; want no start time (containerd reports none) and creation times", got)
	}

	ev, err := r.Find(ctx, c.target(n1), "events")
	if err != nil || len(ev) != 1 || ev[0].ID != events {
		t.Fatalf("Find(events) = %+v, %v; want %s", ev, err, events)
	}

	all, err := r.Find(ctx, c.target(""), "main")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i, x := range all {
		ids[x.ID] = true
		if i > 0 && x.Running && !all[i-1].Running {
			t.Errorf("running %s listed after a stopped one", x.Name)
		}
	}
	if len(all) != 3 || !ids[old] || !ids[cur] || !ids[other] {
		t.Errorf("Find(main, any node) = %+v; want %s, %s and %s", all, old, cur, other)
	}

	none, err := r.Find(ctx, c.target(n1+".ec2.internal"), "main")
	if err != nil || len(none) != 0 {
		t.Errorf("Find(wrong node) = %+v, %v; want nothing", none, err)
	}
}

// Replace kills the baseline's process once; the kubelet makes a new
// container, proven by its new ID. A retry with the same baseline proves
// it again and kills nothing.
func TestContainerdReplaceKubeletReplaces(t *testing.T) {
	c := startCtrd(t)
	node, pod := "ip-10-0-2-1", "etcd-manager-main-ip-10-0-2-1"
	orig := c.pod(t, "main", node)
	r := fastCtrd(30 * time.Second)
	tg := c.target(node)
	base := baseline(t, r, tg, "main")

	res, err := r.Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := c.k.Pod(pod)
	if res.Action != restart.ActionKilled || res.Killed != orig || res.Before.ID != orig || res.After.ID != v.Current ||
		res.After.RestartCount != 1 || !strings.Contains(res.Proof, "not in the baseline") {
		t.Fatalf("Replace = %+v; want %s killed and attempt 1 (%s) proven by its new ID", res, orig, v.Current)
	}
	if n := c.proxy.Kills(orig); n != 1 {
		t.Errorf("%d kills of %s, want 1", n, orig)
	}

	again, err := r.Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != restart.ActionAlreadyRestarted || again.After.ID != res.After.ID || again.Killed != "" {
		t.Fatalf("retried Replace = %+v; want already-restarted %s", again, res.After.ID)
	}
	if kills := c.proxy.AllKills(); len(kills) != 1 || kills[orig] != 1 {
		t.Errorf("kills after the retry: %v; want only the one of %s", kills, orig)
	}
	if !c.running(res.After.ID) {
		t.Error("the replacement was disturbed")
	}
	c.noStarts(t)
}

// An earlier attempt's kill reached containerd and the kubelet replaced
// the container; the worker died before it could report. The retry
// recognises the replacement and kills nothing.
func TestContainerdReplaceAfterEarlierAttempt(t *testing.T) {
	c := startCtrd(t)
	node := "ip-10-0-3-1"
	orig := c.pod(t, "events", node)
	r := fastCtrd(30 * time.Second)
	tg := c.target(node)
	base := baseline(t, r, tg, "events")
	c.kill(t, orig)
	newID := c.waitAttempt(t, "etcd-manager-events-"+node, 1)

	res, err := r.Replace(ctxT(t), tg, "events", base)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != restart.ActionAlreadyRestarted || res.After.ID != newID || res.Killed != "" || res.Before.ID != orig {
		t.Fatalf("Replace = %+v; want already-restarted %s -> %s", res, orig, newID)
	}
	if kills := c.proxy.AllKills(); len(kills) != 0 {
		t.Errorf("kopsdr killed %v", kills)
	}
}

// Without a kubelet to replace the killed container, Replace fails after
// its timeout, saying what to check on which master, and has started
// nothing. Once the kubelet is back, a retry finds the replacement and
// does not kill again.
func TestContainerdReplaceWithoutKubelet(t *testing.T) {
	c := startCtrd(t)
	node, pod := "ip-10-0-4-1", "etcd-manager-main-ip-10-0-4-1"
	orig := c.pod(t, "main", node)
	tg := c.target(node)
	base := baseline(t, fastCtrd(time.Minute), tg, "main")
	c.k.Pause(node)

	start := time.Now()
	res, err := fastCtrd(3*time.Second).Replace(ctxT(t), tg, "main", base)
	if err == nil {
		t.Fatalf("Replace = %+v without a kubelet; want an error", res)
	}
	t.Log(err)
	for _, want := range []string{"master " + node, pod, "systemctl status kubelet", "crictl ps -a --name etcd-manager", "journalctl -u kubelet", "never starts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q", want)
		}
	}
	if d := time.Since(start); d < 3*time.Second || d > 15*time.Second {
		t.Errorf("Replace gave up after %s; want the 3s timeout", d)
	}
	if res.Killed != orig || c.running(orig) {
		t.Errorf("Replace = %+v; want %s killed", res, orig)
	}
	if v, _ := c.k.Pod(pod); v.Attempt != 0 || len(v.IDs) != 1 {
		t.Errorf("pod %s has %d containers, attempt %d; nothing may have made a new one", pod, len(v.IDs), v.Attempt)
	}
	c.noStarts(t)

	c.k.Resume(node)
	again, err := fastCtrd(30*time.Second).Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != restart.ActionAlreadyRestarted || again.After.ID == orig || again.After.RestartCount != 1 || again.Killed != "" {
		t.Fatalf("retried Replace = %+v; want the kubelet's attempt 1, nothing killed", again)
	}
	if n := c.proxy.Kills(orig); n != 1 {
		t.Errorf("%s was killed %d times, want once", orig, n)
	}
	c.noStarts(t)
}

// A kill request lost on the way (a cut connection) leaves the old
// process running; Replace sends the kill again.
func TestContainerdReplaceResendsLostKill(t *testing.T) {
	c := startCtrd(t)
	node := "ip-10-0-5-1"
	orig := c.pod(t, "main", node)
	r := fastCtrd(30 * time.Second)
	tg := c.target(node)
	base := baseline(t, r, tg, "main")
	c.proxy.DropKills(1)

	res, err := r.Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != restart.ActionKilled || res.Killed != orig || c.proxy.Dropped() != 1 || c.proxy.Kills(orig) != 1 {
		t.Fatalf("Replace = %+v, dropped %d, kills %d; want one lost and one delivered kill", res, c.proxy.Dropped(), c.proxy.Kills(orig))
	}
}

// The kill gate holds every kill until all Replace calls of the restart
// have arrived, including one that fails before it kills.
func TestContainerdKillGate(t *testing.T) {
	c := startCtrd(t)
	nodes := []string{"ip-10-0-6-1", "ip-10-0-6-2"}
	r := fastCtrd(30 * time.Second)
	bases := map[string][]restart.Container{}
	for _, n := range nodes {
		c.pod(t, "main", n)
		bases[n] = baseline(t, r, c.target(n), "main")
	}
	gate := restart.NewKillGate(len(nodes) + 1)
	ctx := restart.WithKillGate(ctxT(t), gate)
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			_, err := r.Replace(ctx, c.target(n), "main", bases[n])
			errs <- err
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if kills := c.proxy.AllKills(); len(kills) != 0 {
		t.Fatalf("killed %v before every call arrived at the gate", kills)
	}
	// The last call fails on bad input; it still arrives.
	if _, err := r.Replace(ctx, c.target("Bad_Node"), "main", nil); err == nil {
		t.Fatal("Replace with a bad node name succeeded")
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if kills := c.proxy.AllKills(); len(kills) != len(nodes) {
		t.Errorf("kills %v; want one per node", kills)
	}
}

// No etcd-manager pod for the node: the error lists those there are.
func TestContainerdNotFoundListsPods(t *testing.T) {
	c := startCtrd(t)
	node := "ip-10-0-7-1"
	c.pod(t, "main", node)
	r := fastCtrd(20 * time.Second)
	tg := c.target(node + ".ec2.internal")
	_, err := r.Replace(ctxT(t), tg, "main", nil)
	var nf *restart.NotFoundError
	if !errors.As(err, &nf) || nf.Master != tg.Master || !strings.Contains(err.Error(), "etcd-manager-main-"+node+" (running, attempt 0)") ||
		!strings.Contains(err.Error(), "containerd namespace k8s.io") {
		t.Fatalf("err = %v; want *NotFoundError listing etcd-manager-main-%s", err, node)
	}
	t.Log(err)
	if _, err := r.LogTail(ctxT(t), tg, "main", 10); !errors.As(err, &nf) {
		t.Errorf("LogTail err = %v; want *NotFoundError", err)
	}
}

// The log is on the master's disk, not in containerd's API: LogTail says
// so and where it is.
func TestContainerdLogTail(t *testing.T) {
	c := startCtrd(t)
	node := "ip-10-0-8-1"
	id := c.pod(t, "main", node)
	out, err := fastCtrd(20*time.Second).LogTail(ctxT(t), c.target(node), "main", 30)
	v, _ := c.k.Pod("etcd-manager-main-" + node)
	if out != "" || !errors.Is(err, restart.ErrLogsUnavailable) || !strings.Contains(err.Error(), v.LogPath) ||
		!strings.Contains(err.Error(), "crictl logs --tail 30 "+id[:12]) {
		t.Fatalf("LogTail = %q, %v; want ErrLogsUnavailable naming %s and the crictl command", out, err, v.LogPath)
	}
	t.Log(err)
}

// A containerd that does not answer is *UnreachableError, retryable, and
// says containerd, not Docker.
func TestContainerdUnreachable(t *testing.T) {
	tg := restart.Target{Master: "ip-10-0-0-1.ec2.internal", Endpoint: "unix://" + filepath.Join(t.TempDir(), "none.sock"), Runtime: restart.RuntimeContainerd}
	r := restart.NewContainerd(nil, restart.WithTimeout(5*time.Second))
	ctx := ctxT(t)
	_, findErr := r.Find(ctx, tg, "main")
	_, replaceErr := r.Replace(ctx, tg, "main", nil)
	_, logErr := r.LogTail(ctx, tg, "main", 10)
	for _, err := range []error{findErr, replaceErr, logErr} {
		var ue *restart.UnreachableError
		if !errors.As(err, &ue) || ue.Master != tg.Master || ue.Endpoint != tg.Endpoint ||
			!strings.Contains(err.Error(), "containerd at "+tg.Endpoint) || strings.Contains(err.Error(), "Docker") {
			t.Fatalf("err = %v; want *UnreachableError naming containerd at %s", err, tg.Endpoint)
		}
	}
	t.Log(findErr)
}

// Every connection goes through the dial function, which gets the target
// with the default socket filled in.
func TestContainerdDialsThroughDialFunc(t *testing.T) {
	c := startCtrd(t)
	node := "ip-10-0-9-1"
	c.pod(t, "main", node)
	var dials atomic.Int32
	var gotEndpoint atomic.Value
	r := restart.NewContainerd(func(ctx context.Context, tg restart.Target) (net.Conn, error) {
		dials.Add(1)
		gotEndpoint.Store(tg.Endpoint)
		return (&net.Dialer{}).DialContext(ctx, "unix", c.proxy.Socket) // as an SSH forward would
	})
	cs, err := r.Find(ctxT(t), restart.Target{Master: node, Runtime: restart.RuntimeContainerd}, "main")
	if err != nil || len(cs) != 1 {
		t.Fatalf("Find = %+v, %v", cs, err)
	}
	if dials.Load() != 1 || gotEndpoint.Load() != restart.DefaultContainerdSocket {
		t.Errorf("%d dials with endpoint %v; want 1 with %s", dials.Load(), gotEndpoint.Load(), restart.DefaultContainerdSocket)
	}

	failing := restart.NewContainerd(func(context.Context, restart.Target) (net.Conn, error) {
		return nil, errors.New("ssh: handshake failed")
	})
	_, err = failing.Find(ctxT(t), restart.Target{Master: node, Runtime: restart.RuntimeContainerd}, "main")
	var ue *restart.UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "ssh: handshake failed") {
		t.Fatalf("err = %v; want *UnreachableError carrying the dial error", err)
	}
}

func TestContainerdBadInput(t *testing.T) {
	ok := restart.Target{Runtime: restart.RuntimeContainerd}
	for _, c := range []struct {
		name    string
		tg      restart.Target
		cluster string
		field   string
	}{
		{"docker runtime", restart.Target{Runtime: restart.RuntimeDocker}, "main", "runtime"},
		{"tcp endpoint", restart.Target{Endpoint: "tcp://10.0.0.1:2376"}, "main", "containerdEndpoint"},
		{"relative path", restart.Target{Endpoint: "run/containerd/containerd.sock"}, "main", "containerdEndpoint"},
		{"tls", restart.Target{TLSCA: "/ca.pem"}, "main", "dockerTLSCA"},
		{"cluster", ok, "Main", "etcdCluster"},
		{"master", restart.Target{Master: "a_b"}, "main", "master"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := restart.NewContainerd(nil).Find(context.Background(), c.tg, c.cluster)
			ie, isInput := inputerr.As(err)
			if !isInput || ie.Field != c.field {
				t.Fatalf("err = %v; want *inputerr.Error on %s", err, c.field)
			}
		})
	}
}

// Target.Validate checks a containerd target as the containerd restarter
// does; Docker targets are checked as before.
func TestValidateByRuntime(t *testing.T) {
	if err := (restart.Target{Runtime: restart.RuntimeContainerd}).Validate(); err != nil {
		t.Errorf("containerd target with the default socket: %v", err)
	}
	err := restart.Target{Runtime: restart.RuntimeContainerd, Endpoint: "tcp://10.0.0.1:2376"}.Validate()
	if ie, ok := inputerr.As(err); !ok || ie.Field != "containerdEndpoint" {
		t.Errorf("containerd target with a tcp endpoint: %v; want *inputerr.Error on containerdEndpoint", err)
	}
	err = restart.Target{Endpoint: restart.DefaultContainerdSocket}.Validate()
	if err != nil {
		t.Errorf("docker target on a unix socket: %v", err)
	}
	if ie, ok := inputerr.As(restart.Target{}.Validate()); !ok || ie.Field != "dockerEndpoint" {
		t.Errorf("docker target without endpoint: want *inputerr.Error on dockerEndpoint")
	}
}

// Restart compares start times, which containerd does not report.
func TestContainerdRestartUnsupported(t *testing.T) {
	_, err := restart.NewContainerd(nil).Restart(context.Background(), restart.Target{Master: "n"}, "main", time.Now())
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v; want errors.ErrUnsupported", err)
	}
}
