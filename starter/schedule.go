package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/workflows"
)

// ScheduleID is the id of a cluster's backup schedule.
func ScheduleID(cluster string) string { return "backup/" + cluster }

func (a *app) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Manage the Temporal Schedules that back up a cluster's main and events",
	}
	cmd.AddCommand(a.scheduleCreateCmd(), a.scheduleListCmd(), a.scheduleDescribeCmd(),
		a.scheduleSimpleCmd("pause", "Pause a schedule (no new backups until unpaused)"),
		a.scheduleSimpleCmd("unpause", "Unpause a schedule"),
		a.scheduleSimpleCmd("trigger", "Run a schedule's backup now"),
		a.scheduleSimpleCmd("delete", "Delete a schedule (backups already taken stay)"))
	return cmd
}

func (a *app) scheduleCreateCmd() *cobra.Command {
	var (
		in                   workflows.ClusterBackupInput
		every, catchup       time.Duration
		cron                 string
		keepAll, hourly, day string
		paused               bool
		vs                   *volumeSchedule
	)
	cmd := &cobra.Command{
		Use:   "create --cluster NAME --state-store URL --main-endpoints URL --events-endpoints URL (--every 1h | --cron EXPR)",
		Short: "Create a schedule that backs up main and events (overlap: skip)",
		Example: `  kopsdr schedule create --cluster test.my.clusters --state-store s3://my.clusters \
    --main-endpoints https://10.0.1.10:4001 --events-endpoints https://10.0.1.10:4002 \
    --cacert /etc/kopsdr/etcd-ca.crt --cert /etc/kopsdr/etcd-client.crt --key /etc/kopsdr/etcd-client.key \
    --every 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (every == 0) == (cron == "") {
				return fmt.Errorf("give exactly one of --every (e.g. 1h) or --cron (e.g. \"0 * * * *\")")
			}
			if keepAll != "" || hourly != "" || day != "" {
				in.Retention = &workflows.Retention{KeepAllFor: keepAll, HourlyFor: hourly, DailyFor: day}
			}
			spec := client.ScheduleSpec{}
			if every > 0 {
				spec.Intervals = []client.ScheduleIntervalSpec{{Every: every}}
			} else {
				spec.CronExpressions = []string{cron}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := ScheduleID(in.Cluster)
			opts := client.ScheduleOptions{
				ID:            id,
				Spec:          spec,
				Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
				CatchupWindow: catchup,
				Paused:        paused,
				Action: &client.ScheduleWorkflowAction{
					ID:        id,
					Workflow:  workflows.ClusterBackup,
					Args:      []any{in},
					TaskQueue: temporalconn.TaskQueue,
				},
			}
			if vs.enabled {
				vs.apply(in.Cluster, &opts)
				id = opts.ID
			}
			_, err = c.ScheduleClient().Create(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("create schedule %s: %w", id, err)
			}
			return a.print(map[string]string{"scheduleId": id}, func(w io.Writer) { fmt.Fprintf(w, "created schedule %s\n", id) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Cluster, "cluster", "", "kops cluster name (required)")
	f.StringVar(&in.StateStore, "state-store", os.Getenv("KOPS_STATE_STORE"), "kops state store (env KOPS_STATE_STORE)")
	f.StringSliceVar(&in.Main.Endpoints, "main-endpoints", nil, "etcd main client URLs (https://<master>:4001)")
	f.StringSliceVar(&in.Events.Endpoints, "events-endpoints", nil, "etcd events client URLs (https://<master>:4002)")
	f.StringVar(&in.Main.BackupStore, "main-backup-store", "", "override the main backup store")
	f.StringVar(&in.Events.BackupStore, "events-backup-store", "", "override the events backup store")
	f.StringVar(&in.CACert, "cacert", "", "etcd CA path on the worker")
	f.StringVar(&in.Cert, "cert", "", "etcd client certificate path on the worker")
	f.StringVar(&in.Key, "key", "", "etcd client key path on the worker")
	f.StringVar(&in.SSEKMSKeyID, "sse-kms-key-id", "", "S3 SSE-KMS key for uploaded objects")
	f.DurationVar(&every, "every", 0, "back up at this interval, e.g. 1h")
	f.StringVar(&cron, "cron", "", "or on this cron expression, e.g. \"0 * * * *\"")
	f.DurationVar(&catchup, "catchup-window", time.Hour, "run a missed backup if the worker or Temporal was down for at most this long")
	f.StringVar(&keepAll, "keep-all-for", "", "retention: keep every backup younger than this (default 1h)")
	f.StringVar(&hourly, "hourly-for", "", "retention: keep the first backup of each hour for this long (default 168h)")
	f.StringVar(&day, "daily-for", "", "retention: keep the first backup of each day for this long (default 2160h)")
	f.BoolVar(&paused, "paused", false, "create the schedule paused")
	vs = a.volumeScheduleFlags(cmd)
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

func (a *app) scheduleListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List kopsdr's schedules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			it, err := c.ScheduleClient().List(cmd.Context(), client.ScheduleListOptions{})
			if err != nil {
				return err
			}
			type row struct {
				ID     string `json:"scheduleId"`
				Paused bool   `json:"paused"`
				Next   string `json:"nextRun,omitempty"`
			}
			rows := []row{}
			for it.HasNext() {
				e, err := it.Next()
				if err != nil {
					return err
				}
				if !strings.HasPrefix(e.ID, "backup/") && !strings.HasPrefix(e.ID, "volume-snapshots/") {
					continue
				}
				r := row{ID: e.ID, Paused: e.Paused}
				if len(e.NextActionTimes) > 0 {
					r.Next = e.NextActionTimes[0].UTC().Format(time.RFC3339)
				}
				rows = append(rows, r)
			}
			return a.print(rows, func(w io.Writer) {
				for _, r := range rows {
					fmt.Fprintf(w, "%s\tpaused=%v\tnext=%s\n", r.ID, r.Paused, r.Next)
				}
			})
		},
	}
}

func (a *app) scheduleDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe SCHEDULE_ID|CLUSTER",
		Short: "Show a schedule: spec, state, recent and next runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.ScheduleClient().GetHandle(cmd.Context(), scheduleArg(args[0])).Describe(cmd.Context())
			if err != nil {
				return err
			}
			type run struct {
				WorkflowID string `json:"workflowId"`
				Scheduled  string `json:"scheduledAt"`
			}
			out := struct {
				ID        string   `json:"scheduleId"`
				Paused    bool     `json:"paused"`
				Note      string   `json:"note,omitempty"`
				Intervals []string `json:"intervals,omitempty"`
				Cron      []string `json:"cron,omitempty"`
				Actions   int64    `json:"actions"`
				Skipped   int64    `json:"skippedForOverlap"`
				Recent    []run    `json:"recent"`
				NextRuns  []string `json:"nextRuns"`
			}{ID: scheduleArg(args[0]), Paused: d.Schedule.State.Paused, Note: d.Schedule.State.Note,
				Cron: d.Schedule.Spec.CronExpressions, Actions: int64(d.Info.NumActions),
				Skipped: int64(d.Info.NumActionsSkippedOverlap), Recent: []run{}, NextRuns: []string{}}
			for _, iv := range d.Schedule.Spec.Intervals {
				out.Intervals = append(out.Intervals, iv.Every.String())
			}
			for _, r := range d.Info.RecentActions {
				out.Recent = append(out.Recent, run{r.StartWorkflowResult.WorkflowID, r.ScheduleTime.UTC().Format(time.RFC3339)})
			}
			for _, t := range d.Info.NextActionTimes {
				out.NextRuns = append(out.NextRuns, t.UTC().Format(time.RFC3339))
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "schedule %s paused=%v every=%v cron=%v actions=%d skipped=%d\n",
					out.ID, out.Paused, out.Intervals, out.Cron, out.Actions, out.Skipped)
				for _, r := range out.Recent {
					fmt.Fprintf(w, "  ran %s at %s\n", r.WorkflowID, r.Scheduled)
				}
				for _, t := range out.NextRuns {
					fmt.Fprintf(w, "  next %s\n", t)
				}
			})
		},
	}
}

// scheduleSimpleCmd builds pause, unpause, trigger and delete.
func (a *app) scheduleSimpleCmd(verb, short string) *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   verb + " SCHEDULE_ID|CLUSTER",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := scheduleArg(args[0])
			h := c.ScheduleClient().GetHandle(cmd.Context(), id)
			switch verb {
			case "pause":
				err = h.Pause(cmd.Context(), client.SchedulePauseOptions{Note: note})
			case "unpause":
				err = h.Unpause(cmd.Context(), client.ScheduleUnpauseOptions{Note: note})
			case "trigger":
				err = h.Trigger(cmd.Context(), client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP})
			case "delete":
				err = h.Delete(cmd.Context())
			}
			if err != nil {
				return fmt.Errorf("%s schedule %s: %w", verb, id, err)
			}
			return a.print(map[string]string{"scheduleId": id, "done": verb}, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s\n", verb, id)
			})
		},
	}
	if verb == "pause" || verb == "unpause" {
		cmd.Flags().StringVar(&note, "note", "", "why (shown in describe and the Web UI)")
	}
	return cmd
}

// scheduleArg accepts a schedule id or a bare cluster name.
func scheduleArg(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	return ScheduleID(s)
}
