package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kopsdr/kopsdr/workflows/api"
)

func (a *app) drillCmd() *cobra.Command {
	var (
		in   api.RestoreDrillInput
		sf   storeFlags
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "drill --cluster NAME [--etcd main|events] --state-store URL [--backup latest|NAME|undrilled] [--wait]",
		Short: "Prove backups restorable: restore them into a throwaway etcd on the worker and check them",
		Long: `Prove backups restorable: the worker downloads and verifies each backup, restores it with
etcd's own restore code into a throwaway single-member etcd on 127.0.0.1 in its temp dir, reads
every key back, checks the keys Kubernetes needs (namespaces default and kube-system, the service
IP range, a master lease) and compares the key counts with those kopsdr recorded when it took the
backup. The result is stored beside the backup (kopsdr-drill.json), shown by list-backups, and
the download + restore + start time is the backup's measured RTO. Nothing touches the cluster.

The worker needs about twice the snapshot's size free in its temp dir (TMPDIR); with less, the
drill is refused before it starts. A failed check fails the workflow (exit code 3 with --wait).`,
		Example: `  kopsdr drill --cluster test.my.clusters --etcd main --state-store s3://my.clusters --wait
  kopsdr drill --cluster test.my.clusters --state-store s3://my.clusters --backup undrilled --max-backups 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.BackupStore, in.StateStore = sf.backupStore, sf.stateStore
			// Empty means "the default" in the JSON input; typed on the
			// command line it is a mistake, not a wish for main or latest.
			for flag, v := range map[string]string{"etcd": in.EtcdCluster, "backup": in.Backup} {
				if v == "" {
					return badFlag(flag, v, "give a value or leave the flag out")
				}
			}
			if err := in.Validate(); err != nil {
				return err
			}
			if err := sf.checkLocal(); err != nil {
				return err
			}
			var res api.RestoreDrillResult
			id := api.DrillWorkflowID(in.Cluster, in.EtcdClusterOrDefault(), time.Now())
			if followed, err := a.startWorkflow(cmd, id, api.WorkflowRestoreDrill, "drill", in, wait, &res); !followed || err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				if len(res.Drills) == 0 {
					fmt.Fprintf(w, "nothing to drill in %s\n", res.Store)
				}
				for _, d := range res.Drills {
					fmt.Fprintln(w, drillLine(d))
				}
			})
		},
	}
	bindCluster(cmd, &in.Cluster)
	cmd.Flags().StringVar(&in.EtcdCluster, "etcd", "main", "etcd cluster: main or events")
	cmd.Flags().StringVar(&in.Backup, "backup", "latest", "latest, a backup name, latest-before:<RFC 3339 time>, or undrilled (every backup without a result, newest first)")
	cmd.Flags().IntVar(&in.MaxBackups, "max-backups", 0, "with --backup undrilled: at most this many (default 10)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the drill, show its progress, print the outcome")
	sf.bind(cmd)
	return cmd
}

// drillLine is one drilled backup in words: the verdict, the RTO and its
// parts, the size and the keys.
func drillLine(d api.DrillOutcome) string {
	verdict := "passed"
	if !d.Passed {
		reasons := make([]string, len(d.Failures))
		for i, f := range d.Failures {
			reasons[i] = f.Check + ": " + f.Reason
		}
		verdict = "FAILED (" + strings.Join(reasons, "; ") + ")"
	}
	counts := "counts reported (no recorded counts to compare)"
	if d.CountsCompared {
		counts = "counts match the backup's record"
		if !d.Passed {
			counts = "counts compared with the backup's record"
		}
	}
	return fmt.Sprintf("%s %s: RTO %.1fs (download %.1fs, restore %.1fs, start %.1fs), %s snapshot, %d keys at revision %d, %s",
		d.Backup, verdict, d.RTOSeconds, d.DownloadSeconds, d.RestoreSeconds, d.StartSeconds, mib(d.SnapshotBytes), d.Keys, d.Revision, counts)
}
