package devserver

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/test/loopback"
)

const orphanQueue = "orphans"

func slowWorkflow(ctx workflow.Context) (int32, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute, // far beyond the test: only a release can make it retry
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond},
	})
	var attempt int32
	err := workflow.ExecuteActivity(ctx, "Slow").Get(ctx, &attempt)
	return attempt, err
}

// TestReleaseOrphans: an attempt started by an earlier dev worker is failed
// and retried at once; attempts of other workers, and our own, are not.
func TestReleaseOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded Temporal server")
	}
	port := loopback.Ports(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := Start(ctx, Options{DataDir: t.TempDir(), Port: port, UIPort: -1})
	require.NoError(t, err)
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.Frontend})
	require.NoError(t, err)
	defer c.Close()

	// The "dead" worker: starts attempt 1 and hangs, as a worker whose
	// process died would look to the server.
	var started atomic.Int32
	startWorker := func(identity string, hang bool) worker.Worker {
		w := worker.New(c, orphanQueue, worker.Options{Identity: identity})
		w.RegisterWorkflow(slowWorkflow)
		w.RegisterActivityWithOptions(func(ctx context.Context) (int32, error) {
			started.Add(1)
			if hang {
				<-ctx.Done()
				select {} // never answer, like a dead process
			}
			return activity.GetInfo(ctx).Attempt, nil
		}, activity.RegisterOptions{Name: "Slow"})
		require.NoError(t, w.Start())
		return w
	}
	old := IdentityPrefix + "1@host@1"
	dead := startWorker(old, true)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: orphanQueue}, slowWorkflow)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return started.Load() == 1 }, time.Minute, 50*time.Millisecond)
	dead.Stop() // no more polls; the hung attempt never answers

	// Not ours to release: another worker's attempt, or our own.
	released, err := ReleaseOrphans(ctx, c, "default", old)
	require.NoError(t, err)
	assert.Empty(t, released)

	self := WorkerIdentity()
	require.Eventually(t, func() bool {
		released, err = ReleaseOrphans(ctx, c, "default", self)
		return err == nil && len(released) == 1 // visibility may lag a moment
	}, 30*time.Second, 200*time.Millisecond)
	assert.Equal(t, "Slow", released[0].Activity)
	assert.Equal(t, old, released[0].Worker)
	assert.Equal(t, int32(1), released[0].Attempt)

	startWorker(self, false)
	began := time.Now()
	var attempt int32
	require.NoError(t, run.Get(ctx, &attempt))
	assert.Equal(t, int32(2), attempt, "the retry ran, on the new worker")
	assert.Less(t, time.Since(began), 30*time.Second, "long before the one-minute heartbeat timeout")
}
