package temporalconn

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Await waits for run to end and decodes its result into valuePtr, as
// run.Get does, but goes on waiting when one long poll for the workflow's
// history is not answered in time. The SDK gives each poll 65 s; the
// server answers an idle one after 20 s, but a loaded one can miss that
// (seen on a 2-core machine running five test processes, each with its
// own Temporal server, beside 20 CPU hogs), and then run.Get returns
// "context deadline exceeded" while the workflow runs on: a CLI waiting
// on a restore would give up on it. Await returns whatever else run.Get
// returns, the workflow's own failure and timeout included, and the last
// error once ctx ends.
func Await(ctx context.Context, run client.WorkflowRun, valuePtr any) error {
	for {
		err := run.Get(ctx, valuePtr)
		if err == nil || ctx.Err() != nil || !pollTimedOut(err) {
			return err
		}
		// A server that answers at once with a timeout of its own (one
		// of its internal calls ran out of time) is not asked again in
		// a tight loop.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(awaitPause):
		}
	}
}

// awaitPause is the wait before Await polls again.
const awaitPause = time.Second

// pollTimedOut reports whether err is a call to Temporal that ran out of
// time, as opposed to a workflow that failed or timed out.
func pollTimedOut(err error) bool {
	var ended *temporal.WorkflowExecutionError
	if errors.As(err, &ended) {
		return false
	}
	var deadline *serviceerror.DeadlineExceeded
	return errors.As(err, &deadline) || errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}
