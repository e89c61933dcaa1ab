package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// follow prints a workflow's progress to w (one line a change: the step, and
// for a running activity its attempt, bytes, rate and last error) until the
// workflow ends, then decodes its result into res. A workflow that does not
// complete is a workflowEnded; Ctrl-C is an interrupted, and a broken
// connection a lostTemporal: in both the workflow goes on. A slow server
// is waited out (temporalconn.Await).
func follow(ctx context.Context, c client.Client, run client.WorkflowRun, res any, w io.Writer) error {
	done := make(chan error, 1)
	go func() { done <- temporalconn.Await(ctx, run, res) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	p := &progress{}
	last := ""
	for {
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			return ended(ctx, c, run.GetID(), err)
		case <-ctx.Done():
			return interrupted{id: run.GetID()}
		case <-tick.C:
			line := p.line(ctx, c, run.GetID(), run.GetRunID())
			if line != "" && line != last {
				fmt.Fprintln(w, line)
				last = line
			}
		}
	}
}

// ended explains why run.Get returned err: the workflow ended other than
// completed, or we lost Temporal or were interrupted.
func ended(ctx context.Context, c client.Client, id string, err error) error {
	if ctx.Err() != nil {
		return interrupted{id: id}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	desc, derr := c.DescribeWorkflowExecution(dctx, id, "")
	if derr != nil {
		return lostTemporal{id: id, err: errors.Join(err, derr)}
	}
	st := desc.GetWorkflowExecutionInfo().GetStatus()
	if st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return lostTemporal{id: id, err: err}
	}
	return workflowEnded{id: id, status: st, err: err}
}

// progress remembers the last byte count to show a rate.
type progress struct {
	bytes int64
	at    time.Time
	clock func() time.Time // time.Now; a test sets its own
}

// line describes what a workflow is doing now: its status query's step and
// each running activity with its heartbeat made readable.
func (p *progress) line(ctx context.Context, c client.Client, id, runID string) string {
	var parts []string
	if v, err := c.QueryWorkflow(ctx, id, runID, api.QueryStatus); err == nil {
		var st struct {
			Step string `json:"step"`
		}
		if v.Get(&st) == nil && st.Step != "" {
			parts = append(parts, "step: "+st.Step)
		}
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		return strings.Join(parts, " | ")
	}
	for _, pa := range desc.GetPendingActivities() {
		s := pa.GetActivityType().GetName() + " #" + pa.GetActivityId()
		if n := pa.GetAttempt(); n > 1 {
			s += fmt.Sprintf(" (attempt %d)", n)
		}
		if hb := pa.GetHeartbeatDetails(); hb != nil && len(hb.GetPayloads()) > 0 {
			var detail any
			if converter.GetDefaultDataConverter().FromPayload(hb.GetPayloads()[0], &detail) == nil {
				s += ": " + p.describe(detail)
			}
		}
		if f := pa.GetLastFailure(); f != nil {
			s += "; last error: " + f.GetMessage()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

// describe makes a heartbeat readable: byte counts in MiB with a rate, and
// texts as they are.
func (p *progress) describe(detail any) string {
	var n int64
	switch d := detail.(type) {
	case string:
		return d
	case float64: // bytes read so far (verification)
		n = int64(d)
	case map[string]any:
		if st, ok := d["state"].(string); ok { // a wait: {"state", ...}
			return st
		}
		if st, ok := d["stage"].(string); ok { // a drill: {"stage", "bytes"}
			b, _ := d["bytes"].(float64)
			if b == 0 {
				return st
			}
			return st + ": " + mib(int64(b)) + p.rate(int64(b))
		}
		if _, ok := d["rawBytes"]; !ok {
			return compact(d)
		}
		// an upload: {"rawBytes", "gzipBytes", "totalBytes"}
		raw, _ := d["rawBytes"].(float64)
		gz, _ := d["gzipBytes"].(float64)
		total, _ := d["totalBytes"].(float64)
		n = int64(raw)
		done := mib(n)
		if total > 0 {
			done = fmt.Sprintf("%s of %s (%.0f%%)", mib(n), mib(int64(total)), min(100, 100*raw/total))
		}
		return fmt.Sprintf("%s read from etcd, %s written%s", done, mib(int64(gz)), p.rate(n))
	default:
		return fmt.Sprint(detail)
	}
	return mib(n) + " read" + p.rate(n)
}

func (p *progress) rate(n int64) string {
	now := time.Now()
	if p.clock != nil {
		now = p.clock()
	}
	defer func() { p.bytes, p.at = n, now }()
	if p.at.IsZero() || n <= p.bytes {
		return ""
	}
	return fmt.Sprintf(", %.1f MiB/s", float64(n-p.bytes)/(1<<20)/now.Sub(p.at).Seconds())
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// size is n bytes in the unit that shows it best: change segments are
// kilobytes where snapshots are megabytes.
func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return mib(n)
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
