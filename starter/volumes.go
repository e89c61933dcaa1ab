package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// The legacy EBS path: snapshot-volumes, restore volumes, list-volume-snapshots
// and the --volume-snapshots flags of schedule create.

// volumeRetentionFlags are the snapshot sets' retention flags.
type volumeRetentionFlags struct {
	prefix              string
	keepLast            int
	hourlyFor, dailyFor time.Duration
}

func (f *volumeRetentionFlags) bind(cmd *cobra.Command, prefix string) {
	f.prefix = prefix
	cmd.Flags().IntVar(&f.keepLast, prefix+"keep-last", 0, "retention: keep the newest N snapshot sets (default 3)")
	cmd.Flags().DurationVar(&f.hourlyFor, prefix+"hourly-for", 0, "retention: keep the first set of each hour for this long (default 168h)")
	cmd.Flags().DurationVar(&f.dailyFor, prefix+"daily-for", 0, "retention: keep the first set of each day for this long (default 2160h = 90 days)")
}

// retention holds what was given on the command line, so that Validate
// sees (and refuses) zero or negative values.
func (f *volumeRetentionFlags) retention(cmd *cobra.Command) (*api.VolumeRetention, error) {
	var r api.VolumeRetention
	set := false
	if cmd.Flags().Changed(f.prefix + "keep-last") {
		if f.keepLast == 0 { // in JSON 0 means the default; typed, it means keep none
			return nil, badFlag(f.prefix+"keep-last", "0", "give how many of the newest sets to keep, at least 1, e.g. 3")
		}
		r.KeepLast, set = f.keepLast, true
	}
	if cmd.Flags().Changed(f.prefix + "hourly-for") {
		r.HourlyFor, set = f.hourlyFor.String(), true
	}
	if cmd.Flags().Changed(f.prefix + "daily-for") {
		r.DailyFor, set = f.dailyFor.String(), true
	}
	if !set {
		return nil, nil
	}
	return &r, nil
}

// durationFlag copies a typed duration flag into a JSON input field when
// it was given.
func durationFlag(cmd *cobra.Command, flag string, d time.Duration, dst *string) {
	if cmd.Flags().Changed(flag) {
		*dst = d.String()
	}
}

func bindRegion(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "region", os.Getenv("AWS_REGION"), "AWS region of the cluster's masters (env AWS_REGION); the worker's own AWS credentials are used")
}

func (a *app) snapshotVolumesCmd() *cobra.Command {
	var (
		in          api.VolumeSnapshotInput
		rf          volumeRetentionFlags
		waitTimeout time.Duration
		wait        bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot-volumes --cluster NAME --region REGION [--wait]",
		Short: "Snapshot every etcd EBS volume (main and events, every member) of a legacy kops cluster at once",
		Long: `Snapshot every etcd EBS volume of a kops cluster at once, as the runbook's Lambda did:
volumes are found by protokube's tags (KubernetesCluster, k8s.io/etcd/main|events), and each
snapshot is tagged kopsdr.io/* (cluster, set, etcd cluster, member, zone, the volume's tags) so
that "kopsdr restore volumes" finds it again. Then the retention policy prunes older sets;
the newest completed set is never deleted. Runs on the worker with its AWS credentials.`,
		Example: `  kopsdr snapshot-volumes --cluster k8s.mycompany.tld --region eu-central-1 --wait
  kopsdr snapshot-volumes --cluster k8s.mycompany.tld --region eu-central-1 --keep-last 24 --prune-dry-run --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if in.Retention, err = rf.retention(cmd); err != nil {
				return err
			}
			durationFlag(cmd, "wait-timeout", waitTimeout, &in.WaitTimeout)
			if err := in.Validate(); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{
				ID: api.VolumeSnapshotWorkflowID(in.Cluster), TaskQueue: api.TaskQueue,
				WorkflowExecutionErrorWhenAlreadyStarted: true,
			}, api.WorkflowVolumeSnapshot, in)
			if err != nil {
				return fmt.Errorf("start volume snapshots: %w", err)
			}
			if !wait {
				return a.started(cmd, run, false)
			}
			var res api.VolumeSnapshotResult
			if err := follow(cmd.Context(), c, run, &res, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) {
				fmt.Fprintf(w, "set %s\n", res.Set)
				for _, s := range res.Snapshots {
					fmt.Fprintf(w, "  %s/%s\t%s\t%s\t%s\t%s\n", s.EtcdCluster, s.Member, s.AvailabilityZone, s.VolumeID, s.ID, s.State)
				}
				if r := res.Retention; r != nil {
					verb := "deleted"
					if res.PruneDryRun {
						verb = "would delete"
					}
					for _, d := range r.Delete {
						fmt.Fprintf(w, "%s set %s (%s, %d snapshots)\n", verb, d.Set, d.Reason, len(d.Snapshots))
					}
				}
			})
		},
	}
	f := cmd.Flags()
	bindCluster(cmd, &in.Cluster)
	bindRegion(cmd, &in.Region)
	f.StringSliceVar(&in.EtcdClusters, "etcd", nil, "etcd clusters to snapshot (default main,events)")
	rf.bind(cmd, "")
	f.BoolVar(&in.NoPrune, "no-prune", false, "do not apply the retention policy")
	f.BoolVar(&in.PruneDryRun, "prune-dry-run", false, "list the sets retention would delete, delete nothing")
	f.DurationVar(&waitTimeout, "wait-timeout", api.DefaultSnapshotWait, "how long the snapshots may take to complete")
	f.Int32Var(&in.MaxAttempts, "max-attempts", 0, "attempts of a failing EC2 step (default 10)")
	f.BoolVar(&wait, "wait", false, "wait for the snapshots to complete and print them")
	return cmd
}

func (a *app) restoreVolumesCmd() *cobra.Command {
	var (
		in                       api.VolumeRestoreInput
		verify                   api.VolumeVerify
		approvalWait, verifyWait time.Duration
		wait                     bool
	)
	cmd := &cobra.Command{
		Use:   "volumes --cluster NAME --region REGION --state-store URL [--dry-run | --wait]",
		Short: "Restore a legacy kops cluster's etcd EBS volumes from snapshots (protokube tags, AZ and KMS kept)",
		Long: `Restore etcd EBS volumes from snapshots the way protokube needs them. Pre-flight changes
nothing: snapshots completed and taken in each member's zone, the cluster spec's encryption
(encryptedVolume, kmsKeyId, read from <state-store>/<cluster>/config) never lost. Then the plan
waits for approval (kopsdr approve restore/<cluster>, or --approve up front). Per member, in parallel: a new
volume from the snapshot with the old one's type, size, iops and throughput; the kops tags moved
from the old volume (kept untagged, or deleted once detached) to the new one. Then the masters
restart. If a step after the tags moved fails for good, the old volumes get their tags back.

By default every member of main and events is restored from the newest snapshot set that has a
completed snapshot of each (the plan warns when it passes over a newer incomplete set); choose
with --snapshot-set, --snapshot-ids or --at. Pre-flight refuses to restore the snapshots the
current volumes already came from (--again to repeat a restore) and to leave the members of one
etcd cluster on data from different times (--allow-mixed-times).`,
		Example: `  # See the plan, change nothing:
  kopsdr restore volumes --cluster k8s.mycompany.tld --region eu-central-1 --state-store s3://my.clusters --dry-run
  # Restore the newest set taken before an incident, then approve from another shell:
  kopsdr restore volumes --cluster k8s.mycompany.tld --region eu-central-1 --state-store s3://my.clusters \
    --at 2026-11-21T22:00:00Z --wait
  kopsdr approve restore/k8s.mycompany.tld --comment "INC-42"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			durationFlag(cmd, "verify-timeout", verifyWait, &verify.Timeout)
			if len(verify.MainEndpoints)+len(verify.EventsEndpoints) > 0 || verify.Timeout != "" || verify.CACert != "" {
				in.Verify = &verify
			}
			durationFlag(cmd, "approval-timeout", approvalWait, &in.ApprovalTimeout)
			if err := in.Validate(); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := startRestore(cmd.Context(), c, in.Cluster, api.WorkflowVolumeRestore, in)
			if err != nil {
				return err
			}
			if !wait && !in.DryRun {
				return a.started(cmd, run, !in.Approve)
			}
			if !in.DryRun && !in.Approve {
				fmt.Fprintln(cmd.ErrOrStderr(), "waiting for approval: "+approveHint(cmd, run.GetID()))
			}
			var rep api.VolumeRestoreReport
			if err := follow(cmd.Context(), c, run, &rep, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return a.print(rep, func(w io.Writer) { printVolumeReport(w, rep) })
		},
	}
	f := cmd.Flags()
	bindCluster(cmd, &in.Cluster)
	bindRegion(cmd, &in.Region)
	bindStateStore(cmd, &in.StateStore, "kops state store holding <cluster>/config")
	f.StringSliceVar(&in.EtcdClusters, "etcd", nil, "etcd clusters to restore (default main,events)")
	f.StringSliceVar(&in.Members, "members", nil, "members to restore, as named in the cluster spec (default all)")
	f.StringVar(&in.SnapshotSet, "snapshot-set", "", "restore this snapshot set (see kopsdr list-volume-snapshots)")
	f.StringSliceVar(&in.SnapshotIDs, "snapshot-ids", nil, "restore these snapshots, one per member")
	f.StringVar(&in.At, "at", "", "restore the newest complete set taken at or before this RFC 3339 time")
	f.BoolVar(&in.Again, "again", false, "restore snapshots the current volumes already came from (refused without it)")
	f.BoolVar(&in.AllowMixedTimes, "allow-mixed-times", false, "let members of one etcd cluster come from different times: other sets, or only some members restored (refused without it)")
	f.StringVar(&in.OldVolumes, "old-volumes", "", "untag (default: keep them without kops tags) or delete (once detached)")
	f.StringVar(&in.Restart, "restart", "", "reboot (default), stop-start, or none")
	f.BoolVar(&in.DryRun, "dry-run", false, "run pre-flight, print the plan, change nothing")
	f.BoolVar(&in.Approve, "approve", false, "approve up front instead of waiting for 'kopsdr approve'")
	f.DurationVar(&approvalWait, "approval-timeout", api.DefaultApprovalTimeout, "how long to wait for approval before giving up having created nothing")
	f.StringSliceVar(&verify.MainEndpoints, "verify-main-endpoints", nil, "after the restart, wait until etcd main answers here with every member")
	f.StringSliceVar(&verify.EventsEndpoints, "verify-events-endpoints", nil, "and etcd events here")
	f.StringVar(&verify.CACert, "cacert", "", "etcd CA path on the worker, for the verification")
	f.StringVar(&verify.Cert, "cert", "", "etcd client certificate path on the worker")
	f.StringVar(&verify.Key, "key", "", "etcd client key path on the worker")
	f.DurationVar(&verifyWait, "verify-timeout", api.DefaultVerifyTimeout, "how long to wait for etcd")
	f.Int32Var(&in.MaxAttempts, "max-attempts", 0, "attempts of a failing EC2 step (default 10)")
	f.BoolVar(&wait, "wait", false, "follow the restore and print its report")
	return cmd
}

// printVolumeReport is the text form of a restore's report.
func printVolumeReport(w io.Writer, rep api.VolumeRestoreReport) {
	fmt.Fprintf(w, "restore %s: %s\n", rep.WorkflowID, rep.Step)
	if p := rep.Plan; p != nil {
		if p.SnapshotSet != "" {
			fmt.Fprintf(w, "snapshot set %s (%s)\n", p.SnapshotSet, p.SetTime.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "restart %s %v, old volumes: %s\n", p.Restart, p.Instances, p.OldVolumes)
		for _, m := range p.Members {
			old := m.OldVolume
			if old == "" {
				old = "(none)"
			}
			fmt.Fprintf(w, "  %s/%s\t%s\t%s -> new %s %dGiB, replacing %s; %s\n", m.EtcdCluster, m.Member, m.AvailabilityZone, m.Snapshot,
				m.VolumeType, m.SizeGiB, old, m.Encryption)
		}
		for _, warn := range p.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
	}
	for _, m := range rep.Members {
		if m.NewVolume == "" && m.State == "planned" {
			continue
		}
		fmt.Fprintf(w, "  %s/%s\t%s\tnew %s\told %s %s\n", m.EtcdCluster, m.Member, m.State, m.NewVolume, m.OldVolume, m.OldVolumeOutcome)
	}
	if d := rep.Approval; d != nil {
		printDecision(w, d)
	} else if !rep.ApprovalDeadline.IsZero() {
		fmt.Fprintf(w, "approval: waiting until %s: kopsdr approve %s (or reject)\n", rep.ApprovalDeadline.Format(time.RFC3339), rep.WorkflowID)
	}
	if rep.LastError != "" {
		fmt.Fprintf(w, "error: %s\n", rep.LastError)
	}
}

func (a *app) listVolumeSnapshotsCmd() *cobra.Command {
	var cluster, region string
	cmd := &cobra.Command{
		Use:   "list-volume-snapshots --cluster NAME --region REGION",
		Short: "List the EBS snapshot sets kopsdr took of a cluster, newest first",
		Long: `List the EBS snapshot sets kopsdr took of a cluster, newest first, with their state.
It asks EC2 directly with the AWS credentials of this shell; no worker is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := api.CheckCluster(cluster); err != nil {
				return err
			}
			if err := api.CheckRegion("region", region); err != nil {
				return err
			}
			c, err := kops.NewEC2Client(cmd.Context(), region, "")
			if err != nil {
				return err
			}
			snaps, err := ebs.ClusterSnapshots(cmd.Context(), c, cluster)
			if err != nil {
				return err
			}
			sets := ebs.Sets(snaps)
			return a.print(sets, func(w io.Writer) {
				for _, s := range sets {
					var members []string
					for _, sn := range s.Snapshots {
						members = append(members, sn.Key()+"="+sn.ID)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\n", s.ID, s.State(), strings.Join(members, " "))
				}
			})
		},
	}
	bindCluster(cmd, &cluster)
	bindRegion(cmd, &region)
	return cmd
}

// volumeSchedule holds the flags "schedule create --volume-snapshots" adds.
type volumeSchedule struct {
	enabled bool
	in      api.VolumeSnapshotInput
	rf      volumeRetentionFlags
}

// volumeScheduleFlags binds --volume-snapshots and its options on schedule
// create. With --volume-snapshots the schedule runs VolumeSnapshot (id
// volume-snapshots/<cluster>) instead of the etcd-manager backup.
func (a *app) volumeScheduleFlags(cmd *cobra.Command) *volumeSchedule {
	v := &volumeSchedule{}
	f := cmd.Flags()
	f.BoolVar(&v.enabled, "volume-snapshots", false, "schedule EBS snapshots of the etcd volumes (legacy etcd) instead of etcd-manager backups")
	bindRegion(cmd, &v.in.Region)
	f.StringSliceVar(&v.in.EtcdClusters, "volume-etcd", nil, "with --volume-snapshots: etcd clusters to snapshot (default main,events)")
	v.rf.bind(cmd, "volume-")
	f.BoolVar(&v.in.PruneDryRun, "volume-prune-dry-run", false, "with --volume-snapshots: list what retention would delete, delete nothing")
	return v
}

// input is the VolumeSnapshot input the schedule runs.
func (v *volumeSchedule) input(cmd *cobra.Command, cluster string) (api.VolumeSnapshotInput, error) {
	in := v.in
	r, err := v.rf.retention(cmd)
	in.Cluster, in.Retention = cluster, r
	return in, err
}
