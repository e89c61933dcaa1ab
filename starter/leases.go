package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/leases"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// cleanLeasesCmd is the restore's last step on its own, for clusters
// restored by hand. It talks to etcd directly; no worker is needed.
func (a *app) cleanLeasesCmd() *cobra.Command {
	var (
		ef   etcdFlags
		live []string
		yes  bool
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "clean-leases --endpoints URL --live-master-ip IP... [--yes]",
		Short: "Delete /registry/masterleases/<ip> of masters that no longer exist (dry run unless --yes)",
		Long: `After an etcd-manager restore the master lease keys come back without their leases, so the
IPs of old masters never expire and endpoints/kubernetes lists more addresses than masters.
clean-leases lists /registry/masterleases/ in etcd main, and with --yes deletes every key whose
IP is not a live master's. It never deletes a live master's key, nor the last key, and refuses
when no key belongs to a live master (the list of live masters is then probably wrong).`,
		Example: `  kopsdr clean-leases --endpoints https://127.0.0.1:4001 --cacert ca.crt --cert client.crt --key client.key \
    --live-master-ip 10.0.1.10 --live-master-ip 10.0.2.10 --live-master-ip 10.0.3.10 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := api.CheckEndpoints("endpoints", "main", ef.endpoints); err != nil {
				return err
			}
			if len(live) == 0 {
				return badFlag("live-master-ip", "", "list every live master's apiserver IP, e.g. --live-master-ip 10.0.1.10 (kubectl get nodes -o wide)")
			}
			for _, ip := range live {
				if err := api.CheckIP("live-master-ip", ip); err != nil {
					return err
				}
			}
			if wait < 0 {
				return badFlag("wait-renewed", wait.String(), "give a positive duration, or 0 not to wait")
			}
			if !yes {
				wait = 0
			}
			ctx := cmd.Context()
			cli, err := etcdconn.New(ctx, etcdconn.Config{Endpoints: ef.endpoints, CACert: ef.cacert, Cert: ef.cert, Key: ef.key})
			if err != nil {
				return err
			}
			defer cli.Close()
			res, err := leases.Clean(ctx, cli, live, leases.CleanOptions{DryRun: !yes, WaitRenewed: wait})
			if err != nil {
				return err
			}
			out := struct {
				DryRun bool `json:"dryRun"`
				leases.CleanResult
			}{DryRun: !yes, CleanResult: res}
			return a.print(out, func(w io.Writer) {
				verb := "would delete"
				if yes {
					verb = "deleted"
				}
				fmt.Fprintf(w, "keep:   %s\n%s: %s\n", strings.Join(res.Plan.Keep, " "), verb, strings.Join(res.Plan.Delete, " "))
				if !yes {
					fmt.Fprintln(w, "dry run: nothing deleted; add --yes to delete")
				}
			})
		},
	}
	ef.bind(cmd)
	cmd.Flags().StringSliceVar(&live, "live-master-ip", nil, "IP of a live master's apiserver (repeat, required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "delete (default: only show what would be deleted)")
	cmd.Flags().DurationVar(&wait, "wait-renewed", 30*time.Second, "with --yes: wait until exactly the live masters hold a lease key (0: don't)")
	return cmd
}
