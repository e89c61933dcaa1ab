package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// statusView is what status prints: the workflow's state and its own
// status query's answer, typed by workflow type.
type statusView struct {
	WorkflowID string `json:"workflowId"`
	Type       string `json:"type"`
	State      string `json:"state"`
	Status     any    `json:"status,omitempty"`
	Result     any    `json:"result,omitempty"` // once completed
	Failure    string `json:"failure,omitempty"`
}

// newStatus is the zero value of each workflow type's status.
func newStatus(workflowType string) any {
	switch workflowType {
	case api.WorkflowEtcdBackup, api.WorkflowClusterBackup:
		return &api.BackupStatus{}
	case api.WorkflowEtcdManagerRestore:
		return &api.RestoreStatus{}
	case api.WorkflowVolumeSnapshot:
		return &api.VolumeSnapshotStatus{}
	case api.WorkflowVolumeRestore:
		return &api.VolumeRestoreReport{}
	case api.WorkflowChangeCapture:
		return &api.CaptureStatus{}
	case api.WorkflowMakeBackup:
		return &api.MakeBackupStatus{}
	}
	return &map[string]any{}
}

// newResult is the zero value of each workflow type's result.
func newResult(workflowType string) any {
	switch workflowType {
	case api.WorkflowEtcdBackup:
		return &api.EtcdBackupResult{}
	case api.WorkflowClusterBackup:
		return &api.ClusterBackupResult{}
	case api.WorkflowEtcdManagerRestore:
		return &api.EtcdManagerRestoreResult{}
	case api.WorkflowVolumeSnapshot:
		return &api.VolumeSnapshotResult{}
	case api.WorkflowMakeBackup:
		return &api.MakeBackupResult{}
	}
	return nil // the volume restore's result is its status
}

func (a *app) statusCmd() *cobra.Command {
	var followIt bool
	cmd := &cobra.Command{
		Use:   "status WORKFLOW_ID",
		Short: "Show where a kopsdr workflow is: state, step, masters, times, plan, last error",
		Long: `Show where a kopsdr workflow is. The exit code says how it ended: 0 completed or still
running, 3 failed, 4 cancelled, 5 terminated, 6 timed out (1: no such workflow or Temporal
unreachable). --follow shows progress until it ends.`,
		Example: `  kopsdr status restore/test.my.clusters
  kopsdr status restore/test.my.clusters --follow
  kopsdr status backup/test.my.clusters/main/20261121T225216Z -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			desc, err := c.DescribeWorkflowExecution(cmd.Context(), id, "")
			if err != nil {
				return fmt.Errorf("no workflow %s: %s (kopsdr schedule describe lists a schedule's runs; the Web UI lists all)", id, rootCause(err))
			}
			info := desc.GetWorkflowExecutionInfo()
			if followIt && info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				if err := follow(cmd.Context(), c, c.GetWorkflow(cmd.Context(), id, ""), nil, cmd.ErrOrStderr()); err != nil {
					var we workflowEnded
					if !errors.As(err, &we) {
						return err
					}
				}
				if desc, err = c.DescribeWorkflowExecution(cmd.Context(), id, ""); err != nil {
					return lostTemporal{id: id, err: err}
				}
				info = desc.GetWorkflowExecutionInfo()
			}
			v := statusView{WorkflowID: id, Type: info.GetType().GetName(), State: stateName(info.GetStatus())}
			st := newStatus(v.Type)
			if q, err := c.QueryWorkflow(cmd.Context(), id, "", api.QueryStatus); err == nil && q.Get(st) == nil {
				v.Status = st
			}
			var failure error
			if res := newResult(v.Type); res != nil && info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				if c.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), res) == nil {
					v.Result = res
				}
			}
			if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				failure = c.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), nil)
				if failure != nil {
					v.Failure = rootCause(failure)
				}
			}
			if err := a.print(v, v.text); err != nil {
				return err
			}
			switch info.GetStatus() {
			case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
				return nil
			}
			// The output above says how it ended; the exit code says it too.
			return quietExit{workflowEnded{id: id, status: info.GetStatus(), err: failure}.code()}
		},
	}
	cmd.Flags().BoolVarP(&followIt, "follow", "f", false, "show progress until the workflow ends")
	return cmd
}

func (v statusView) text(w io.Writer) {
	fmt.Fprintf(w, "%s (%s): %s\n", v.WorkflowID, v.Type, v.State)
	switch st := v.Status.(type) {
	case *api.BackupStatus:
		fmt.Fprintf(w, "  step: %s\n", st.Step)
		if st.Backup != "" {
			fmt.Fprintf(w, "  backup: %s\n", st.Backup)
		}
		printLastError(w, st.LastError, v.Failure)
	case *api.RestoreStatus:
		fmt.Fprintf(w, "  step: %s\n", st.Step)
		if !st.ApprovalDeadline.IsZero() && st.Approval == nil {
			fmt.Fprintf(w, "  approval: waiting until %s: kopsdr approve %s (or reject)\n", st.ApprovalDeadline.Format(time.RFC3339), v.WorkflowID)
		}
		printDecision(w, st.Approval)
		for _, m := range sortedKeys(st.Masters) {
			fmt.Fprintf(w, "  master %s: %s\n", m, st.Masters[m])
		}
		printSteps(w, st.Steps)
		if st.Plan != nil {
			fmt.Fprintln(w, "  plan:")
			printRestorePlan(w, *st.Plan)
		}
		printLastError(w, st.LastError, v.Failure)
	case *api.VolumeSnapshotStatus:
		fmt.Fprintf(w, "  step: %s\n", st.Step)
		if st.Set != "" {
			fmt.Fprintf(w, "  set: %s\n", st.Set)
		}
		for _, s := range st.Snapshots {
			fmt.Fprintf(w, "  %s/%s\t%s\t%s\t%s\n", s.EtcdCluster, s.Member, s.VolumeID, s.ID, s.State)
		}
		printLastError(w, st.LastError, v.Failure)
	case *api.CaptureStatus:
		fmt.Fprintf(w, "  step: %s\n  change store: %s\n", st.Step, st.ChangeStore)
		if st.Chain != "" {
			fmt.Fprintf(w, "  chain: %s, revision %d durable (observed %s)\n", st.Chain, st.Revision, st.Observed.UTC().Format(time.RFC3339))
		}
		for _, g := range st.Gaps {
			fmt.Fprintln(w, "  "+gapLine(g))
		}
		printLastError(w, st.LastError, v.Failure)
	case *api.MakeBackupStatus:
		fmt.Fprintf(w, "  step: %s\n", st.Step)
		if st.Plan != nil {
			fmt.Fprintf(w, "  plan: %s\n", st.Plan.Description)
		}
		if st.Backup != "" {
			fmt.Fprintf(w, "  backup: %s\n", st.Backup)
		}
		printLastError(w, st.LastError, v.Failure)
	case *api.VolumeRestoreReport:
		printVolumeReport(w, *st)
		if st.LastError == "" && v.Failure != "" {
			fmt.Fprintf(w, "  error: %s\n", v.Failure)
		}
	default:
		if v.Failure != "" {
			fmt.Fprintf(w, "  error: %s\n", v.Failure)
		}
	}
	switch res := v.Result.(type) {
	case *api.EtcdManagerRestoreResult:
		fmt.Fprintln(w, "  result:")
		printRestoreOutcome(w, *res)
	case *api.EtcdBackupResult:
		printBackupResult(w, *res)
	case *api.ClusterBackupResult:
		for _, r := range []*api.EtcdBackupResult{res.Main, res.Events} {
			if r != nil {
				printBackupResult(w, *r)
			}
		}
	case *api.VolumeSnapshotResult:
		fmt.Fprintf(w, "  result: set %s, %d snapshots\n", res.Set, len(res.Snapshots))
	case *api.MakeBackupResult:
		fmt.Fprintln(w, "  result:")
		printMadeBackup(w, *res)
	}
}

func printBackupResult(w io.Writer, r api.EtcdBackupResult) {
	fmt.Fprintf(w, "  result: %s backup %s in %s, %.1f MiB (%.1f MiB of snapshot), revision %d, etcd %s; pruned %d\n",
		r.EtcdCluster, r.Backup, r.Store, float64(r.Bytes)/(1<<20), float64(r.RawBytes)/(1<<20), r.Revision, r.EtcdVersion, len(r.Pruned))
	if r.RetentionRule != "" {
		fmt.Fprintf(w, "  retention: %s\n", r.RetentionRule)
	}
	if len(r.Abandoned) > 0 {
		what := "removed"
		if r.PruneDryRun {
			what = "to remove (dry run: kept)"
		}
		fmt.Fprintf(w, "  abandoned folders %s: %s\n", what, strings.Join(r.Abandoned, ", "))
	}
}

func printLastError(w io.Writer, lastError, failure string) {
	switch {
	case lastError != "":
		fmt.Fprintf(w, "  error: %s\n", lastError)
	case failure != "":
		fmt.Fprintf(w, "  error: %s\n", failure)
	}
}
