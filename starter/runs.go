package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/internal/searchattr"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// maxRuns bounds --limit: one page of Temporal's visibility API.
const maxRuns = 1000

func (a *app) runsCmd() *cobra.Command {
	var (
		f     searchattr.Filter
		limit int
	)
	cmd := &cobra.Command{
		Use:   "runs --cluster NAME [--failed] [--etcd main|events] [--limit N]",
		Short: "List a cluster's kopsdr runs (backups, restores, drills) by the KopsCluster search attribute",
		Long: `List a cluster's kopsdr runs, found by the KopsCluster search attribute: running ones first,
then the most recently closed, as Temporal lists them. A failed run shows its error.

The search attributes KopsCluster, EtcdCluster and BackupName must be registered in the
namespace (kopsdr-worker --dev does it; on a real server once: ` + api.SearchAttributeCreateCommand("<namespace>") + `);
runs started before they were registered are not found.`,
		Example: `  kopsdr runs --cluster test.my.clusters
  kopsdr runs --cluster test.my.clusters --failed --etcd main -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := api.CheckCluster(f.Cluster); err != nil {
				return err
			}
			if f.EtcdCluster != "" {
				if err := api.CheckEtcdCluster("etcdCluster", f.EtcdCluster); err != nil {
					return err
				}
			}
			if limit < 1 || limit > maxRuns {
				return badFlag("limit", strconv.Itoa(limit), fmt.Sprintf("give a number from 1 to %d", maxRuns))
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			rows, err := listRuns(cmd.Context(), c, a.conn.Namespace, f, limit)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no runs match %s in namespace %s\n", f.Query(), a.conn.Namespace)
			}
			return a.print(rows, func(w io.Writer) { printRuns(w, rows) })
		},
	}
	bindCluster(cmd, &f.Cluster)
	cmd.Flags().BoolVar(&f.Failed, "failed", false, "only runs that failed")
	cmd.Flags().StringVar(&f.EtcdCluster, "etcd", "", "only runs of one etcd cluster: main or events (runs of both have no EtcdCluster)")
	cmd.Flags().IntVar(&limit, "limit", 20, fmt.Sprintf("list at most this many runs (1 to %d)", maxRuns))
	return cmd
}

// runRow is one run as `kopsdr runs` and `kopsdr report` show it.
type runRow struct {
	WorkflowID  string     `json:"workflowId"`
	RunID       string     `json:"runId"`
	Type        string     `json:"type"`
	Status      string     `json:"status"` // running, completed, failed, ...
	Start       time.Time  `json:"startTime"`
	Close       *time.Time `json:"closeTime,omitempty"`
	EtcdCluster string     `json:"etcdCluster,omitempty"`
	BackupName  string     `json:"backupName,omitempty"`
	Failure     string     `json:"failure,omitempty"`     // why a failed run failed, or why one was terminated
	FailureType string     `json:"failureType,omitempty"` // kopsdr's error type (api.ErrType*), e.g. EtcdUnreachable
}

// listRuns lists up to limit runs matching f, in Temporal's order. The
// error of a failed or terminated run is read from its close event: one
// small call per such run, which --limit bounds.
func listRuns(ctx context.Context, c client.Client, namespace string, f searchattr.Filter, limit int) ([]runRow, error) {
	query := f.Query()
	rows := []runRow{}
	var token []byte
	for len(rows) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, Query: query, PageSize: int32(limit - len(rows)), NextPageToken: token,
		})
		if err != nil {
			return nil, queryError(ctx, c, namespace, query, err)
		}
		for _, e := range resp.GetExecutions() {
			if len(rows) < limit {
				rows = append(rows, rowOf(e))
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	for i, r := range rows {
		if r.Status == stateName(enumspb.WORKFLOW_EXECUTION_STATUS_FAILED) || r.Status == stateName(enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED) {
			rows[i].FailureType, rows[i].Failure = closeReason(ctx, c, r.WorkflowID, r.RunID)
		}
	}
	return rows, nil
}

// queryError says what to do when the query is refused because the
// search attributes are not registered, the usual reason.
func queryError(ctx context.Context, c client.Client, namespace, query string, err error) error {
	var invalid *serviceerror.InvalidArgument
	if errors.As(err, &invalid) {
		if missing, merr := searchattr.Missing(ctx, c, namespace); merr == nil && len(missing) > 0 {
			return &searchattr.NotRegisteredError{Namespace: namespace, Missing: missing}
		}
	}
	return fmt.Errorf("list runs (%s): %w", query, err)
}

func rowOf(e *workflowpb.WorkflowExecutionInfo) runRow {
	r := runRow{
		WorkflowID: e.GetExecution().GetWorkflowId(), RunID: e.GetExecution().GetRunId(),
		Type: e.GetType().GetName(), Status: stateName(e.GetStatus()), Start: e.GetStartTime().AsTime().UTC(),
		EtcdCluster: keyword(e, api.SearchAttrEtcdCluster), BackupName: keyword(e, api.SearchAttrBackupName),
	}
	if e.GetCloseTime() != nil {
		t := e.GetCloseTime().AsTime().UTC()
		r.Close = &t
	}
	return r
}

// keyword decodes one Keyword search attribute of a listed run.
func keyword(e *workflowpb.WorkflowExecutionInfo, name string) string {
	p, ok := e.GetSearchAttributes().GetIndexedFields()[name]
	if !ok {
		return ""
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(p, &s) != nil {
		return ""
	}
	return s
}

// closeReason is why a run failed: the type of the first application
// error in its failure (the one kopsdr raised, e.g. EtcdUnreachable) and
// the innermost message, as kopsdr status shows it; or a terminated run's
// reason. Both are "" when the close event cannot be read.
func closeReason(ctx context.Context, c client.Client, id, runID string) (errType, msg string) {
	it := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	if !it.HasNext() {
		return "", ""
	}
	ev, err := it.Next()
	if err != nil {
		return "", ""
	}
	if t := ev.GetWorkflowExecutionTerminatedEventAttributes(); t != nil {
		return "", "terminated: " + t.GetReason()
	}
	for f := ev.GetWorkflowExecutionFailedEventAttributes().GetFailure(); f != nil; f = f.GetCause() {
		if errType == "" {
			errType = f.GetApplicationFailureInfo().GetType()
		}
		msg = f.GetMessage()
	}
	return errType, msg
}

func printRuns(w io.Writer, rows []runRow) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tCLOSED\tSTATUS\tTYPE\tWORKFLOW ID\tETCD\tBACKUP\tERROR")
	for _, r := range rows {
		closed := "-"
		if r.Close != nil {
			closed = r.Close.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Start.Format(time.RFC3339), closed, r.Status, r.Type,
			r.WorkflowID, orDash(r.EtcdCluster), orDash(r.BackupName), r.failure())
	}
	tw.Flush()
}

// failure is the error as the tables show it: "EtcdUnreachable: message".
func (r runRow) failure() string {
	if r.FailureType == "" || r.Failure == "" {
		return r.Failure
	}
	return r.FailureType + ": " + r.Failure
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
