package devserver

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Why this exists. When kopsdr-worker --dev dies, its worker dies with the
// Temporal server it embeds. The server persists every activity attempt
// the worker had started, and on restart it can only find out that the
// attempt is lost the usual way: when its heartbeat timeout (20-30 s for
// kopsdr's long activities) or start-to-close timeout (minutes for the
// short ones) runs out, counted from the last heartbeat, and then the
// retry backoff. So in-flight work resumed 20 s to minutes after a restart.
//
// In dev mode kopsdr knows better: a worker that polled this server from
// an earlier incarnation of this same process is certainly gone, because
// the server it polled went down with it. So at start the worker fails
// those attempts itself, as a worker whose process died would have if it
// could, and Temporal retries them at once under their retry policy. Work
// that other workers (a separate kopsdr-worker pointed at the dev server)
// had started is never touched: they may still be running it.

// IdentityPrefix starts the identity of every worker a kopsdr dev process
// runs, so its activity attempts can be told from anyone else's.
const IdentityPrefix = "kopsdr-dev:"

// ErrTypeWorkerLost is the failure type of an attempt released because its
// dev worker died.
const ErrTypeWorkerLost = "DevWorkerLost"

// WorkerIdentity is the identity for this process's embedded worker: the
// prefix, pid, host and start time, so no two incarnations share one.
func WorkerIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s%d@%s@%d", IdentityPrefix, os.Getpid(), host, time.Now().UnixNano())
}

// Orphan is an activity attempt that a dead dev worker had started.
type Orphan struct {
	WorkflowID string
	RunID      string
	ActivityID string
	Activity   string
	Attempt    int32
	Worker     string
}

// ReleaseOrphans fails every activity attempt of a running workflow that
// a kopsdr dev worker other than self had started, so Temporal retries it
// now instead of after its timeouts. It returns what it released; errors
// for single activities (one finished meanwhile) are skipped.
func ReleaseOrphans(ctx context.Context, c client.Client, namespace, self string) ([]Orphan, error) {
	var out []Orphan
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, PageSize: 100, NextPageToken: token, Query: "ExecutionStatus = 'Running'",
		})
		if err != nil {
			return out, fmt.Errorf("listing running workflows: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			wf, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			desc, err := c.DescribeWorkflowExecution(ctx, wf, run)
			if err != nil {
				continue // finished or gone since the listing
			}
			for _, pa := range desc.GetPendingActivities() {
				who := pa.GetLastWorkerIdentity()
				if pa.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED || !strings.HasPrefix(who, IdentityPrefix) || who == self {
					continue
				}
				lost := temporal.NewApplicationError(fmt.Sprintf(
					"kopsdr-worker --dev restarted: the worker that ran attempt %d (%s) died with it", pa.GetAttempt(), who),
					ErrTypeWorkerLost)
				if err := c.CompleteActivityByID(ctx, namespace, wf, run, pa.GetActivityId(), nil, lost); err != nil {
					continue
				}
				out = append(out, Orphan{WorkflowID: wf, RunID: run, ActivityID: pa.GetActivityId(),
					Activity: pa.GetActivityType().GetName(), Attempt: pa.GetAttempt(), Worker: who})
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}
