package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/workflows"
)

// follow prints a workflow's progress (current step and the heartbeat of its
// running activity) to w until it ends, then decodes its result into res.
func follow(ctx context.Context, c client.Client, run client.WorkflowRun, res any, w io.Writer) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, res) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := ""
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			line := progressLine(ctx, c, run.GetID(), run.GetRunID())
			if line != "" && line != last {
				fmt.Fprintln(w, line)
				last = line
			}
		}
	}
}

// progressLine describes what a workflow is doing now: its status query's
// step and the newest heartbeat of each running activity.
func progressLine(ctx context.Context, c client.Client, id, runID string) string {
	line := ""
	if v, err := c.QueryWorkflow(ctx, id, runID, workflows.QueryStatus); err == nil {
		var st map[string]any
		if v.Get(&st) == nil {
			if step, ok := st["step"].(string); ok {
				line = "step: " + step
			}
		}
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		return line
	}
	for _, pa := range desc.GetPendingActivities() {
		line += fmt.Sprintf(" | %s attempt %d", pa.GetActivityType().GetName(), pa.GetAttempt())
		if hb := pa.GetHeartbeatDetails(); hb != nil && len(hb.GetPayloads()) > 0 {
			var detail any
			if converter.GetDefaultDataConverter().FromPayload(hb.GetPayloads()[0], &detail) == nil {
				b, _ := json.Marshal(detail)
				line += " " + string(b)
			}
		}
		if f := pa.GetLastFailure(); f != nil {
			line += " last error: " + f.GetMessage()
		}
	}
	return line
}
