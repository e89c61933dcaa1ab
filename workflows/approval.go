package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// approvalGate is the one approval protocol of every gated workflow: the
// approve and reject updates and signals (payload api.Approval), the
// "approve" input that decides up front, a deadline, and the decision as
// status and result show it (api.Decision).
//
// Only a workflow that shows its plan and waits can be decided: nobody
// approves a plan they have not seen. Updates say so at once; signals that
// come at the wrong time are logged and dropped.
type approvalGate struct {
	dryRun   bool
	waiting  bool
	decision *api.Decision
	// step reads the workflow's current step, for "not waiting" messages.
	step func() string
	// changed is called whenever the decision or the deadline changes, so
	// the workflow's status shows them.
	changed func(d *api.Decision, deadline time.Time)
}

// newApprovalGate registers the updates and signals. Call it before the
// workflow first blocks, so no early signal is lost.
func newApprovalGate(ctx workflow.Context, dryRun bool, step func() string, changed func(*api.Decision, time.Time)) (*approvalGate, error) {
	g := &approvalGate{dryRun: dryRun, step: step, changed: changed}
	for _, d := range []struct{ name, decision string }{{api.UpdateApprove, api.Approved}, {api.UpdateReject, api.Rejected}} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, d.name,
			func(ctx workflow.Context, a api.Approval) (api.Decision, error) {
				g.decide(ctx, d.decision, a, "update")
				return *g.decision, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, a api.Approval) error {
				if strings.TrimSpace(a.By) == "" {
					return errors.New(`say who decides: {"by": "<name>", "comment": "<why>"}`)
				}
				return g.undecidable()
			}}); err != nil {
			return nil, err
		}
		ch := workflow.GetSignalChannel(ctx, d.name)
		workflow.Go(ctx, func(ctx workflow.Context) {
			for {
				var a api.Approval
				ch.Receive(ctx, &a)
				if err := g.undecidable(); err != nil {
					workflow.GetLogger(ctx).Warn("ignored signal", "signal", d.name, "reason", err)
					continue
				}
				if strings.TrimSpace(a.By) == "" {
					a.By = "signal " + d.name
				}
				g.decide(ctx, d.decision, a, "signal")
			}
		})
	}
	return g, nil
}

// undecidable says why approve or reject cannot be taken now (nil: it can).
func (g *approvalGate) undecidable() error {
	switch {
	case g.decision != nil:
		return fmt.Errorf("already %s by %s", g.decision.Decision, g.decision.By)
	case g.dryRun:
		return errors.New("a dry run is never approved: start the restore again without dryRun")
	case !g.waiting:
		return fmt.Errorf("not waiting for approval (step %s)", g.step())
	}
	return nil
}

func (g *approvalGate) decide(ctx workflow.Context, decision string, a api.Approval, via string) {
	g.decision = &api.Decision{Decision: decision, By: a.By, Comment: a.Comment, Via: via, At: workflow.Now(ctx).UTC()}
	g.changed(g.decision, time.Time{})
}

// await returns nil once approved: at once when approveUpFront, otherwise
// when an approve arrives within timeout. A rejection or the timeout ends
// the workflow with a non-retryable error saying nothing was changed.
func (g *approvalGate) await(ctx workflow.Context, approveUpFront bool, timeout time.Duration) error {
	if approveUpFront && g.decision == nil {
		g.decide(ctx, api.Approved, api.Approval{By: "input (approve: true)"}, "input")
	}
	if g.decision == nil {
		g.waiting = true
		g.changed(nil, workflow.Now(ctx).UTC().Add(timeout))
		decided, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return g.decision != nil })
		g.waiting = false
		if err != nil {
			return err
		}
		if !decided {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"nobody approved within %s: the restore ended having changed nothing", timeout), api.ErrTypeApprovalTimedOut, nil)
		}
	}
	if d := g.decision; d.Decision != api.Approved {
		why := ""
		if d.Comment != "" {
			why = " (" + d.Comment + ")"
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"rejected by %s%s: the restore ended having changed nothing", d.By, why), api.ErrTypeRestoreRejected, nil)
	}
	return nil
}
