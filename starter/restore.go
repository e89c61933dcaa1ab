package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"
	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
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
		in                        api.EtcdManagerRestoreInput
		masterSpecs               []string
		discover                  api.DiscoverInput
		ssh                       api.SSHInput
		sshSudo                   bool
		approvalWait, restoreWait time.Duration
		wait                      bool
	)
	cmd := &cobra.Command{
		Use:   "etcd-manager --cluster NAME --state-store URL --main-endpoints URL --events-endpoints URL --master SPEC... [--etcd main|events] [--backup latest|NAME | --at TIME | --revision REV] [--dry-run] [--approve] [--wait]",
		Short: "Restore main and events from etcd-manager backups: commands, restarts, wait, lease clean-up",
		Long: `Restore main and events of one kops cluster from etcd-manager backups, as one durable workflow
(id restore/<cluster>): pre-flight checks that change nothing, a plan, approval, a safety backup
of the current data, the restore commands, a restart of every etcd-manager on every master (through
Docker, through containerd over SSH, or by rebooting the EC2 instances), waiting for etcd-manager to
finish, and the master-lease clean-up. --etcd main (or events) restores only that etcd cluster.

Without --approve the workflow waits for 'kopsdr approve restore/<cluster>' (or reject).
--dry-run stops after the plan and changes nothing.

--at TIME or --revision REV restore to a point instead of a backup, from the changes kopsdr pitr
captured: after approval a backup is made at that point (see kopsdr make-backup) and restored.
--at means the last revision kopsdr had observed by that time; --revision is main's (or that of
the one etcd cluster --etcd selects). The other etcd cluster goes to the same time: from its own
captured changes, else its newest backup at or before it. The plan shows how each point is made.

--master describes one master; repeat it for every master. Its keys:
  name=<node>          the Kubernetes node name (narrows the container match)
  ip=<apiserver IP>    for the master-lease clean-up
  runtime=docker|containerd|reboot   default: docker with docker=, containerd with ssh=
  docker=<endpoint>    Docker: unix:///var/run/docker.sock or tcp://<ip>:2376 [,tlsca=F,tlscert=F,tlskey=F]
  ssh=[user@]host[:port]   containerd (kops masters since Kubernetes 1.24): the master's sshd;
                       its containerd socket is reached through it
  containerd=unix://<path>  the socket on the master (default unix:///run/containerd/containerd.sock)
  instance=<i-...>     reboot: the EC2 instance (with --region)
SSH logins use --ssh-user (default ubuntu), --ssh-key (default: the SSH agent), --ssh-known-hosts
(default ~/.ssh/known_hosts; an unknown or changed host key is refused) and --ssh-jump (a bastion).
runtime=reboot needs no host access: every master is rebooted at once and etcd is down until they
have booted (minutes); never mix it with the other runtimes.

Or find the masters in EC2 with --discover-region. The runtime is then --runtime, else the one the
kops cluster spec in the state store declares (containerd from Kubernetes 1.24 on); each master's
sshd comes from --ssh-address-template ("{{.PrivateIP}}:22") or its Docker endpoint from
--docker-endpoint-template ("tcp://{{.PrivateIP}}:2376").`,
		Example: `  kopsdr restore etcd-manager --cluster test.my.clusters --state-store s3://my.clusters \
    --main-endpoints https://10.0.1.10:4001,https://10.0.2.10:4001,https://10.0.3.10:4001 \
    --events-endpoints https://10.0.1.10:4002,https://10.0.2.10:4002,https://10.0.3.10:4002 \
    --cacert ca.crt --cert client.crt --key client.key \
    --master name=ip-10-0-1-10.ec2.internal,docker=tcp://10.0.1.10:2376,ip=10.0.1.10 \
    --master name=ip-10-0-2-10.ec2.internal,docker=tcp://10.0.2.10:2376,ip=10.0.2.10 \
    --master name=ip-10-0-3-10.ec2.internal,docker=tcp://10.0.3.10:2376,ip=10.0.3.10 \
    --backup latest --dry-run

  # containerd masters, reached over SSH through the kops bastion:
  kopsdr restore etcd-manager --cluster test.my.clusters --state-store s3://my.clusters \
    --main-endpoints https://10.0.1.10:4001,https://10.0.2.10:4001,https://10.0.3.10:4001 \
    --events-endpoints https://10.0.1.10:4002,https://10.0.2.10:4002,https://10.0.3.10:4002 \
    --cacert ca.crt --cert client.crt --key client.key \
    --ssh-key /home/kopsdr/.ssh/id_ed25519 --ssh-known-hosts /home/kopsdr/.ssh/known_hosts \
    --ssh-jump ubuntu@bastion.test.my.clusters \
    --master name=ip-10-0-1-10.ec2.internal,ssh=10.0.1.10,ip=10.0.1.10 \
    --master name=ip-10-0-2-10.ec2.internal,ssh=10.0.2.10,ip=10.0.2.10 \
    --master name=ip-10-0-3-10.ec2.internal,ssh=10.0.3.10,ip=10.0.3.10 \
    --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for i, spec := range masterSpecs {
				m, err := parseMaster(i, spec)
				if err != nil {
					return err
				}
				in.Masters = append(in.Masters, m)
			}
			if discover.Region != "" {
				in.Discover = &discover
			}
			if cmd.Flags().Changed("ssh-sudo") {
				ssh.Sudo = &sshSudo
			}
			if ssh != (api.SSHInput{}) {
				in.SSH = &ssh
			}
			for _, flag := range []string{"docker-endpoint-template", "docker-tlsca", "docker-tlscert", "docker-tlskey", "runtime", "ssh-address-template", "containerd-socket"} {
				if cmd.Flags().Changed(flag) && in.Discover == nil {
					return badFlag(flag, cmd.Flag(flag).Value.String(), "goes with --discover-region; with --master give tls files as tlsca=,tlscert=,tlskey=")
				}
			}
			for _, flag := range []string{"main-change-store", "events-change-store"} {
				if v := cmd.Flag(flag).Value.String(); v != "" && !in.PointInTime() {
					return badFlag(flag, v, "a change store is read for a restore to a point: give --at or --revision, or drop it")
				}
			}
			if cmd.Flags().Changed("approval-timeout") {
				in.ApprovalTimeout = approvalWait.String()
			}
			if cmd.Flags().Changed("restore-timeout") {
				in.RestoreTimeout = restoreWait.String()
			}
			if err := in.Validate(); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := startRestore(cmd.Context(), c, in.Cluster, api.WorkflowEtcdManagerRestore, in)
			if err != nil {
				return err
			}
			if !wait {
				return a.started(cmd, run, !in.Approve && !in.DryRun)
			}
			if !in.DryRun && !in.Approve {
				fmt.Fprintln(cmd.ErrOrStderr(), "waiting for approval: "+approveHint(cmd, run.GetID()))
			}
			var res api.EtcdManagerRestoreResult
			if err := follow(cmd.Context(), c, run, &res, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { printRestoreResult(w, res) })
		},
	}
	f := cmd.Flags()
	bindCluster(cmd, &in.Cluster)
	bindStateStore(cmd, &in.StateStore, "kops state store", "main-backup-store", "events-backup-store")
	f.StringSliceVar(&in.EtcdClusters, "etcd", nil, "restore only this etcd cluster: main or events (default both)")
	f.StringVar(&in.Backup, "backup", "", "backup of both: latest (default), a name, or latest-before:<RFC3339>")
	f.StringVar(&in.Main.Backup, "main-backup", "", "backup of main, if not --backup")
	f.StringVar(&in.Events.Backup, "events-backup", "", "backup of events, if not --backup")
	f.StringVar(&in.At, "at", "", "restore to a point instead of a backup: "+atHelp)
	f.Int64Var(&in.Revision, "revision", 0, "restore to this etcd revision of main (or of the one --etcd cluster) instead of a backup")
	f.StringVar(&in.Main.ChangeStore, "main-change-store", "", "with --at/--revision: main's change store (default: beside its backup store)")
	f.StringVar(&in.Events.ChangeStore, "events-change-store", "", "with --at/--revision: events' change store (default: beside its backup store)")
	f.StringVar(&in.Main.BackupStore, "main-backup-store", "", "main's backup store, instead of --state-store")
	f.StringVar(&in.Events.BackupStore, "events-backup-store", "", "events' backup store, instead of --state-store")
	f.StringSliceVar(&in.Main.Endpoints, "main-endpoints", nil, "etcd main client URLs (https://<master>:4001), one per master in --master order unless the host is the master's ip")
	f.StringSliceVar(&in.Events.Endpoints, "events-endpoints", nil, "etcd events client URLs (https://<master>:4002), in the same order")
	f.StringVar(&in.CACert, "cacert", "", "etcd CA path on the worker")
	f.StringVar(&in.Cert, "cert", "", "etcd client certificate path on the worker")
	f.StringVar(&in.Key, "key", "", "etcd client key path on the worker")
	f.StringArrayVar(&masterSpecs, "master", nil, "a master: name=<node>,ip=<ip>, and docker=<endpoint> | ssh=[user@]host[:port] | runtime=reboot,instance=<id> (repeat; see above)")
	f.StringVar(&in.Region, "region", "", "EC2 region of masters given with runtime=reboot")
	f.StringVar(&ssh.User, "ssh-user", "", "SSH login on containerd masters (default ubuntu, as on kops's images)")
	f.StringVar(&ssh.Key, "ssh-key", "", "SSH private key file on the worker (default: the agent at $SSH_AUTH_SOCK)")
	f.StringVar(&ssh.KnownHosts, "ssh-known-hosts", "", "known_hosts file on the worker holding the masters' host keys (default ~/.ssh/known_hosts)")
	f.StringVar(&ssh.Jump, "ssh-jump", "", "jump host, [user@]host[:port] (the kops bastion)")
	f.BoolVar(&sshSudo, "ssh-sudo", true, "open the containerd socket as root through sudo -n on the master (default unless --ssh-user root)")
	f.StringVar(&discover.Region, "discover-region", "", "find the masters as running EC2 instances in this region")
	f.StringVar(&discover.Runtime, "runtime", "", "with --discover-region: docker, containerd or reboot (default: from the kops cluster spec)")
	f.StringVar(&discover.SSHAddressTemplate, "ssh-address-template", "", "with --discover-region: each containerd master's sshd (default "+api.DefaultSSHAddressTemplate+")")
	f.StringVar(&discover.ContainerdSocket, "containerd-socket", "", "with --discover-region: the containerd socket on the masters (default "+api.DefaultContainerdSocket+")")
	f.StringVar(&discover.DockerEndpointTemplate, "docker-endpoint-template", "", "with --discover-region: each Docker master's endpoint (default "+api.DefaultDockerEndpointTemplate+")")
	f.StringVar(&discover.TLSCA, "docker-tlsca", "", "with --discover-region: Docker CA on the worker")
	f.StringVar(&discover.TLSCert, "docker-tlscert", "", "with --discover-region: Docker client certificate on the worker")
	f.StringVar(&discover.TLSKey, "docker-tlskey", "", "with --discover-region: Docker client key on the worker")
	f.StringSliceVar(&in.LiveMasterIPs, "live-master-ip", nil, "apiserver IPs whose master leases stay (default: the masters' ip)")
	f.BoolVar(&in.DryRun, "dry-run", false, "check and plan only; change nothing")
	f.BoolVar(&in.Approve, "approve", false, "approve up front instead of waiting for 'kopsdr approve'")
	f.DurationVar(&approvalWait, "approval-timeout", api.DefaultApprovalTimeout, "give up waiting for approval after this long, having changed nothing")
	f.DurationVar(&restoreWait, "restore-timeout", api.DefaultRestoreTimeout, "wait at most this long for etcd-manager per etcd cluster")
	f.BoolVar(&in.NoSafetyBackup, "no-safety-backup", false, "skip the backup of the current data before restoring")
	f.BoolVar(&in.NoLeaseCleanup, "no-lease-cleanup", false, "skip the master-lease clean-up")
	f.BoolVar(&wait, "wait", false, "follow the restore until it ends and print the result")
	return cmd
}

// startRestore starts a restore under the cluster's one restore id; a
// second restore of a cluster is refused while one runs, never joined.
func startRestore(ctx context.Context, c client.Client, cluster, workflowType string, in any) (client.WorkflowRun, error) {
	id := api.RestoreWorkflowID(cluster)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: api.TaskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflowType, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil, fmt.Errorf("a restore of %s is already running (workflow %s): follow it with 'kopsdr status %s --follow', or end it with 'kopsdr reject %s'", cluster, id, id, id)
	}
	if err != nil {
		return nil, fmt.Errorf("start restore: %w", err)
	}
	return run, nil
}

// parseMaster reads name=..,docker=..,ip=..,tlsca=..,tlscert=..,tlskey=..;
// the input's Validate checks the values.
func parseMaster(i int, spec string) (api.MasterInput, error) {
	var m api.MasterInput
	keys := "keys: name, ip, runtime, docker, tlsca, tlscert, tlskey, ssh, containerd, instance; e.g. name=ip-10-0-1-10.ec2.internal,ssh=10.0.1.10,ip=10.0.1.10"
	seen := map[string]bool{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return m, badFlag("master", spec, fmt.Sprintf("%q is not key=value (%s)", kv, keys))
		}
		if seen[k] {
			return m, badFlag("master", spec, fmt.Sprintf("%s is given twice", k))
		}
		seen[k] = true
		switch k {
		case "name":
			m.Name = v
		case "runtime":
			m.Runtime = v
		case "docker":
			m.Docker = v
		case "ssh":
			m.SSH = v
		case "containerd":
			m.Containerd = v
		case "instance":
			m.InstanceID = v
		case "ip":
			m.IP = v
		case "tlsca":
			m.TLSCA = v
		case "tlscert":
			m.TLSCert = v
		case "tlskey":
			m.TLSKey = v
		default:
			return m, badFlag("master", spec, fmt.Sprintf("unknown key %q (%s)", k, keys))
		}
	}
	if m.RuntimeOf() == "" {
		return m, badFlag("master", spec, "say how to restart its etcd-manager: docker=<endpoint>, ssh=[user@]host[:port] (containerd), or runtime=reboot,instance=<id>")
	}
	return m, nil
}

func printRestoreResult(w io.Writer, res api.EtcdManagerRestoreResult) {
	if res.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed. Plan:")
	} else {
		fmt.Fprintln(w, "restored:")
	}
	printRestorePlan(w, res.Plan)
	printDecision(w, res.Approval)
	printRestoreOutcome(w, res)
	printSteps(w, res.Steps)
}

// printRestoreOutcome is what a restore did: safety backups, the restored
// clusters, the restarts and the leases deleted.
func printRestoreOutcome(w io.Writer, res api.EtcdManagerRestoreResult) {
	for _, ec := range sortedKeys(res.SafetyBackups) {
		fmt.Fprintf(w, "  safety backup of %s: %s\n", ec, res.SafetyBackups[ec])
	}
	for _, ec := range sortedKeys(res.Restored) {
		r := res.Restored[ec]
		fmt.Fprintf(w, "  %s: cluster %x, %d members, %d keys at revision %d\n", ec, r.ClusterID, r.Members, r.Keys, r.Revision)
	}
	for _, r := range res.Restarts {
		fmt.Fprintf(w, "  restart %s/%s %s: %s -> %s\n", r.Master, r.EtcdCluster, r.Action, r.Before, r.After)
	}
	if len(res.LeasesDeleted) > 0 {
		fmt.Fprintf(w, "  master leases deleted: %s\n", strings.Join(res.LeasesDeleted, ", "))
	}
}

func printRestorePlan(w io.Writer, p api.RestorePlan) {
	for _, b := range p.Backups {
		printPlannedBackup(w, b)
	}
	for _, m := range p.Masters {
		switch {
		case m.Runtime == api.RuntimeReboot:
			fmt.Fprintf(w, "  master %s: reboot %s\n", m.Master, m.Endpoint)
		case m.SSH != "":
			fmt.Fprintf(w, "  master %s (containerd %s over ssh %s): restart %s\n", m.Master, m.Endpoint, m.SSH, strings.Join(m.Containers, ", "))
		default:
			fmt.Fprintf(w, "  master %s (%s): restart %s\n", m.Master, m.Endpoint, strings.Join(m.Containers, ", "))
		}
		if m.Downtime != "" {
			fmt.Fprintf(w, "    %s\n", m.Downtime)
		}
	}
	fmt.Fprintf(w, "  leases: %s\n  safety backup: %s\n", p.LeaseRule, p.SafetyNote)
}

// printPlannedBackup is one etcd cluster's backup in the plan; for a
// restore to a point, how the backup restored will be made and from which
// base backups, since that backup does not exist before approval.
func printPlannedBackup(w io.Writer, b api.PlannedBackup) {
	detail := fmt.Sprintf("(age %s, %.1f MiB, etcd %s, %d members) from %s", b.Age, float64(b.Bytes)/(1<<20), b.EtcdVersion, b.MemberCount, b.Store)
	p := b.PointInTime
	if p == nil {
		fmt.Fprintf(w, "  %-6s %s %s\n", b.EtcdCluster, b.Backup, detail)
		return
	}
	fmt.Fprintf(w, "  %-6s point in time: revision %d", b.EtcdCluster, p.Revision)
	if !p.Observed.IsZero() {
		fmt.Fprintf(w, ", observed %s", p.Observed.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "; after approval a backup is made at it: %s\n", p.Description)
	// After approval the restore puts the backup it made in place of the base.
	made := true
	bases := make([]string, len(p.Bases))
	for i, base := range p.Bases {
		made = made && base.Backup != b.Backup
		bases[i] = fmt.Sprintf("%s (revision >= %d)", base.Backup, base.Revision)
		if base.UpTo > 0 {
			bases[i] = fmt.Sprintf("%s (revision %d to %d)", base.Backup, base.Revision, base.UpTo)
		}
	}
	fmt.Fprintf(w, "         bases, best first (the first whose snapshot is at or below revision %d is used): %s\n", p.Revision, strings.Join(bases, ", "))
	if made {
		fmt.Fprintf(w, "         made backup %s in %s\n", b.Backup, b.Store)
		return
	}
	fmt.Fprintf(w, "         pre-flight checked base %s %s\n", b.Backup, detail)
}

func printDecision(w io.Writer, d *api.Decision) {
	if d == nil {
		return
	}
	fmt.Fprintf(w, "  %s by %s via %s at %s", d.Decision, d.By, d.Via, d.At.Format(time.RFC3339))
	if d.Comment != "" {
		fmt.Fprintf(w, ": %s", d.Comment)
	}
	fmt.Fprintln(w)
}

// printSteps shows each step's real duration, or since when it runs.
func printSteps(w io.Writer, steps []api.StepTime) {
	for _, s := range steps {
		if s.Ended.IsZero() {
			fmt.Fprintf(w, "  step %-30s running since %s\n", s.Step, s.Started.Format(time.RFC3339))
			continue
		}
		fmt.Fprintf(w, "  step %-30s %7.1fs\n", s.Step, s.Ended.Sub(s.Started).Seconds())
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compact(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// decideCmd builds approve and reject, the same for every gated workflow:
// an Update, so a workflow that is not waiting for a decision says so at
// once instead of silently ignoring it.
func (a *app) decideCmd(verb string) *cobra.Command {
	var by, comment string
	past := map[string]string{api.UpdateApprove: api.Approved, api.UpdateReject: api.Rejected}[verb]
	cmd := &cobra.Command{
		Use: verb + " WORKFLOW_ID",
		Short: map[string]string{
			api.UpdateApprove: "Approve a restore that waits for approval (either restore)",
			api.UpdateReject:  "Reject a restore that waits for approval; it ends having changed nothing",
		}[verb],
		Long: `Decide a restore that shows its plan and waits (kopsdr status WORKFLOW_ID shows the plan).
The decision, who made it (--by, default the OS user) and the comment are recorded in the
workflow. The same works from the Web UI or the temporal CLI: an update or a signal named
"approve" or "reject" with {"by": "...", "comment": "..."}.`,
		Example: fmt.Sprintf(`  kopsdr %s restore/test.my.clusters --comment "INC-42"`, verb),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(by) == "" {
				return badFlag("by", by, "say who decides, e.g. --by alice")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: args[0], UpdateName: verb, WaitForStage: client.WorkflowUpdateStageCompleted,
				Args: []any{api.Approval{By: by, Comment: comment}},
			})
			var d api.Decision
			if err == nil {
				err = h.Get(cmd.Context(), &d)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %s", verb, args[0], rootCause(err))
			}
			return a.print(d, func(w io.Writer) { fmt.Fprintf(w, "%s: %s by %s\n", args[0], past, by) })
		},
	}
	cmd.Flags().StringVar(&by, "by", osUser(), "who decides, recorded in the workflow (default: the OS user)")
	cmd.Flags().StringVar(&comment, "comment", "", "why, e.g. the incident")
	return cmd
}

// osUser is the login name, for --by.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
