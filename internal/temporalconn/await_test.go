package temporalconn

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPollTimedOut: a poll that ran out of time is waited out again; a
// workflow's own ending, and any other error, is not.
func TestPollTimedOut(t *testing.T) {
	for _, err := range []error{
		serviceerror.NewDeadlineExceeded("context deadline exceeded"),
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
		fmt.Errorf("polling history: %w", context.DeadlineExceeded),
	} {
		require.True(t, pollTimedOut(err), "%T %v", err, err)
	}
	for _, err := range []error{
		serviceerror.NewUnavailable("connection refused"),
		serviceerror.NewNotFound("workflow not found"),
		temporal.NewApplicationError("restore failed", "RestoreTimeout"),
		context.Canceled,
		errors.New("other"),
	} {
		require.False(t, pollTimedOut(err), "%T %v", err, err)
	}
}

// timingOutRun is a run whose first polls time out, as a loaded server's
// do; it embeds the interface for the methods Await does not call.
type timingOutRun struct {
	client.WorkflowRun
	timeouts, polls int
	final           error
}

func (r *timingOutRun) Get(ctx context.Context, valuePtr any) error {
	r.polls++
	if r.polls <= r.timeouts {
		return serviceerror.NewDeadlineExceeded("context deadline exceeded")
	}
	return r.final
}

// TestAwaitWaitsOutTimedOutPolls: Await polls again after a timed-out
// poll and returns what the poll after it says, a workflow's failure
// included; an ended context stops it.
func TestAwaitWaitsOutTimedOutPolls(t *testing.T) {
	ctx := context.Background()
	run := &timingOutRun{timeouts: 2}
	require.NoError(t, Await(ctx, run, nil))
	require.Equal(t, 3, run.polls)

	failed := temporal.NewApplicationError("restore failed", "RestoreTimeout")
	run = &timingOutRun{timeouts: 1, final: failed}
	require.ErrorIs(t, Await(ctx, run, nil), failed)
	require.Equal(t, 2, run.polls)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	run = &timingOutRun{timeouts: 5}
	require.True(t, pollTimedOut(Await(cctx, run, nil)))
	require.Equal(t, 1, run.polls, "no poll after the context ended")
}
