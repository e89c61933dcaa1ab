// Command kopsdr is the operator's CLI: it starts and follows kopsdr's
// workflows on Temporal and reads backup stores directly, with flags in the
// style of etcdctl and kops.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}

// app carries what every command shares: the Temporal connection settings
// and the output format.
type app struct {
	conn   temporalconn.Options
	output string
	out    io.Writer
}

func newRoot() *cobra.Command {
	a := &app{out: os.Stdout}
	root := &cobra.Command{
		Use:   "kopsdr",
		Short: "Durable etcd backup and disaster recovery for kops clusters, on Temporal",
		Long: `kopsdr backs up and restores the etcd clusters (main and events) of Kubernetes clusters
built with kops, as Temporal workflows that survive crashes and never do a step twice.

Start a worker first (kopsdr-worker, or kopsdr-worker --dev for a local all-in-one).`,
		SilenceUsage: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("-o %q: use text or json", a.output)
			}
			return nil
		},
	}
	a.conn.Bind(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(a.backupCmd(), a.listBackupsCmd(), a.scheduleCmd(), a.restoreCmd(), a.statusCmd(),
		a.decideCmd("approve"), a.decideCmd("reject"), a.cleanLeasesCmd(),
		a.snapshotVolumesCmd(), a.listVolumeSnapshotsCmd())
	a.addWithdrawCmd(root)
	return root
}

func (a *app) dial() (client.Client, error) {
	return a.conn.Dial(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// print writes v as JSON with -o json, or calls text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.out)
	return nil
}
