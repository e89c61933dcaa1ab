// Command kopsdr is the operator's CLI: it starts and follows kopsdr's
// workflows on Temporal and reads backup stores directly, with flags in the
// style of etcdctl and kops.
//
// Every command that starts a workflow or creates a schedule checks its
// input with the contract's Validate (package workflows/api) before it even
// dials Temporal: bad input starts nothing, and is told apart by its exit
// code (see exitCodes in errors.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/workflows/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	a := newApp(os.Stdout, os.Stderr)
	err := a.root().ExecuteContext(ctx)
	os.Exit(a.report(err))
}

// app carries what every command shares: the Temporal connection settings
// and the output format.
type app struct {
	conn   temporalconn.Options
	output string
	out    io.Writer
	errOut io.Writer
	// fakeTemporal, when set, is dialled instead of Temporal: tests of
	// what a command does with Temporal's answers.
	fakeTemporal func() client.Client
}

func newApp(out, errOut io.Writer) *app { return &app{out: out, errOut: errOut} }

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "kopsdr",
		Short: "Durable etcd backup and disaster recovery for kops clusters, on Temporal",
		Long: `kopsdr backs up and restores the etcd clusters (main and events) of Kubernetes clusters
built with kops, as Temporal workflows that survive crashes and never do a step twice.

Start a worker first (kopsdr-worker, or kopsdr-worker --dev for a local all-in-one).

kops names work too: --name for --cluster, --state for --state-store, and the environment
variables KOPS_CLUSTER_NAME and KOPS_STATE_STORE.

Exit codes: 0 done (or, for status, still running), 1 an error (Temporal unreachable, no such
workflow), 2 bad input (nothing was started), 3 the workflow failed, 4 it was cancelled,
5 terminated, 6 timed out, 7 (report) a backup is missing or older than --max-age,
130 interrupted while following (the workflow goes on).`,
		SilenceUsage:  true,
		SilenceErrors: true, // report prints each error once
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return badFlag("output", a.output, "use text or json")
			}
			return nil
		},
	}
	a.conn.Bind(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json (errors too, as JSON on stderr)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError{err} })
	root.AddCommand(a.backupCmd(), a.listBackupsCmd(), a.scheduleCmd(), a.restoreCmd(), a.statusCmd(),
		a.decideCmd(api.UpdateApprove), a.decideCmd(api.UpdateReject), a.cleanLeasesCmd(),
		a.snapshotVolumesCmd(), a.listVolumeSnapshotsCmd(), a.drillCmd(), a.runsCmd(), a.reportCmd(),
		a.pitrCmd(), a.makeBackupCmd())
	a.addWithdrawCmd(root)
	for _, c := range allCommands(root) {
		c.Flags().SetNormalizeFunc(kopsNames)
		c.SetOut(a.out)
		c.SetErr(a.errOut)
	}
	return root
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// kopsNames accepts kops's flag names: --name for --cluster, --state for
// --state-store.
func kopsNames(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "name":
		return "cluster"
	case "state":
		return "state-store"
	}
	return pflag.NormalizedName(name)
}

// bindCluster binds --cluster (alias --name) with kops's KOPS_CLUSTER_NAME
// as its default. It is checked by the input's Validate, not by cobra, so
// that the environment can provide it.
func bindCluster(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "cluster", os.Getenv("KOPS_CLUSTER_NAME"), "kops cluster name (alias --name; env KOPS_CLUSTER_NAME)")
}

// bindStateStore binds --state-store (alias --state). KOPS_STATE_STORE
// fills it only when no flag names a store: a backup store given on the
// command line must not meet a state store from the environment.
func bindStateStore(cmd *cobra.Command, dst *string, usage string, storeFlags ...string) {
	cmd.Flags().StringVar(dst, "state-store", "", usage+" (alias --state; env KOPS_STATE_STORE)")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(c, args); err != nil {
				return err
			}
		}
		if c.Flags().Changed("state-store") {
			return nil
		}
		for _, f := range storeFlags {
			if c.Flags().Changed(f) {
				return nil
			}
		}
		*dst = os.Getenv("KOPS_STATE_STORE")
		return nil
	}
}

func (a *app) dial() (client.Client, error) {
	if a.fakeTemporal != nil {
		return a.fakeTemporal(), nil
	}
	c, err := a.conn.Dial(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, unreachable{addr: a.conn.Address, err: err}
	}
	return c, nil
}

// print writes v as JSON with -o json, or calls text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "<cluster>" stays readable
		return enc.Encode(v)
	}
	text(a.out)
	return nil
}

// started is what a command prints when it starts a workflow and does not
// follow it: the commands to follow and decide it, with this command's
// connection flags so that they reach the same Temporal.
func (a *app) started(cmd *cobra.Command, run client.WorkflowRun, decide bool) error {
	id, conn := run.GetID(), connFlags(cmd)
	return a.print(map[string]string{"workflowId": id, "runId": run.GetRunID()}, func(w io.Writer) {
		fmt.Fprintf(w, "started %s\n  follow:  kopsdr status %s --follow%s\n", id, id, conn)
		if decide {
			fmt.Fprintln(w, "  approve: "+approveHint(cmd, id))
		}
	})
}

// approveHint says how to decide a restore that waits for approval.
func approveHint(cmd *cobra.Command, id string) string {
	conn := connFlags(cmd)
	return fmt.Sprintf("read the plan (kopsdr status %s%s), then kopsdr approve %s%s (or reject)", id, conn, id, conn)
}

// connFlags repeats the Temporal connection flags given on the command line.
func connFlags(cmd *cobra.Command) string {
	var b strings.Builder
	for _, name := range []string{"address", "namespace"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
			fmt.Fprintf(&b, " --%s %s", name, f.Value.String())
		}
	}
	return b.String()
}

// startWorkflow starts workflow typ with input in under id and, with wait,
// follows it until it ends and decodes its result into res. followed is
// false when it only started it (and printed how to follow it).
func (a *app) startWorkflow(cmd *cobra.Command, id, typ, what string, in any, wait bool, res any) (followed bool, err error) {
	c, err := a.dial()
	if err != nil {
		return false, err
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{ID: id, TaskQueue: api.TaskQueue}, typ, in)
	if err != nil {
		return false, fmt.Errorf("start %s: %w", what, err)
	}
	if !wait {
		return false, a.started(cmd, run, false)
	}
	return true, follow(cmd.Context(), c, run, res, cmd.ErrOrStderr())
}
