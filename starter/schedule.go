package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"
	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

func (a *app) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Manage the Temporal Schedules that back up (and drill) a cluster's main and events",
	}
	cmd.AddCommand(a.scheduleCreateCmd(), a.scheduleListCmd(), a.scheduleDescribeCmd(),
		a.scheduleSimpleCmd("pause", "Pause a schedule (no new backups until unpaused); a cluster name pauses its drills too"),
		a.scheduleSimpleCmd("unpause", "Unpause a schedule; a cluster name unpauses its drills too"),
		a.scheduleSimpleCmd("trigger", "Run a schedule's backup (or drill, given drill/<cluster>) now"),
		a.scheduleSimpleCmd("delete", "Delete a schedule (backups already taken stay); a cluster name deletes its drill schedule too and disables its change capture"))
	return cmd
}

func (a *app) scheduleCreateCmd() *cobra.Command {
	var (
		in             api.ClusterBackupInput
		every, catchup time.Duration
		drillEvery     time.Duration
		jitter         time.Duration
		cron           string
		rf             retentionFlags
		paused         bool
		vs             *volumeSchedule
		pf             pitrScheduleFlags
	)
	cmd := &cobra.Command{
		Use:   "create --cluster NAME --state-store URL --main-endpoints URL --events-endpoints URL (--every 1h | --cron EXPR)",
		Short: "Create a schedule that backs up main and events (overlap: skip), and one that drills them",
		Long: `Create a schedule that backs up main and events (overlap: skip), and a second one,
drill/<cluster>, that drills the newest backup of each every --drill-every (default 24h; 0: no
drills): restores it into a throwaway etcd on the worker and checks it (see kopsdr drill).

--pitr also starts change capture of main (pitr/<cluster>/main, see kopsdr pitr enable) with the
same endpoints, TLS files and stores, and --pitr-events that of events too. It is all or nothing:
when a capture cannot be started, the schedules and captures created are removed again. A capture
already running is left as it is. 'kopsdr schedule delete <cluster>' disables the captures too.`,
		Example: `  kopsdr schedule create --cluster test.my.clusters --state-store s3://my.clusters \
    --main-endpoints https://10.0.1.10:4001 --events-endpoints https://10.0.1.10:4002 \
    --cacert /etc/kopsdr/etcd-ca.crt --cert /etc/kopsdr/etcd-client.crt --key /etc/kopsdr/etcd-client.key \
    --every 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := scheduleSpec(cmd, every, cron, catchup, jitter)
			if err != nil {
				return err
			}
			in.Retention = rf.retention(cmd)
			id := api.BackupScheduleID(in.Cluster)
			action := &client.ScheduleWorkflowAction{ID: id, Workflow: api.WorkflowClusterBackup, Args: []any{in}, TaskQueue: api.TaskQueue}
			if vs.enabled {
				vin, err := vs.input(cmd, in.Cluster)
				if err != nil {
					return err
				}
				if err := vin.Validate(); err != nil {
					return err
				}
				id = api.VolumeSnapshotWorkflowID(in.Cluster)
				action = &client.ScheduleWorkflowAction{ID: id, Workflow: api.WorkflowVolumeSnapshot, Args: []any{vin}, TaskQueue: api.TaskQueue}
			} else if err := in.Validate(); err != nil {
				return err
			}
			drills, err := drillSchedule(cmd, in, vs.enabled, drillEvery)
			if err != nil {
				return err
			}
			captures, err := pf.inputs(cmd, in, vs.enabled)
			if err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			sc := c.ScheduleClient()
			_, err = sc.Create(cmd.Context(), client.ScheduleOptions{
				ID: id, Spec: spec, Action: action, Paused: paused,
				Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: catchup,
			})
			if err != nil {
				return fmt.Errorf("create schedule %s: %w", id, err)
			}
			created := map[string]any{"scheduleId": id}
			if drills != nil {
				drills.Paused, drills.CatchupWindow = paused, catchup
				if _, err := sc.Create(cmd.Context(), *drills); err != nil {
					// All or nothing: a second try must not meet half a setup.
					_ = sc.GetHandle(cmd.Context(), id).Delete(cmd.Context())
					return fmt.Errorf("create schedule %s: %w (schedule %s was removed again)", drills.ID, err, id)
				}
				created["drillScheduleId"] = drills.ID
			}
			started, running, err := startCaptures(cmd.Context(), c, captures)
			if err != nil {
				// started were cancelled again by startCaptures.
				removed := append(removeSchedules(cmd.Context(), sc, id, drills), started...)
				// %v, not %w: the error line is the root cause, and this one is.
				return fmt.Errorf("%v (all or nothing: removed again %s)", err, strings.Join(removed, ", "))
			}
			if len(captures) > 0 {
				created["captureWorkflowIds"], created["captureAlreadyRunning"] = started, running
			}
			return a.print(created, func(w io.Writer) {
				fmt.Fprintf(w, "created schedule %s\n", id)
				if drills != nil {
					fmt.Fprintf(w, "created schedule %s (a restore drill of the newest backups every %s)\n", drills.ID, drillEvery)
				}
				for _, cid := range started {
					fmt.Fprintf(w, "started change capture %s (kopsdr pitr status shows it)\n", cid)
				}
				for _, cid := range running {
					fmt.Fprintf(w, "change capture %s was already running: left as it is\n", cid)
				}
			})
		},
	}
	f := cmd.Flags()
	bindCluster(cmd, &in.Cluster)
	bindStateStore(cmd, &in.StateStore, "kops state store", "main-backup-store", "events-backup-store")
	f.StringSliceVar(&in.Main.Endpoints, "main-endpoints", nil, "etcd main client URLs (https://<master>:4001)")
	f.StringSliceVar(&in.Events.Endpoints, "events-endpoints", nil, "etcd events client URLs (https://<master>:4002)")
	f.StringVar(&in.Main.BackupStore, "main-backup-store", "", "main's backup store, instead of --state-store")
	f.StringVar(&in.Events.BackupStore, "events-backup-store", "", "events' backup store, instead of --state-store")
	f.StringVar(&in.CACert, "cacert", "", "etcd CA path on the worker")
	f.StringVar(&in.Cert, "cert", "", "etcd client certificate path on the worker")
	f.StringVar(&in.Key, "key", "", "etcd client key path on the worker")
	f.StringVar(&in.SSEKMSKeyID, "sse-kms-key-id", "", "S3 SSE-KMS key for uploaded objects")
	f.IntVar(&in.CompressionLevel, "compression-level", 0, fmt.Sprintf("gzip level of the backup, 1 (fastest) to 9 (smallest) (default %d)", api.DefaultCompressionLevel))
	f.DurationVar(&every, "every", 0, "back up at this interval, e.g. 1h")
	f.StringVar(&cron, "cron", "", "or on this cron expression, e.g. \"0 * * * *\"")
	f.DurationVar(&catchup, "catchup-window", time.Hour, "run a missed backup if the worker or Temporal was down for at most this long")
	f.DurationVar(&jitter, "jitter", 0, "start each backup up to this much later, at random, so a fleet's schedules do not all fire at once (e.g. 5m)")
	rf.bind(cmd)
	f.BoolVar(&paused, "paused", false, "create the schedule paused")
	f.DurationVar(&drillEvery, "drill-every", 24*time.Hour, "drill the newest backups at this interval (schedule drill/<cluster>); 0: no drill schedule")
	vs = a.volumeScheduleFlags(cmd)
	pf.bind(cmd)
	return cmd
}

// scheduleSpec checks --every, --cron, --catchup-window and --jitter.
func scheduleSpec(cmd *cobra.Command, every time.Duration, cron string, catchup, jitter time.Duration) (client.ScheduleSpec, error) {
	everySet := cmd.Flags().Changed("every")
	switch {
	case everySet && cron != "":
		return client.ScheduleSpec{}, badFlag("cron", cron, "give --every or --cron, not both")
	case !everySet && cron == "":
		return client.ScheduleSpec{}, badFlag("every", "", `give --every (e.g. 1h) or --cron (e.g. "0 * * * *")`)
	case everySet && every <= 0:
		return client.ScheduleSpec{}, badFlag("every", every.String(), "give a positive interval, e.g. 1h")
	case catchup <= 0:
		return client.ScheduleSpec{}, badFlag("catchup-window", catchup.String(), "give a positive duration, e.g. 1h")
	case cron != "" && len(strings.Fields(cron)) != 5:
		return client.ScheduleSpec{}, badFlag("cron", cron, `give five fields: minute hour day-of-month month day-of-week, e.g. "0 * * * *"`)
	case jitter < 0 || (everySet && jitter >= every):
		return client.ScheduleSpec{}, badFlag("jitter", jitter.String(), "give 0 or a delay shorter than the interval, e.g. 5m")
	}
	if everySet {
		return client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}, Jitter: jitter}, nil
	}
	return client.ScheduleSpec{CronExpressions: []string{cron}, Jitter: jitter}, nil
}

// retentionFlags are etcd-manager's retention as typed durations.
type retentionFlags struct{ keepAll, hourly, daily time.Duration }

func (f *retentionFlags) bind(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.keepAll, "keep-all-for", 0, "retention: keep every backup younger than this (default 1h)")
	cmd.Flags().DurationVar(&f.hourly, "hourly-for", 0, "retention: keep the first backup of each hour for this long (default 168h)")
	cmd.Flags().DurationVar(&f.daily, "daily-for", 0, "retention: keep the first backup of each day for this long (default 2160h = 90 days)")
}

// retention is the input's retention: only what was given on the command
// line, so Validate sees (and refuses) a zero or negative value.
func (f *retentionFlags) retention(cmd *cobra.Command) *api.Retention {
	var r api.Retention
	set := false
	for _, x := range []struct {
		flag string
		d    time.Duration
		dst  *string
	}{{"keep-all-for", f.keepAll, &r.KeepAllFor}, {"hourly-for", f.hourly, &r.HourlyFor}, {"daily-for", f.daily, &r.DailyFor}} {
		if cmd.Flags().Changed(x.flag) {
			*x.dst, set = x.d.String(), true
		}
	}
	if !set {
		return nil
	}
	return &r
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
				if !strings.HasPrefix(e.ID, "backup/") && !strings.HasPrefix(e.ID, "volume-snapshots/") && !strings.HasPrefix(e.ID, "drill/") {
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
		Short: "Show a schedule: what it backs up, when, and how its recent runs ended",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := scheduleArg(args[0])
			d, err := c.ScheduleClient().GetHandle(cmd.Context(), id).Describe(cmd.Context())
			if err != nil {
				return fmt.Errorf("schedule %s: %w (kopsdr schedule list shows them)", id, err)
			}
			out := scheduleView{ID: id, Paused: d.Schedule.State.Paused, Note: d.Schedule.State.Note,
				Cron: d.Schedule.Spec.CronExpressions, Actions: int64(d.Info.NumActions),
				Skipped: int64(d.Info.NumActionsSkippedOverlap), Recent: []scheduledRun{}, NextRuns: []string{}}
			for _, iv := range d.Schedule.Spec.Intervals {
				out.Intervals = append(out.Intervals, iv.Every.String())
			}
			if act, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
				out.Workflow, out.Target = fmt.Sprint(act.Workflow), scheduleTarget(act)
			}
			for _, r := range d.Info.RecentActions {
				run := scheduledRun{WorkflowID: r.StartWorkflowResult.WorkflowID, Scheduled: r.ScheduleTime.UTC().Format(time.RFC3339), Outcome: "unknown"}
				if desc, err := c.DescribeWorkflowExecution(cmd.Context(), r.StartWorkflowResult.WorkflowID, r.StartWorkflowResult.FirstExecutionRunID); err == nil {
					run.Outcome = stateName(desc.GetWorkflowExecutionInfo().GetStatus())
				}
				out.Recent = append(out.Recent, run)
			}
			for _, t := range d.Info.NextActionTimes {
				out.NextRuns = append(out.NextRuns, t.UTC().Format(time.RFC3339))
			}
			return a.print(out, out.text)
		},
	}
}

type scheduledRun struct {
	WorkflowID string `json:"workflowId"`
	Scheduled  string `json:"scheduledAt"`
	Outcome    string `json:"outcome"` // running, completed, failed, ...
}

type scheduleView struct {
	ID        string         `json:"scheduleId"`
	Workflow  string         `json:"workflow"`
	Target    map[string]any `json:"target"`
	Paused    bool           `json:"paused"`
	Note      string         `json:"note,omitempty"`
	Intervals []string       `json:"intervals,omitempty"`
	Cron      []string       `json:"cron,omitempty"`
	Actions   int64          `json:"actions"`
	Skipped   int64          `json:"skippedForOverlap"`
	Recent    []scheduledRun `json:"recent"`
	NextRuns  []string       `json:"nextRuns"`
}

func (v scheduleView) text(w io.Writer) {
	fmt.Fprintf(w, "schedule %s: %s, paused=%v, every=%v cron=%v, %d runs, %d skipped for overlap\n",
		v.ID, v.Workflow, v.Paused, v.Intervals, v.Cron, v.Actions, v.Skipped)
	keys := make([]string, 0, len(v.Target))
	for k := range v.Target {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, compact(v.Target[k]))
	}
	for _, r := range v.Recent {
		fmt.Fprintf(w, "  ran %s at %s: %s\n", r.WorkflowID, r.Scheduled, r.Outcome)
	}
	for _, t := range v.NextRuns {
		fmt.Fprintf(w, "  next %s\n", t)
	}
}

// scheduleTarget is the schedule's input without empty fields: cluster,
// stores, endpoints, retention.
func scheduleTarget(act *client.ScheduleWorkflowAction) map[string]any {
	out := map[string]any{}
	if len(act.Args) == 0 {
		return out
	}
	var raw any = act.Args[0]
	if p, ok := raw.(*commonpb.Payload); ok {
		var m map[string]any
		if converter.GetDefaultDataConverter().FromPayload(p, &m) == nil {
			return m
		}
		return out
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &out)
	return out
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
			ids := []string{id}
			if !strings.Contains(args[0], "/") && verb != "trigger" {
				// A cluster's drills follow its backups: nothing to drill
				// while backups are paused, nor once they are deleted.
				ids = append(ids, api.DrillScheduleID(args[0]))
			}
			done := []string{}
			for i, id := range ids {
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
				var nf *serviceerror.NotFound
				if i > 0 && errors.As(err, &nf) {
					continue // a cluster scheduled without drills
				}
				if err != nil {
					return fmt.Errorf("%s schedule %s: %w", verb, id, err)
				}
				done = append(done, id)
			}
			out := map[string]any{"scheduleId": id, "scheduleIds": done, "done": verb}
			var disabled []string
			if verb == "delete" && !strings.Contains(args[0], "/") {
				// A cluster taken out of its schedule leaves capture too: without new
				// full backups, retention could not shorten its chains.
				if disabled, err = disableCaptures(cmd.Context(), c, args[0]); err != nil {
					return fmt.Errorf("deleted %s, but %v", strings.Join(done, " and "), err)
				}
				out["captureDisabled"] = disabled
			}
			return a.print(out, func(w io.Writer) {
				for _, id := range done {
					fmt.Fprintf(w, "%s: %s\n", verb, id)
				}
				for _, id := range disabled {
					fmt.Fprintf(w, "disabled change capture %s (it ends its chain when it stops)\n", id)
				}
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
	return api.BackupScheduleID(s)
}

// drillSchedule is the drill schedule that goes with a cluster's backup
// schedule, or nil with --drill-every 0 or for EBS snapshots (no backups
// in a store to drill). It drills the newest backup of main and events,
// with jitter so that a fleet's drills do not all start at once.
func drillSchedule(cmd *cobra.Command, in api.ClusterBackupInput, volumes bool, every time.Duration) (*client.ScheduleOptions, error) {
	switch {
	case every < 0:
		return nil, badFlag("drill-every", every.String(), "give a positive interval, e.g. 24h, or 0 for no drills")
	case every == 0 || (volumes && !cmd.Flags().Changed("drill-every")):
		return nil, nil
	case volumes:
		return nil, badFlag("drill-every", every.String(), "EBS snapshots are not drilled: drop --drill-every with --volume-snapshots")
	}
	din := api.ClusterDrillInput{Cluster: in.Cluster, StateStore: in.StateStore,
		MainBackupStore: in.Main.BackupStore, EventsBackupStore: in.Events.BackupStore, Backup: "latest"}
	if err := din.Validate(); err != nil {
		return nil, err
	}
	id := api.DrillScheduleID(in.Cluster)
	return &client.ScheduleOptions{
		ID:      id,
		Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}, Jitter: min(every/10, time.Hour)},
		Action:  &client.ScheduleWorkflowAction{ID: id, Workflow: api.WorkflowClusterDrill, Args: []any{din}, TaskQueue: api.TaskQueue},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	}, nil
}
