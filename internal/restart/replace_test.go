package restart_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// baseline is what RecordBaseline stores: Find's answer right after the
// restore command was written.
func baseline(t *testing.T, r restart.Restarter, tg restart.Target, cluster string) []restart.Container {
	t.Helper()
	cs, err := r.Find(ctxT(t), tg, cluster)
	if err != nil || len(cs) == 0 {
		t.Fatalf("baseline: %+v, %v", cs, err)
	}
	return cs
}

// An earlier attempt killed the baseline's container and the kubelet
// replaced it; the worker died before it could report. The retry must
// recognise the replacement (not in the baseline) and kill nothing.
func TestReplaceRecognisesKubeletReplacementAfterEarlierAttempt(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	uid := random(8)
	orig := run(t, cli, spec{name: kopsName("main", tg.Master, uid, 0)})
	r := fast()
	base := baseline(t, r, tg, "main")

	// The earlier attempt: its kill reached Docker, the kubelet did the rest.
	replaced := kubelet(t, cli, orig, kopsName("main", tg.Master, uid, 1))
	if err := cli.ContainerKill(context.Background(), orig, "KILL"); err != nil {
		t.Fatal(err)
	}
	newID := <-replaced
	started := inspect(t, cli, newID).State.StartedAt

	res, err := r.Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != restart.ActionAlreadyRestarted || res.Before.ID != orig || res.After.ID != newID || res.Killed != "" ||
		!strings.Contains(res.Proof, "not in the baseline") {
		t.Fatalf("Replace = %+v; want already-restarted %s -> %s, proven by a new ID", res, orig, newID)
	}
	if in := inspect(t, cli, newID); !in.State.Running || in.State.StartedAt != started {
		t.Errorf("the replacement was disturbed: running=%v started %s, was %s", in.State.Running, in.State.StartedAt, started)
	}
}

// An earlier attempt killed the container and, with no kubelet, started it
// again itself: same ID, later StartedAt on the master's clock.
func TestReplaceRecognisesRestartInPlace(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	id := run(t, cli, spec{name: kopsName("events", tg.Master, random(8), 0)})
	r := fast()
	base := baseline(t, r, tg, "events")
	first, err := r.Replace(ctxT(t), tg, "events", base)
	if err != nil || first.Action != restart.ActionStartedByKopsdr || first.After.ID != id || first.Killed != id {
		t.Fatalf("first Replace = %+v, %v; want started-by-kopsdr of %s", first, err, id)
	}
	again, err := r.Replace(ctxT(t), tg, "events", base)
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != restart.ActionAlreadyRestarted || again.After.ID != id || !again.After.StartedAt.Equal(first.After.StartedAt) ||
		!strings.Contains(again.Proof, "started again") {
		t.Fatalf("retried Replace = %+v; want already-restarted, the same process, proven by its StartedAt", again)
	}
}

// A container that was never restarted is killed, however the worker's and
// the master's clocks disagree: the old Restart, given a `since` that a
// skewed clock put before the container's start, takes the old process for
// a restarted one; Replace, proving against the baseline, does not.
func TestReplaceKillsUnrestartedContainerWhateverTheClocks(t *testing.T) {
	cli, tg := docker(t)
	tg.Master = node(t, cli)
	uid := random(8)
	orig := run(t, cli, spec{name: kopsName("main", tg.Master, uid, 0)})
	r := fast()
	base := baseline(t, r, tg, "main")

	// The trap: a worker clock an hour behind the master's.
	skewed, err := r.Restart(ctxT(t), tg, "main", base[0].StartedAt.Add(-time.Hour))
	if err != nil || skewed.Action != restart.ActionAlreadyRestarted || skewed.After.ID != orig {
		t.Fatalf("Restart with a skewed since = %+v, %v; this test expects the clock trap to exist", skewed, err)
	}

	// A baseline taken from some other moment must not matter either: only
	// IDs and the master's own start times are compared.
	replaced := kubelet(t, cli, orig, kopsName("main", tg.Master, uid, 1))
	res, err := r.Replace(ctxT(t), tg, "main", base)
	if err != nil {
		t.Fatal(err)
	}
	newID := <-replaced
	if res.Action != restart.ActionKilled || res.Killed != orig || res.After.ID != newID {
		t.Fatalf("Replace = %+v; want %s killed and %s proven", res, orig, newID)
	}
	if in := inspect(t, cli, orig); in.State.Running || in.State.ExitCode != 137 {
		t.Errorf("original: running=%v exit=%d; want killed", in.State.Running, in.State.ExitCode)
	}
}

// A kill whose request never reached Docker (the worker died with it in
// flight, a connection cut) leaves the old process running. Within one
// call Replace sends the kill again; a retried call, with the same
// baseline, kills it too.
func TestReplaceRedoesKillThatNeverReachedDocker(t *testing.T) {
	cli, tg := docker(t)
	u, _ := url.Parse(tg.Endpoint)
	if u.Scheme != "unix" {
		t.Skipf("engine at %s; the proxy needs a unix socket", tg.Endpoint)
	}
	var drop, dropped atomic.Int32
	tg.Endpoint = "tcp://" + droppingProxy(t, u.Path, &drop, &dropped)
	tg.Master = node(t, cli)
	id := run(t, cli, spec{name: kopsName("main", tg.Master, random(8), 0)})
	r := fast()
	base := baseline(t, r, tg, "main")

	t.Run("lost with the worker", func(t *testing.T) {
		drop.Store(1000)
		ctx, cancel := context.WithCancel(ctxT(t))
		go func() {
			for dropped.Load() == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			cancel() // the worker dies with its kill request
		}()
		if _, err := r.Replace(ctx, tg, "main", base); err == nil {
			t.Fatal("Replace succeeded although every kill was lost")
		}
		if !inspect(t, cli, id).State.Running {
			t.Fatal("the container died although no kill reached Docker")
		}
	})
	t.Run("lost once, then resent", func(t *testing.T) {
		drop.Store(1)
		before := dropped.Load()
		res, err := r.Replace(ctxT(t), tg, "main", base)
		if err != nil {
			t.Fatal(err)
		}
		if dropped.Load() != before+1 {
			t.Fatalf("%d kills dropped, want 1", dropped.Load()-before)
		}
		if res.Action != restart.ActionStartedByKopsdr || res.After.ID != id || !res.After.StartedAt.After(base[0].StartedAt) {
			t.Fatalf("Replace = %+v; want the container killed and started again", res)
		}
	})
}

// droppingProxy serves the Docker API of socket on 127.0.0.1 and, while
// drop > 0, swallows kill requests: the connection is cut before Docker
// sees them.
func droppingProxy(t *testing.T, socket string, drop, dropped *atomic.Int32) string {
	t.Helper()
	return testenv.DockerProxy(t, socket, func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/kill") || drop.Load() <= 0 {
			return false
		}
		drop.Add(-1)
		dropped.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		http.Error(w, "dropped", http.StatusBadGateway)
		return true
	})
}
