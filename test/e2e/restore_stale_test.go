package e2e

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/testenv"
)

// TestRestoreDetectsMemberLeftBehind: master b's Docker loses every kill of
// its events etcd-manager (a hung node, kill requests that never arrive)
// until the other two members have restored events without it. Then its
// kills go through: the restart proves a new process, but that process
// starts after the command is gone and serves its old data, the old
// cluster. The wait must see that member on the old cluster beside the
// restored one, restart it once more (which the stand-in, like
// etcd-manager on an old data dir, answers with the old cluster again)
// and stop with an error that names master, endpoint and container and
// says how to fix it.
func TestRestoreDetectsMemberLeftBehind(t *testing.T) {
	f := newRestoreFixture(t, true)
	ctx := testenv.Context(t, 8*time.Minute)
	b := f.c.Masters[1]
	eventsB := f.c.Container(t, b.Node, masters.Events)

	u, err := url.Parse(f.c.DockerHost)
	require.NoError(t, err)
	if u.Scheme != "unix" {
		t.Skipf("engine at %s; the proxy needs a unix socket", f.c.DockerHost)
	}
	var open atomic.Bool
	var refused atomic.Int32
	proxy := killBlockingProxy(t, u.Path, eventsB, &open, &refused)

	in := f.input()
	in.Approve, in.NoSafetyBackup, in.RestoreTimeout = true, true, "60s"
	in.Masters[1].Docker = "tcp://" + proxy
	run := f.start(t, ctx, in)

	// Let b's kills through once etcd-manager has consumed the events
	// command: b's etcd-manager then restarts onto a store without one.
	go func() {
		store := f.c.Store(t, masters.Events)
		seen := false
		for ctx.Err() == nil {
			cmds, err := etcdmanager.ListCommands(ctx, store)
			if err == nil {
				if len(cmds) > 0 {
					seen = true
				} else if seen {
					open.Store(true)
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	err = temporalconn.Await(ctx, run, nil)
	require.Error(t, err)
	t.Log(err)
	require.Positive(t, refused.Load(), "no kill of %s was held back", eventsB)
	require.True(t, open.Load(), "the events command was never consumed")
	ae := appError(t, err)
	require.Equal(t, activities.ErrTypeMemberLeftBehind, ae.Type())
	require.True(t, ae.NonRetryable())
	msg := err.Error()
	require.Contains(t, msg, "master "+b.Node)
	// The stand-in, like etcd, serves an old member's client port only
	// once it has a quorum of its old cluster: alone it does not answer.
	require.Regexp(t, regexp.QuoteMeta(f.c.EventsEndpoints[1])+" (still serves the OLD cluster|does not answer)", msg)
	require.Contains(t, msg, "k8s_etcd-manager_etcd-manager-events-"+b.Node+"_", "names the container")
	require.Contains(t, msg, "restarted it once more", "the one repair was tried")
	require.Contains(t, msg, "/etc/kubernetes/manifests/etcd-manager-events.manifest", "says what to do on the master")
	for _, ep := range []string{f.c.EventsEndpoints[0], f.c.EventsEndpoints[2]} {
		require.NotContains(t, msg, ep+" ", "only b is named")
	}
	// b was restarted by the restart step (by the kubelet: kopsdr leaves it
	// the grace period after a late kill) and once more by the repair.
	require.Equal(t, 2, f.c.RestartCount(t, eventsB), f.c.Timeline())
	require.NotContains(t, f.c.Timeline(), "port is already allocated", "kopsdr started a container while the kubelet replaced it")
}

// killBlockingProxy serves the Docker API of socket on 127.0.0.1 and
// refuses every kill of container (a name) until open is set.
func killBlockingProxy(t *testing.T, socket, container string, open *atomic.Bool, refused *atomic.Int32) string {
	t.Helper()
	cli := testenv.Docker(t)
	in, err := cli.ContainerInspect(context.Background(), container)
	require.NoError(t, err)
	return testenv.DockerProxy(t, socket, func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/kill") && !open.Load() &&
			(strings.Contains(req.URL.Path, in.ID) || strings.Contains(req.URL.Path, container)) {
			refused.Add(1)
			http.Error(w, `{"message":"kill held back by the test"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
}
