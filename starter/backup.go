package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/storeurl"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// etcdFlags are the etcdctl-style connection flags.
type etcdFlags struct {
	endpoints         []string
	cacert, cert, key string
}

func (f *etcdFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.endpoints, "endpoints", nil, "etcd client URLs, comma separated (main: https://<master>:4001, events: :4002)")
	cmd.Flags().StringVar(&f.cacert, "cacert", "", "CA bundle path ON THE WORKER to verify etcd (kops: /etc/kubernetes/pki/kube-apiserver/etcd-ca.crt)")
	cmd.Flags().StringVar(&f.cert, "cert", "", "client certificate path on the worker (kops: .../etcd-client.crt)")
	cmd.Flags().StringVar(&f.key, "key", "", "client key path on the worker (kops: .../etcd-client.key)")
}

// storeFlags locate a backup store: directly, or from the kops state store.
type storeFlags struct {
	backupStore, stateStore string
}

func (f *storeFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.backupStore, "backup-store", "", "backup store URL, e.g. s3://my.clusters/test.my.clusters/backups/etcd/main or file:///path (not with --state-store)")
	bindStateStore(cmd, &f.stateStore, "kops state store; the backup store is <state-store>/<cluster>/backups/etcd/<etcd>", "backup-store")
}

func (a *app) backupCmd() *cobra.Command {
	var (
		in   api.EtcdBackupInput
		ef   etcdFlags
		sf   storeFlags
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "backup --cluster NAME --etcd main|events --endpoints URL[,URL] --backup-store URL [--wait]",
		Short: "Back up one etcd cluster (main or events) into its backup store, in etcd-manager's format",
		Example: `  kopsdr backup --cluster test.my.clusters --etcd main --endpoints https://127.0.0.1:4001 \
    --cacert ca.crt --cert client.crt --key client.key \
    --backup-store s3://my.clusters/test.my.clusters/backups/etcd/main --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Endpoints, in.CACert, in.Cert, in.Key = ef.endpoints, ef.cacert, ef.cert, ef.key
			in.BackupStore, in.StateStore = sf.backupStore, sf.stateStore
			if err := in.Validate(); err != nil {
				return err
			}
			if err := sf.checkLocal(); err != nil {
				return err
			}
			var res api.EtcdBackupResult
			id := api.BackupWorkflowID(in.Cluster, in.EtcdCluster, time.Now())
			if followed, err := a.startWorkflow(cmd, id, api.WorkflowEtcdBackup, "backup", in, wait, &res); !followed || err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { fmt.Fprintln(w, res.Backup) })
		},
	}
	bindCluster(cmd, &in.Cluster)
	cmd.Flags().StringVar(&in.EtcdCluster, "etcd", "", "etcd cluster: main or events (required)")
	cmd.Flags().StringVar(&in.SSEKMSKeyID, "sse-kms-key-id", "", "encrypt the uploaded objects with this KMS key (S3 SSE-KMS)")
	cmd.Flags().BoolVar(&in.NoPrune, "no-prune", false, "do not apply the retention policy after the backup")
	cmd.Flags().BoolVar(&in.PruneDryRun, "prune-dry-run", false, "list what retention would delete, delete nothing")
	cmd.Flags().Int32Var(&in.MaxAttempts, "max-attempts", 0, "attempts before an unreachable etcd or store fails the backup (default 8)")
	cmd.Flags().IntVar(&in.CompressionLevel, "compression-level", 0, fmt.Sprintf("gzip level of the backup, 1 (fastest) to 9 (smallest) (default %d)", api.DefaultCompressionLevel))
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the backup, show progress, print its name")
	ef.bind(cmd)
	sf.bind(cmd)
	return cmd
}

func (a *app) listBackupsCmd() *cobra.Command {
	var (
		sf              storeFlags
		cluster, etcdCl string
	)
	cmd := &cobra.Command{
		Use:   "list-backups --backup-store URL",
		Short: "List the backups in a store, oldest first, as etcd-manager-ctl list-backups does, with their drill results",
		Long: `List the backups in a store, oldest first, as etcd-manager-ctl list-backups does, each with
whether a restore drill verified it (passed, failed and why, or never: kopsdr drill) and the
measured RTO of the drill. It reads the store directly with the credentials of this shell; no
worker is needed.`,
		Example: `  kopsdr list-backups --backup-store s3://my.clusters/test.my.clusters/backups/etcd/main
  kopsdr list-backups --state-store s3://my.clusters --cluster test.my.clusters --etcd events`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url := sf.backupStore
			if url == "" || sf.stateStore != "" {
				if err := api.CheckCluster(cluster); err != nil {
					return err
				}
				if err := api.CheckEtcdCluster("etcdCluster", etcdCl); err != nil {
					return err
				}
				var err error
				if url, err = api.BackupStoreFor(sf.stateStore, sf.backupStore, cluster, etcdCl, "backupStore"); err != nil {
					return err
				}
			} else if _, err := storeurl.Parse("backupStore", url); err != nil {
				return err
			}
			if err := sf.checkLocal(); err != nil {
				return err
			}
			store, err := backupstore.Open(cmd.Context(), url, backupstore.Options{})
			if err != nil {
				return err
			}
			names, err := etcdmanager.ListBackups(cmd.Context(), store)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no backups in %s (check --state-store, --cluster and --etcd, or take one: kopsdr backup)\n", url)
			}
			rows, err := verifiedBackups(cmd.Context(), store, names)
			if err != nil {
				return err
			}
			return a.print(rows, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\n", r.Name, r.text())
				}
				_ = tw.Flush()
			})
		},
	}
	sf.bind(cmd)
	bindCluster(cmd, &cluster)
	cmd.Flags().StringVar(&etcdCl, "etcd", "", "main or events (with --state-store)")
	return cmd
}

// checkLocal refuses a file:// store whose parent folder does not exist
// (the worker, which writes a file:// store, shares this machine's disk;
// it checks again).
func (f *storeFlags) checkLocal() error {
	for _, s := range []struct{ flag, url string }{{"--state-store", f.stateStore}, {"--backup-store", f.backupStore}} {
		if s.url == "" {
			continue
		}
		if err := storeurl.CheckLocalParent(s.flag, s.url); err != nil {
			return err
		}
	}
	return nil
}

// listedBackup is one line of list-backups: the backup and its last drill.
type listedBackup struct {
	Name string `json:"name"`
	// Verified is passed, failed or never (no drill yet).
	Verified   string    `json:"verified"`
	Reason     string    `json:"reason,omitempty"`
	RTOSeconds float64   `json:"rtoSeconds,omitempty"`
	DrilledAt  time.Time `json:"drilledAt,omitzero"`
}

func (b listedBackup) text() string {
	switch b.Verified {
	case "passed":
		return fmt.Sprintf("verified %s, RTO %.1fs", b.DrilledAt.UTC().Format(time.RFC3339), b.RTOSeconds)
	case "failed":
		return fmt.Sprintf("FAILED drill %s: %s", b.DrilledAt.UTC().Format(time.RFC3339), b.Reason)
	}
	return "never drilled"
}

// verifiedBackups reads every backup's drill result, a few at a time: a
// store keeps a few hundred backups under etcd-manager's retention.
func verifiedBackups(ctx context.Context, store backupstore.Store, names []string) ([]listedBackup, error) {
	rows := make([]listedBackup, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, name := range names {
		g.Go(func() error {
			r, ok, err := drill.ReadResult(gctx, store, name)
			if err != nil {
				return err
			}
			rows[i] = listedBackup{Name: name, Verified: "never"}
			if !ok {
				return nil
			}
			rows[i].DrilledAt = r.At
			if r.Passed {
				rows[i].Verified, rows[i].RTOSeconds = "passed", r.Timings.RTOSeconds
				return nil
			}
			reasons := make([]string, len(r.Failures))
			for j, f := range r.Failures {
				reasons[j] = f.Check + ": " + f.Reason
			}
			rows[i].Verified, rows[i].Reason = "failed", strings.Join(reasons, "; ")
			return nil
		})
	}
	return rows, g.Wait()
}
