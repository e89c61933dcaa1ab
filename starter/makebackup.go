package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// atHelp is what --at means, said the same way wherever the flag is.
const atHelp = "the last revision kopsdr had observed by this time (RFC 3339, e.g. 2026-11-30T07:15:00Z)"

func (a *app) makeBackupCmd() *cobra.Command {
	var (
		in   api.MakeBackupInput
		sf   storeFlags
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "make-backup --cluster NAME --state-store URL [--etcd main|events] (--at TIME | --revision REV) [--change-store URL] [--wait]",
		Short: "Make an etcd-manager backup at a past time or revision, from a full backup and the captured changes",
		Long: `Make an ordinary etcd-manager backup of one etcd cluster at a point the captured changes reach
(see kopsdr pitr): the worker restores the newest usable full backup into a scratch etcd, replays
the changes after it up to the point, one transaction per revision, and writes the result into
the backup store under a new backup name, checked. Restore it like any other backup (kopsdr
restore etcd-manager --backup NAME, or etcd-manager-ctl).

--at TIME means the last revision kopsdr had observed by that time: changes etcd made before it
that kopsdr had not yet seen are not in the backup. --revision REV is exact.

A point the change log does not reach (before the window, in a gap, later than capture has seen)
fails the workflow with the nearest points that can be made (exit code 3 with --wait).
The workflow id is make-backup/<cluster>/<etcd>/<point>, the point as 20060102T150405Z or r<rev>.`,
		Example: `  kopsdr make-backup --cluster test.my.clusters --state-store s3://my.clusters --at 2026-11-30T07:15:00Z --wait
  kopsdr make-backup --cluster test.my.clusters --state-store s3://my.clusters --etcd events --revision 1234567`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.BackupStore, in.StateStore = sf.backupStore, sf.stateStore
			if err := checkMakeBackupInput(in, sf); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := startMakeBackup(cmd.Context(), c, in)
			if err != nil {
				return err
			}
			if !wait {
				return a.started(cmd, run, false)
			}
			var res api.MakeBackupResult
			if err := follow(cmd.Context(), c, run, &res, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { printMadeBackup(w, res) })
		},
	}
	bindCluster(cmd, &in.Cluster)
	cmd.Flags().StringVar(&in.EtcdCluster, "etcd", "main", "etcd cluster: main or events")
	cmd.Flags().StringVar(&in.At, "at", "", "make the backup at "+atHelp)
	cmd.Flags().Int64Var(&in.Revision, "revision", 0, "make the backup at this etcd revision (instead of --at)")
	cmd.Flags().StringVar(&in.ChangeStore, "change-store", "", "the change store (default: beside the backup store, <state store>/<cluster>/backups/kopsdr-changes/<etcd>)")
	cmd.Flags().StringVar(&in.SSEKMSKeyID, "sse-kms-key-id", "", "encrypt the uploaded objects with this KMS key (S3 SSE-KMS)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the backup, show progress, print what was made")
	sf.bind(cmd)
	return cmd
}

// checkMakeBackupInput is everything make-backup checks before it dials.
func checkMakeBackupInput(in api.MakeBackupInput, sf storeFlags) error {
	if in.EtcdCluster == "" {
		return badFlag("etcd", "", "give main or events, or leave the flag out for main")
	}
	if in.At == "" && in.Revision == 0 {
		// The contract names its fields; here the flags say it better.
		return badFlag("at", "", "give the point: --at TIME ("+atHelp+") or --revision REV")
	}
	if err := in.Validate(); err != nil {
		return err
	}
	return checkPITRStores(sf, in.ChangeStore)
}

// pointID is the point in a workflow id: the time to the second in
// compact form, or r<revision>.
func pointID(in api.MakeBackupInput) string {
	if in.Revision != 0 {
		return fmt.Sprintf("r%d", in.Revision)
	}
	t, _ := api.CheckTime("at", in.At)
	return t.UTC().Format("20060102T150405Z")
}

// startMakeBackup starts a make-backup under the point's id. The same
// point twice while one runs is refused, not joined: it would print a
// start that did not happen.
func startMakeBackup(ctx context.Context, c client.Client, in api.MakeBackupInput) (client.WorkflowRun, error) {
	id := api.MakeBackupWorkflowID(in.Cluster, in.Etcd(), pointID(in))
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: api.TaskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, api.WorkflowMakeBackup, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil, fmt.Errorf("a make-backup of %s/%s at this point is already running (workflow %s): follow it with 'kopsdr status %s --follow'",
			in.Cluster, in.Etcd(), id, id)
	}
	if err != nil {
		return nil, fmt.Errorf("start make-backup: %w", err)
	}
	return run, nil
}

func printMadeBackup(w io.Writer, r api.MakeBackupResult) {
	fmt.Fprintf(w, "made backup %s of %s/%s in %s\n", r.Backup, r.Cluster, r.EtcdCluster, r.Store)
	fmt.Fprintf(w, "  at revision %d", r.Revision)
	if !r.Plan.Observed.IsZero() {
		fmt.Fprintf(w, " (observed by kopsdr at %s)", r.Plan.Observed.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\n  base backup %s at revision %d, %d transactions replayed from chain %s\n", r.BaseBackup, r.BaseRevision, r.Txns, r.Plan.Chain)
	fmt.Fprintf(w, "  %s written in %.1fs\n", size(r.Bytes), r.Seconds)
	fmt.Fprintf(w, "  restore it: kopsdr restore etcd-manager --cluster %s --etcd %s --backup %s ...\n", r.Cluster, r.EtcdCluster, r.Backup)
}
