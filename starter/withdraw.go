package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// addWithdrawCmd adds "withdraw" under root's "restore" command.
func (a *app) addWithdrawCmd(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "restore" {
			c.AddCommand(a.withdrawCmd())
			return
		}
	}
	root.AddCommand(a.withdrawCmd()) // no restore command: stand alone rather than vanish
}

// withdrawStoreReport is one backup store's part of the withdraw output.
type withdrawStoreReport struct {
	EtcdCluster string             `json:"etcdCluster"`
	Store       string             `json:"store"`
	Withdrawn   []withdrawnCommand `json:"withdrawn"` // removed, or with a dry run: would be removed
	LeftAlone   []withdrawnCommand `json:"leftAlone"` // queued by someone else: never touched
}

type withdrawnCommand struct {
	Folder     string    `json:"folder"`
	Backup     string    `json:"backup"`
	QueuedAt   time.Time `json:"queuedAt"`
	WorkflowID string    `json:"workflowId,omitempty"`
	// DeleteWith is, for a command kopsdr leaves alone, how its owner
	// removes it.
	DeleteWith string `json:"deleteWith,omitempty"`
}

type withdrawReport struct {
	DryRun bool                  `json:"dryRun"`
	Stores []withdrawStoreReport `json:"stores"`
}

func (a *app) withdrawCmd() *cobra.Command {
	var (
		cluster, stateStore, etcdCl string
		backupStore, mainS, eventsS string
		yes                         bool
	)
	cmd := &cobra.Command{
		Use:   "withdraw --cluster NAME (--state-store URL | --backup-store URL --etcd main|events) [--etcd main|events] [--yes]",
		Short: "Withdraw the pending restore commands kopsdr queued and that etcd-manager has not run",
		Long: `Withdraw the restore commands that kopsdr queued in a cluster's backup stores
(control/<time>-000000/_command.json) and that etcd-manager has not performed yet. A failed or
timed-out restore leaves its command queued, and the next etcd-manager start or leader change
would perform it.

kopsdr marks its own commands (control/<time>-000000/kopsdr.json beside the command). Commands
queued by anyone else (etcd-manager-ctl restore-backup) are listed with the etcd-manager-ctl
line that deletes them, and never touched.

Without --yes this is a dry run: it lists what would be withdrawn and changes nothing. It reads
the stores directly with the credentials of this shell; no worker is needed. Withdraw only
once the restore that queued the command has ended (kopsdr status restore/<cluster>).`,
		Example: `  kopsdr restore withdraw --cluster test.my.clusters --state-store s3://my.clusters
  kopsdr restore withdraw --cluster test.my.clusters --state-store s3://my.clusters --etcd main --yes
  kopsdr restore withdraw --cluster test.my.clusters --etcd events \
    --backup-store s3://my.clusters/test.my.clusters/backups/etcd/events --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			locs, err := withdrawLocations(cluster, stateStore, cmd.Flags().Changed("state-store"), etcdCl, backupStore, mainS, eventsS)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// Open and read every store before deleting anything: an
			// unreachable events store must not leave main half done.
			stores := make([]backupstore.Store, len(locs))
			for i, l := range locs {
				if stores[i], err = backupstore.Open(ctx, l.url, backupstore.Options{}); err != nil {
					return err
				}
				if _, err := etcdmanager.ListPending(ctx, stores[i]); err != nil {
					return err
				}
			}
			rep := withdrawReport{DryRun: !yes, Stores: []withdrawStoreReport{}}
			for i, l := range locs {
				res, err := etcdmanager.Withdraw(ctx, stores[i], !yes)
				sr := withdrawStoreReport{EtcdCluster: l.loc.Etcd, Store: stores[i].URL(),
					Withdrawn: describeWithdrawn(stores[i].URL(), res.Removed), LeftAlone: describeWithdrawn(stores[i].URL(), res.Kept)}
				rep.Stores = append(rep.Stores, sr)
				if err != nil {
					_ = a.print(rep, func(w io.Writer) { printWithdraw(w, rep) })
					return err
				}
			}
			return a.print(rep, func(w io.Writer) { printWithdraw(w, rep) })
		},
	}
	f := cmd.Flags()
	bindCluster(cmd, &cluster)
	bindStateStore(cmd, &stateStore, "kops state store; the stores are <state-store>/<cluster>/backups/etcd/<etcd>",
		"backup-store", "main-backup-store", "events-backup-store")
	f.StringVar(&etcdCl, "etcd", "", "main or events (default: both)")
	f.StringVar(&backupStore, "backup-store", "", "the backup store itself, instead of --state-store (with --etcd)")
	f.StringVar(&mainS, "main-backup-store", "", "main's backup store, instead of --state-store")
	f.StringVar(&eventsS, "events-backup-store", "", "events' backup store, instead of --state-store")
	f.BoolVar(&yes, "yes", false, "really delete; without it, only list what would go")
	return cmd
}

type withdrawLocation struct {
	url string
	loc etcdmanager.Location
}

// withdrawLocations resolves the flags into the stores to look in, refusing
// missing and conflicting ones before any store is opened.
func withdrawLocations(cluster, stateStore string, stateStoreGiven bool, etcdCl, backupStore, mainS, eventsS string) ([]withdrawLocation, error) {
	if err := api.CheckCluster(cluster); err != nil {
		return nil, err
	}
	etcds := []string{"main", "events"}
	switch etcdCl {
	case "":
	case "main", "events":
		etcds = []string{etcdCl}
	default:
		return nil, inputerr.New("etcd", etcdCl, "use --etcd main or --etcd events, or leave it out for both")
	}
	if backupStore != "" {
		switch {
		case stateStoreGiven && stateStore != "":
			return nil, inputerr.New("backup-store", backupStore, "give --backup-store or --state-store, not both")
		case mainS != "" || eventsS != "":
			return nil, inputerr.New("backup-store", backupStore, "give --backup-store alone, or --main-backup-store/--events-backup-store")
		case etcdCl == "":
			return nil, inputerr.New("etcd", "", "say which etcd cluster --backup-store holds: --etcd main or --etcd events")
		}
		return []withdrawLocation{{url: backupStore, loc: etcdmanager.Location{Cluster: cluster, Etcd: etcdCl, BackupStore: backupStore}}}, nil
	}
	override := map[string]string{"main": mainS, "events": eventsS}
	var out []withdrawLocation
	for _, ec := range etcds {
		loc := etcdmanager.Location{Cluster: cluster, StateStore: stateStore, Etcd: ec, BackupStore: override[ec]}
		url, err := api.BackupStoreFor(stateStore, override[ec], cluster, ec, ec+".backupStore")
		if err != nil {
			return nil, err
		}
		out = append(out, withdrawLocation{url: url, loc: loc})
	}
	return out, nil
}

func describeWithdrawn(storeURL string, ps []etcdmanager.Pending) []withdrawnCommand {
	out := []withdrawnCommand{}
	for _, p := range ps {
		wc := withdrawnCommand{Folder: etcdmanager.ControlDir + "/" + p.Name, Backup: p.Backup(), QueuedAt: time.Unix(0, p.Timestamp).UTC()}
		if p.ByKopsdr() {
			wc.WorkflowID = p.Marker.WorkflowID
		} else {
			wc.DeleteWith = etcdmanager.DeleteCommandHint(storeURL, p.Command)
		}
		out = append(out, wc)
	}
	return out
}

func printWithdraw(w io.Writer, rep withdrawReport) {
	verb, some := "withdrew", false
	if rep.DryRun {
		verb = "would withdraw"
	}
	for _, s := range rep.Stores {
		name := s.EtcdCluster
		if name == "" {
			name = "store"
		}
		if len(s.Withdrawn) == 0 && len(s.LeftAlone) == 0 {
			fmt.Fprintf(w, "%s: no pending restore command in %s\n", name, s.Store)
			continue
		}
		for _, c := range s.Withdrawn {
			some = true
			by := "kopsdr"
			if c.WorkflowID != "" {
				by += ", workflow " + c.WorkflowID
			}
			fmt.Fprintf(w, "%s: %s %s (restores %s, queued %s by %s)\n", name, verb, c.Folder, c.Backup, c.QueuedAt.Format(time.RFC3339), by)
		}
		for _, c := range s.LeftAlone {
			fmt.Fprintf(w, "%s: left alone %s (restores %s, queued %s, not by kopsdr); its owner can delete it with: %s\n",
				name, c.Folder, c.Backup, c.QueuedAt.Format(time.RFC3339), c.DeleteWith)
		}
	}
	if rep.DryRun && some {
		fmt.Fprintln(w, "dry run: nothing was deleted; add --yes to withdraw")
	}
}
