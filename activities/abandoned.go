package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// RunLookup says whether a workflow run of the worker's namespace is still
// open. The worker asks its Temporal server (the activity's own client);
// tests may answer from a table.
type RunLookup interface {
	RunOpen(ctx context.Context, workflowID, runID string) (bool, error)
}

// clientRuns is RunLookup through a Temporal client. A run the server does
// not know has ended: its history outlived the namespace's retention.
type clientRuns struct{ c client.Client }

func (r clientRuns) RunOpen(ctx context.Context, workflowID, runID string) (bool, error) {
	d, err := r.c.DescribeWorkflowExecution(ctx, workflowID, runID)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// runs is a.Runs, or the activity's own client; nil outside an activity.
func (a *Backup) runs(ctx context.Context) RunLookup {
	if a.Runs != nil {
		return a.Runs
	}
	if !activity.IsActivity(ctx) {
		return nil
	}
	if c := activity.GetClient(ctx); c != nil {
		return clientRuns{c}
	}
	return nil
}

// maxAbandonedPerPrune bounds the folders one prune removes, so that the
// first prune of a store where many have piled up still ends well within
// its activity's 2 minutes (each costs about six requests); the next
// backup's prune takes the rest.
const maxAbandonedPerPrune = 100

// discardAbandoned removes (with dryRun, lists) the folders that backups
// left without a meta (etcdmanager.ListIncomplete) once nobody can still be
// writing them: untouched for etcdmanager.AbandonedAfter, and reserved by
// no run that is still open. A folder it cannot vouch for, it keeps and
// logs why: a reservation it cannot read, of another namespace, or a run
// it cannot look up. Only a failed listing fails it: one folder it cannot
// read or remove (a reservation under a KMS key the worker may not use)
// must not fail the prune of every backup after it.
func (a *Backup) discardAbandoned(ctx context.Context, store backupstore.Store, now time.Time, dryRun bool) ([]string, error) {
	found, err := etcdmanager.ListIncomplete(ctx, store, now.Add(-etcdmanager.AbandonedAfter))
	if err != nil {
		return nil, err
	}
	removed := []string{}
	for _, f := range found {
		if len(removed) == maxAbandonedPerPrune {
			logger(ctx).Info("abandoned folders left for the next prune", "removedNow", len(removed))
			break
		}
		if why := a.stillClaimed(ctx, store, f.Name); why != "" {
			logger(ctx).Info("keeping a folder without a meta", "folder", f.Name, "lastWritten", f.Newest, "why", why)
			continue
		}
		if dryRun {
			removed = append(removed, f.Name)
			continue
		}
		n, incomplete, err := etcdmanager.RemoveIncomplete(ctx, store, f.Name)
		if err != nil {
			logger(ctx).Warn("cannot remove an abandoned folder", "folder", f.Name, "error", err)
			continue
		}
		if incomplete {
			logger(ctx).Info("removed an abandoned folder", "folder", f.Name, "objects", n, "lastWritten", f.Newest)
			removed = append(removed, f.Name)
		}
	}
	return removed, nil
}

// stillClaimed says why the folder name may still be written, or "" when
// nobody can be: it has no reservation (etcd-manager's, or kopsdr's from
// outside any workflow), or its run has ended.
func (a *Backup) stillClaimed(ctx context.Context, store backupstore.Store, name string) string {
	r, err := readReservation(ctx, store, name)
	switch {
	case errors.Is(err, backupstore.ErrNotFound):
		return ""
	case err != nil:
		return fmt.Sprintf("its reservation cannot be read: %v", err)
	}
	if r.WorkflowID == "" {
		return ""
	}
	me, inRun := runOwner(ctx)
	if r.Namespace == "" || !inRun || r.Namespace != me.Namespace {
		return fmt.Sprintf("reserved by %s in namespace %q, which this worker cannot look up", r, r.Namespace)
	}
	runs := a.runs(ctx)
	if runs == nil {
		return fmt.Sprintf("reserved by %s, and this worker has no Temporal client to ask", r)
	}
	open, err := runs.RunOpen(ctx, r.WorkflowID, r.RunID)
	switch {
	case err != nil:
		return fmt.Sprintf("reserved by %s, whose state Temporal did not give: %v", r, err)
	case open:
		return fmt.Sprintf("reserved by %s, which is still running", r)
	}
	return ""
}
