package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/workflows"
)

func (a *app) restoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a cluster's etcd (etcd-manager backups, or EBS volume snapshots)",
	}
	cmd.AddCommand(a.restoreEtcdManagerCmd(), a.restoreVolumesCmd())
	return cmd
}

func (a *app) restoreEtcdManagerCmd() *cobra.Command {
	var (
		in          workflows.EtcdManagerRestoreInput
		masterSpecs []string
		discover    workflows.DiscoverInput
		wait        bool
	)
	cmd := &cobra.Command{
		Use:   "etcd-manager --cluster NAME --state-store URL --main-endpoints URL --events-endpoints URL --master SPEC... [--backup latest|NAME] [--dry-run] [--approve] [--wait]",
		Short: "Restore main and events from etcd-manager backups: commands, restarts, wait, lease clean-up",
		Long: `Restore main and events of one kops cluster from etcd-manager backups, as one durable workflow
(id restore/<cluster>): pre-flight checks that change nothing, a plan, approval, a safety backup
of the current data, the restore commands, a restart of every etcd-manager container over the
Docker API, waiting for etcd-manager to finish, and the master-lease clean-up.

Without --approve the workflow waits for 'kopsdr approve restore/<cluster>' (or reject).
--dry-run stops after the plan and changes nothing.

--master takes name=<node>,docker=<endpoint>,ip=<apiserver IP>[,tlsca=F,tlscert=F,tlskey=F];
repeat it for every master. Or find the masters in EC2 with --discover-region and
--docker-endpoint-template (e.g. "tcp://{{.PrivateIP}}:2376").`,
		Example: `  kopsdr restore etcd-manager --cluster test.my.clusters --state-store s3://my.clusters \
    --main-endpoints https://10.0.1.10:4001,https://10.0.2.10:4001,https://10.0.3.10:4001 \
    --events-endpoints https://10.0.1.10:4002,https://10.0.2.10:4002,https://10.0.3.10:4002 \
    --cacert ca.crt --cert client.crt --key client.key \
    --master name=ip-10-0-1-10.ec2.internal,docker=tcp://10.0.1.10:2376,ip=10.0.1.10 \
    --master name=ip-10-0-2-10.ec2.internal,docker=tcp://10.0.2.10:2376,ip=10.0.2.10 \
    --master name=ip-10-0-3-10.ec2.internal,docker=tcp://10.0.3.10:2376,ip=10.0.3.10 \
    --backup latest --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, spec := range masterSpecs {
				m, err := parseMaster(spec)
				if err != nil {
					return err
				}
				in.Masters = append(in.Masters, m)
			}
			if discover.Region != "" { // the template has a default: only the region asks for discovery
				in.Discover = &discover
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := workflows.RestoreWorkflowID(in.Cluster)
			run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{
				ID: id, TaskQueue: temporalconn.TaskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
			}, workflows.EtcdManagerRestore, in)
			var already *serviceerror.WorkflowExecutionAlreadyStarted
			if errors.As(err, &already) {
				return fmt.Errorf("a restore of %s is already running (workflow %s): follow it with 'kopsdr status %s'", in.Cluster, id, id)
			}
			if err != nil {
				return fmt.Errorf("start restore: %w", err)
			}
			if !wait {
				return a.print(map[string]string{"workflowId": run.GetID(), "runId": run.GetRunID()}, func(w io.Writer) {
					fmt.Fprintf(w, "started %s\n  follow:  kopsdr status %s\n", id, id)
					if !in.Approve && !in.DryRun {
						fmt.Fprintf(w, "  approve: kopsdr approve %s   (or reject) once you have read the plan\n", id)
					}
				})
			}
			var res workflows.EtcdManagerRestoreResult
			if err := follow(cmd.Context(), c, run, &res, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { printRestoreResult(w, res) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Cluster, "cluster", "", "kops cluster name (required)")
	f.StringVar(&in.StateStore, "state-store", os.Getenv("KOPS_STATE_STORE"), "kops state store (env KOPS_STATE_STORE)")
	f.StringVar(&in.Backup, "backup", "latest", "backup of both: latest, a name, or latest-before:<RFC3339>")
	f.StringVar(&in.Main.Backup, "main-backup", "", "backup of main, if not --backup")
	f.StringVar(&in.Events.Backup, "events-backup", "", "backup of events, if not --backup")
	f.StringVar(&in.Main.BackupStore, "main-backup-store", "", "override main's backup store")
	f.StringVar(&in.Events.BackupStore, "events-backup-store", "", "override events' backup store")
	f.StringSliceVar(&in.Main.Endpoints, "main-endpoints", nil, "etcd main client URLs (https://<master>:4001)")
	f.StringSliceVar(&in.Events.Endpoints, "events-endpoints", nil, "etcd events client URLs (https://<master>:4002)")
	f.StringVar(&in.CACert, "cacert", "", "etcd CA path on the worker")
	f.StringVar(&in.Cert, "cert", "", "etcd client certificate path on the worker")
	f.StringVar(&in.Key, "key", "", "etcd client key path on the worker")
	f.StringArrayVar(&masterSpecs, "master", nil, "a master: name=<node>,docker=<endpoint>,ip=<ip>[,tlsca=F,tlscert=F,tlskey=F] (repeat)")
	f.StringVar(&discover.Region, "discover-region", "", "find the masters as running EC2 instances in this region")
	f.StringVar(&discover.DockerEndpointTemplate, "docker-endpoint-template", "tcp://{{.PrivateIP}}:2376", "with --discover-region: each master's Docker endpoint")
	f.StringVar(&discover.TLSCA, "docker-tlsca", "", "with --discover-region: Docker CA on the worker")
	f.StringVar(&discover.TLSCert, "docker-tlscert", "", "with --discover-region: Docker client certificate on the worker")
	f.StringVar(&discover.TLSKey, "docker-tlskey", "", "with --discover-region: Docker client key on the worker")
	f.StringSliceVar(&in.LiveMasterIPs, "live-master-ip", nil, "apiserver IPs whose master leases stay (default: the masters' ip)")
	f.BoolVar(&in.DryRun, "dry-run", false, "check and plan only; change nothing")
	f.BoolVar(&in.Approve, "approve", false, "approve up front instead of waiting for 'kopsdr approve'")
	f.StringVar(&in.ApprovalTimeout, "approval-timeout", "", "give up waiting for approval after this long (default 24h)")
	f.StringVar(&in.RestoreTimeout, "restore-timeout", "", "wait at most this long for etcd-manager per etcd cluster (default 15m)")
	f.BoolVar(&in.NoSafetyBackup, "no-safety-backup", false, "skip the backup of the current data before restoring")
	f.BoolVar(&in.NoLeaseCleanup, "no-lease-cleanup", false, "skip the master-lease clean-up")
	f.BoolVar(&wait, "wait", false, "follow the restore until it ends and print the result")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

// parseMaster reads name=..,docker=..,ip=..,tlsca=..,tlscert=..,tlskey=..
func parseMaster(spec string) (workflows.MasterInput, error) {
	var m workflows.MasterInput
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return m, fmt.Errorf("--master %q: %q is not key=value (keys: name, docker, ip, tlsca, tlscert, tlskey)", spec, kv)
		}
		switch k {
		case "name":
			m.Name = v
		case "docker":
			m.Docker = v
		case "ip":
			m.IP = v
		case "tlsca":
			m.TLSCA = v
		case "tlscert":
			m.TLSCert = v
		case "tlskey":
			m.TLSKey = v
		default:
			return m, fmt.Errorf("--master %q: unknown key %q (keys: name, docker, ip, tlsca, tlscert, tlskey)", spec, k)
		}
	}
	if m.Docker == "" {
		return m, fmt.Errorf("--master %q: docker=<endpoint> is required, e.g. docker=tcp://10.0.1.10:2376", spec)
	}
	return m, nil
}

func printRestoreResult(w io.Writer, res workflows.EtcdManagerRestoreResult) {
	if res.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed. Plan:")
	} else {
		fmt.Fprintln(w, "restored:")
	}
	for _, b := range res.Plan.Backups {
		fmt.Fprintf(w, "  %-6s %s (age %s, %d bytes, etcd %s) from %s\n", b.EtcdCluster, b.Backup, b.Age, b.Bytes, b.EtcdVersion, b.Store)
	}
	for _, m := range res.Plan.Masters {
		fmt.Fprintf(w, "  master %s (%s): %s\n", m.Master, m.Endpoint, strings.Join(m.Containers, ", "))
	}
	fmt.Fprintf(w, "  leases: %s\n", res.Plan.LeaseRule)
	if res.ApprovedBy != nil {
		fmt.Fprintf(w, "  approved by %s %s\n", res.ApprovedBy.By, res.ApprovedBy.Comment)
	}
	keys := make([]string, 0, len(res.SafetyBackups))
	for k := range res.SafetyBackups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  safety backup of %s: %s\n", k, res.SafetyBackups[k])
	}
	if len(res.LeasesDeleted) > 0 {
		fmt.Fprintf(w, "  master leases deleted: %s\n", strings.Join(res.LeasesDeleted, ", "))
	}
	for _, s := range res.Steps {
		fmt.Fprintf(w, "  %-26s %7.1fs\n", s.Step, s.Seconds)
	}
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status WORKFLOW_ID",
		Short: "Show where a kopsdr workflow is: step, masters, times, plan, last error",
		Example: `  kopsdr status restore/test.my.clusters
  kopsdr status restore/test.my.clusters -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			desc, err := c.DescribeWorkflowExecution(cmd.Context(), args[0], "")
			if err != nil {
				return fmt.Errorf("no workflow %s: %w", args[0], err)
			}
			out := map[string]any{"workflowId": args[0], "state": desc.GetWorkflowExecutionInfo().GetStatus().String()}
			if v, err := c.QueryWorkflow(cmd.Context(), args[0], "", workflows.QueryStatus); err == nil {
				var st map[string]any
				if v.Get(&st) == nil {
					out["status"] = st
				}
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s\n", args[0], out["state"])
				st, _ := out["status"].(map[string]any)
				for _, k := range []string{"step", "lastError", "approval"} {
					if v, ok := st[k]; ok && v != nil && v != "" {
						fmt.Fprintf(w, "  %s: %v\n", k, compact(v))
					}
				}
				for _, k := range []string{"masters", "members"} {
					if m, ok := st[k].(map[string]any); ok {
						names := make([]string, 0, len(m))
						for n := range m {
							names = append(names, n)
						}
						sort.Strings(names)
						for _, n := range names {
							fmt.Fprintf(w, "  %s %s: %v\n", strings.TrimSuffix(k, "s"), n, compact(m[n]))
						}
					}
				}
				if steps, ok := st["steps"].([]any); ok {
					for _, s := range steps {
						if m, ok := s.(map[string]any); ok {
							secs, _ := m["seconds"].(float64)
							fmt.Fprintf(w, "  step %-26v %6.1fs\n", m["step"], secs)
						}
					}
				}
				if p, ok := st["plan"]; ok && p != nil {
					b, _ := json.MarshalIndent(p, "  ", "  ")
					fmt.Fprintf(w, "  plan: %s\n", b)
				}
			})
		},
	}
}

func compact(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// decideCmd builds approve and reject: an Update, so a restore that is not
// waiting for approval says so at once instead of silently ignoring it.
func (a *app) decideCmd(verb string) *cobra.Command {
	var by, comment string
	cmd := &cobra.Command{
		Use:     verb + " WORKFLOW_ID",
		Short:   map[string]string{"approve": "Approve a restore waiting for approval", "reject": "Reject a restore waiting for approval (it ends changing nothing)"}[verb],
		Example: fmt.Sprintf(`  kopsdr %s restore/test.my.clusters --comment "incident 42"`, verb),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if by == "" {
				return fmt.Errorf("say who decides: --by NAME")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: args[0], UpdateName: verb, WaitForStage: client.WorkflowUpdateStageCompleted,
				Args: []any{workflows.Approval{By: by, Comment: comment}},
			})
			if err == nil {
				err = h.Get(cmd.Context(), nil)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", verb, args[0], err)
			}
			return a.print(map[string]string{"workflowId": args[0], "decision": verb, "by": by}, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s by %s\n", args[0], verb+"d", by)
			})
		},
	}
	cmd.Flags().StringVar(&by, "by", os.Getenv("USER"), "who decides (recorded in the workflow)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	return cmd
}
