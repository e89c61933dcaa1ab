package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/searchattr"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// defaultMaxAge is twice the hourly schedule the README suggests, the same
// threshold as the Prometheus alert on backup age: one missed run does not
// page, two do. etcd-manager's own backups (every 15 minutes) keep a
// cluster well within it even without kopsdr.
const defaultMaxAge = 2 * time.Hour

// reportWorkers bounds how many clusters are looked at at once.
const reportWorkers = 8

func (a *app) reportCmd() *cobra.Command {
	var (
		stateStore string
		clusters   []string
		maxAge     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "report [--state-store URL] [--cluster NAME]... [--max-age 2h]",
		Short: "Report each cluster's newest backup (RPO), last drill and measured RTO, schedules and last failed run",
		Long: `Report, per cluster and etcd cluster (main, events): the newest backup and its age (the RPO
right now), who took it, the last restore drill (kopsdr-drill.json among the newest backups) with
its result and measured RTO; and per cluster the backup and drill schedules (paused? next run?)
and the last failed run.

The clusters are those in --state-store (kops layout <store>/<cluster>/backups/etcd/<etcd>/), or,
without a store, those with a backup schedule (backup/<cluster>), whose input names their stores.
Stores are read directly with this shell's credentials. Schedules and runs come from Temporal;
when it does not answer, the report still shows what the store says.

An etcd cluster is stale when its newest good backup (listed, and not failed by its drill) is
older than --max-age, or there is none, or its store cannot be read: then kopsdr exits 7, so cron
or CI can page on it.`,
		Example: `  kopsdr report --state-store s3://my.clusters
  kopsdr report --state-store s3://my.clusters --cluster prod.my.clusters --max-age 1h -o json
  kopsdr report   # the clusters of kopsdr's backup schedules`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxAge <= 0 {
				return badFlag("max-age", maxAge.String(), `give a positive duration, e.g. "2h" (twice the backup interval)`)
			}
			for _, c := range clusters {
				if err := api.CheckCluster(c); err != nil {
					return err
				}
			}
			if stateStore != "" {
				if _, err := backupstore.ParseURL(stateStore); err != nil {
					return badFlag("state-store", stateStore, "give the kops state store, e.g. s3://my.clusters or file:///path")
				}
			}
			r := reporter{stateStore: stateStore, only: clusters, maxAge: maxAge, now: time.Now().UTC(),
				namespace: a.conn.Namespace, address: a.conn.Address}
			if c, err := a.dial(); err == nil {
				defer c.Close()
				r.temporal = c
			} else if stateStore == "" {
				// Not wrapped: the error line keeps the hint about --state-store.
				return fmt.Errorf("without --state-store the clusters come from their backup schedules, and %v", err)
			} else {
				var u unreachable
				if errors.As(err, &u) {
					err = u.err
				}
				r.temporalErr = rootCause(err)
			}
			rep, err := r.run(cmd.Context())
			if err != nil {
				return err
			}
			if len(rep.Clusters) == 0 {
				// An empty report would pass a cron check that points at the wrong store.
				if stateStore != "" {
					return fmt.Errorf("no kops clusters in state store %s (no <cluster>/config, no <cluster>/backups/etcd/): check --state-store", stateStore)
				}
				return errors.New("no backup schedules (backup/<cluster>) to report on: give --state-store, or create one with kopsdr schedule create")
			}
			if err := a.print(rep, rep.text); err != nil {
				return err
			}
			if len(rep.Stale) > 0 {
				return staleBackups{items: rep.Stale, maxAge: maxAge}
			}
			return nil
		},
	}
	bindStateStore(cmd, &stateStore, "kops state store whose clusters to report (default: the clusters of the backup schedules)")
	cmd.Flags().StringSliceVar(&clusters, "cluster", nil, "report only these clusters (repeat or comma separate; alias --name)")
	cmd.Flags().DurationVar(&maxAge, "max-age", defaultMaxAge, "exit 7 when a newest good backup is older than this, or missing")
	return cmd
}

// staleBackups: the report found etcd clusters without a recent good
// backup. The report itself says which; this is the exit code and a line.
type staleBackups struct {
	items  []string
	maxAge time.Duration
}

func (e staleBackups) Error() string {
	clusters := "etcd clusters have"
	if len(e.items) == 1 {
		clusters = "etcd cluster has"
	}
	return fmt.Sprintf("%d %s no good backup younger than %s: %s", len(e.items), clusters, shortDuration(e.maxAge), strings.Join(e.items, "; "))
}

// fleetReport is what report prints.
type fleetReport struct {
	At         time.Time       `json:"at"`
	MaxAge     string          `json:"maxAge"`
	StateStore string          `json:"stateStore,omitempty"`
	Temporal   temporalNote    `json:"temporal"`
	Clusters   []clusterReport `json:"clusters"`
	Stale      []string        `json:"stale"` // "<cluster>/<etcd>: why", one per stale etcd cluster
}

// temporalNote says whether schedules and runs could be looked up.
type temporalNote struct {
	Address   string `json:"address"`
	Namespace string `json:"namespace"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// RunsError: why last failed runs are not shown (the search attributes
	// are not registered, typically).
	RunsError string `json:"runsError,omitempty"`
}

type clusterReport struct {
	Cluster        string         `json:"cluster"`
	Etcd           []etcdReport   `json:"etcd"`
	BackupSchedule *scheduleState `json:"backupSchedule,omitempty"` // nil when Temporal did not answer
	DrillSchedule  *scheduleState `json:"drillSchedule,omitempty"`
	LastFailedRun  *runRow        `json:"lastFailedRun,omitempty"`
	RunsError      string         `json:"runsError,omitempty"`
}

type scheduleState struct {
	ID      string     `json:"scheduleId"`
	Exists  bool       `json:"exists"`
	Paused  bool       `json:"paused,omitempty"`
	Note    string     `json:"note,omitempty"`
	NextRun *time.Time `json:"nextRun,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// reporter holds one report's settings; run does the work.
type reporter struct {
	stateStore  string
	only        []string
	maxAge      time.Duration
	now         time.Time
	temporal    client.Client // nil when Temporal did not answer
	temporalErr string
	namespace   string
	address     string
}

func (r reporter) run(ctx context.Context) (fleetReport, error) {
	rep := fleetReport{At: r.now, MaxAge: shortDuration(r.maxAge), StateStore: r.stateStore, Stale: []string{},
		Temporal: temporalNote{Address: r.address, Namespace: r.namespace, Reachable: r.temporal != nil, Error: r.temporalErr}}
	sources, err := r.sources(ctx)
	if err != nil {
		return rep, err
	}
	runs := r.temporal != nil
	if runs {
		missing, err := searchattr.Missing(ctx, r.temporal, r.namespace)
		switch {
		case err != nil:
			rep.Temporal.RunsError = rootCause(err)
		case len(missing) > 0:
			rep.Temporal.RunsError = (&searchattr.NotRegisteredError{Namespace: r.namespace, Missing: missing}).Error()
		}
		runs = rep.Temporal.RunsError == ""
	}
	rep.Clusters = make([]clusterReport, len(sources))
	var wg sync.WaitGroup
	sem := make(chan struct{}, reportWorkers)
	for i, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rep.Clusters[i] = r.cluster(ctx, src, runs)
		}()
	}
	wg.Wait()
	for _, c := range rep.Clusters {
		for _, e := range c.Etcd {
			if e.Stale {
				rep.Stale = append(rep.Stale, fmt.Sprintf("%s/%s: %s", c.Cluster, e.EtcdCluster, e.Reason))
			}
		}
	}
	return rep, ctx.Err()
}

// cluster fills one cluster's report: its stores, then what Temporal knows.
func (r reporter) cluster(ctx context.Context, src clusterSource, runs bool) clusterReport {
	cr := clusterReport{Cluster: src.cluster}
	for _, es := range src.etcd {
		cr.Etcd = append(cr.Etcd, evaluate(ctx, es, r.now, r.maxAge))
	}
	if r.temporal == nil {
		return cr
	}
	cr.BackupSchedule = describeSchedule(ctx, r.temporal, api.BackupScheduleID(src.cluster))
	cr.DrillSchedule = describeSchedule(ctx, r.temporal, api.DrillScheduleID(src.cluster))
	if runs {
		rows, err := listRuns(ctx, r.temporal, r.namespace, searchattr.Filter{Cluster: src.cluster, Failed: true}, 1)
		switch {
		case err != nil:
			cr.RunsError = rootCause(err)
		case len(rows) > 0:
			cr.LastFailedRun = &rows[0]
		}
	}
	return cr
}

// describeSchedule says whether a schedule exists, is paused, and when it
// runs next.
func describeSchedule(ctx context.Context, c client.Client, id string) *scheduleState {
	st := &scheduleState{ID: id}
	d, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return st
	case err != nil:
		st.Error = rootCause(err)
		return st
	}
	st.Exists, st.Paused, st.Note = true, d.Schedule.State.Paused, d.Schedule.State.Note
	if len(d.Info.NextActionTimes) > 0 && !st.Paused {
		t := d.Info.NextActionTimes[0].UTC()
		st.NextRun = &t
	}
	return st
}

func (rep fleetReport) text(w io.Writer) {
	fmt.Fprintf(w, "kopsdr report at %s, max age %s", rep.At.Format(time.RFC3339), rep.MaxAge)
	if rep.StateStore != "" {
		fmt.Fprintf(w, ", state store %s", rep.StateStore)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tETCD\tNEWEST BACKUP\tAGE\tBY\tLAST DRILL\tRTO\tSTATE")
	for _, c := range rep.Clusters {
		for _, e := range c.Etcd {
			newest, age, by := "-", "-", "-"
			if e.Newest != nil {
				newest, age, by = e.Newest.Name, humanAge(e.Newest.AgeSeconds), e.Newest.TakenBy
			}
			drill, rto := "never", "-"
			if e.Newest == nil {
				drill = "-"
			}
			if d := e.LastDrill; d != nil {
				drill = d.summary(rep.At)
				if d.RTOSeconds > 0 {
					rto = fmt.Sprintf("%.1fs", d.RTOSeconds)
				}
			}
			state := "ok"
			if g := e.NewestGood; g != nil && g.Name != e.Newest.Name {
				state = "ok: newest good backup is " + humanAge(g.AgeSeconds) + " old"
			}
			if e.Stale {
				state = "STALE: " + e.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Cluster, e.EtcdCluster, newest, age, by, drill, rto, state)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	if !rep.Temporal.Reachable {
		fmt.Fprintf(w, "Temporal at %s did not answer (%s): schedules and runs are not shown; the backups above are read from the stores\n",
			rep.Temporal.Address, rep.Temporal.Error)
		return
	}
	if rep.Temporal.RunsError != "" {
		fmt.Fprintf(w, "last failed runs are not shown: %s\n", rep.Temporal.RunsError)
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tBACKUP SCHEDULE\tDRILL SCHEDULE\tLAST FAILED RUN")
	for _, c := range rep.Clusters {
		failed := "none"
		switch {
		case c.RunsError != "":
			failed = "unknown: " + c.RunsError
		case rep.Temporal.RunsError != "":
			failed = "unknown"
		case c.LastFailedRun != nil:
			f := c.LastFailedRun
			failed = fmt.Sprintf("%s %s (%s)", f.Start.Format(time.RFC3339), f.WorkflowID, f.Type)
			if msg := f.failure(); msg != "" {
				failed += ": " + msg
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Cluster, c.BackupSchedule.summary(), c.DrillSchedule.summary(), failed)
	}
	tw.Flush()
}

func (s *scheduleState) summary() string {
	switch {
	case s == nil:
		return "-"
	case s.Error != "":
		return "unknown: " + s.Error
	case !s.Exists:
		return "none"
	case s.Paused:
		if s.Note != "" {
			return "paused (" + s.Note + ")"
		}
		return "paused"
	case s.NextRun != nil:
		return "active, next " + s.NextRun.Format(time.RFC3339)
	}
	return "active"
}

// humanAge is an age in its largest two units: 45s, 12m, 5h03m, 3d04h.
func humanAge(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// shortDuration is d as a flag would give it: 2h, 30m, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sortedClusters is names sorted and without repeats.
func sortedClusters(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// clusterSource is where one cluster's backups are.
type clusterSource struct {
	cluster string
	etcd    []*etcdSource
}

// etcdSource is one etcd cluster's backup store. In a state store the
// backups of every cluster are listed at once and each source gets its
// slice; a schedule's store is opened and listed on first use.
type etcdSource struct {
	name   string                   // main or events
	url    string                   // the backup store
	store  backupstore.Store        // nil until opened
	prefix string                   // of the backup store's keys in store
	objs   []backupstore.ObjectInfo // keys relative to the backup store
	listed bool
	err    error // the store could not be found, opened or listed
}

func (es *etcdSource) load(ctx context.Context) error {
	if es.err != nil || es.listed {
		return es.err
	}
	if es.store == nil {
		if es.store, es.err = backupstore.Open(ctx, es.url, backupstore.Options{}); es.err != nil {
			return es.err
		}
	}
	objs, err := es.store.List(ctx, es.prefix)
	if err != nil {
		es.err = err
		return err
	}
	es.objs, es.listed = under(objs, es.prefix), true
	return nil
}

// under is objs whose keys start with prefix, with the prefix cut off.
func under(objs []backupstore.ObjectInfo, prefix string) []backupstore.ObjectInfo {
	var out []backupstore.ObjectInfo
	for _, o := range objs {
		if rel, ok := strings.CutPrefix(o.Key, prefix); ok {
			o.Key = rel
			out = append(out, o)
		}
	}
	return out
}

func (r reporter) sources(ctx context.Context) ([]clusterSource, error) {
	if r.stateStore != "" {
		return r.fromStateStore(ctx)
	}
	return r.fromSchedules(ctx)
}

// fromStateStore lists the state store once: the clusters are its top
// folders that hold a kops cluster (a config object) or backups.
func (r reporter) fromStateStore(ctx context.Context) ([]clusterSource, error) {
	store, err := backupstore.Open(ctx, r.stateStore, backupstore.Options{})
	if err != nil {
		return nil, err
	}
	objs, err := store.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list the state store: %w", err)
	}
	names := r.only
	if len(names) == 0 {
		names = clustersIn(objs)
	}
	var out []clusterSource
	for _, name := range sortedClusters(names) {
		src := clusterSource{cluster: name}
		for _, ec := range api.EtcdClusters {
			url, err := api.BackupStoreFor(r.stateStore, "", name, ec, "backupStore")
			prefix := name + "/backups/etcd/" + ec + "/"
			src.etcd = append(src.etcd, &etcdSource{name: ec, url: url, store: store, prefix: prefix,
				objs: under(objs, prefix), listed: true, err: err})
		}
		out = append(out, src)
	}
	return out, nil
}

// clustersIn finds the clusters of a state store's listing.
func clustersIn(objs []backupstore.ObjectInfo) []string {
	var names []string
	for _, o := range objs {
		name, rest, ok := strings.Cut(o.Key, "/")
		if ok && (rest == "config" || strings.HasPrefix(rest, "backups/etcd/")) && api.CheckCluster(name) == nil {
			names = append(names, name)
		}
	}
	return sortedClusters(names)
}

// maxSchedules bounds how many backup schedules a report describes.
const maxSchedules = 500

// fromSchedules finds the clusters, and their stores, in kopsdr's backup
// schedules (or in the named clusters' schedules).
func (r reporter) fromSchedules(ctx context.Context) ([]clusterSource, error) {
	sc := r.temporal.ScheduleClient()
	names := r.only
	if len(names) == 0 {
		it, err := sc.List(ctx, client.ScheduleListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		for it.HasNext() && len(names) < maxSchedules {
			e, err := it.Next()
			if err != nil {
				return nil, fmt.Errorf("list schedules: %w", err)
			}
			if name, ok := strings.CutPrefix(e.ID, api.BackupScheduleID("")); ok {
				names = append(names, name)
			}
		}
	}
	var out []clusterSource
	for _, name := range sortedClusters(names) {
		src := clusterSource{cluster: name}
		in, err := scheduledInput(ctx, sc, name)
		for _, ec := range api.EtcdClusters {
			es := &etcdSource{name: ec, err: err}
			if err == nil {
				es.url, es.err = in.ForEtcd(ec).Store()
			}
			src.etcd = append(src.etcd, es)
		}
		out = append(out, src)
	}
	return out, nil
}

// scheduledInput is the ClusterBackupInput a cluster's backup schedule
// starts with: it names the stores.
func scheduledInput(ctx context.Context, sc client.ScheduleClient, cluster string) (api.ClusterBackupInput, error) {
	var in api.ClusterBackupInput
	id := api.BackupScheduleID(cluster)
	d, err := sc.GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return in, fmt.Errorf("no backup schedule %s: give --state-store to read the cluster's store", id)
		}
		return in, fmt.Errorf("schedule %s: %s", id, rootCause(err))
	}
	act, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != api.WorkflowClusterBackup {
		return in, fmt.Errorf("schedule %s does not start %s: give --state-store", id, api.WorkflowClusterBackup)
	}
	target := scheduleTarget(act)
	b, _ := json.Marshal(target)
	if err := json.Unmarshal(b, &in); err != nil || in.Cluster == "" {
		return in, fmt.Errorf("schedule %s: its input is not a %s input: give --state-store", id, api.WorkflowClusterBackup)
	}
	return in, nil
}

// etcdReport is one etcd cluster's line of the report.
type etcdReport struct {
	EtcdCluster string     `json:"etcdCluster"`
	Store       string     `json:"store"`
	Backups     int        `json:"backups"`
	Newest      *backupRef `json:"newest,omitempty"`
	NewestGood  *backupRef `json:"newestGood,omitempty"` // newest not failed by its drill
	LastDrill   *drillRef  `json:"lastDrill,omitempty"`  // of the newest drilled backup
	DrillError  string     `json:"drillError,omitempty"` // a drill result that could not be read
	Stale       bool       `json:"stale"`
	Reason      string     `json:"reason,omitempty"` // why it is stale
}

type backupRef struct {
	Name       string    `json:"name"`
	At         time.Time `json:"at"`
	AgeSeconds float64   `json:"ageSeconds"` // the RPO right now, for the newest
	TakenBy    string    `json:"takenBy"`    // kopsdr (it wrote kopsdr.json) or etcd-manager
}

type drillRef struct {
	Backup     string    `json:"backup"`
	At         time.Time `json:"at"`
	Passed     bool      `json:"passed"`
	Reason     string    `json:"reason,omitempty"`     // the first failed check
	RTOSeconds float64   `json:"rtoSeconds,omitempty"` // measured: download, restore and start
}

// maxDrillReads bounds the drill results read per etcd cluster, newest
// first: the walk stops at the first backup not failed by its drill once
// the last drill is known, so it only reaches this bound when that many
// newest drilled backups failed.
const maxDrillReads = 10

// backupEntry is one listed backup.
type backupEntry struct {
	name     string
	at       time.Time // from its name
	drilled  bool      // it has a kopsdr-drill.json
	byKopsdr bool      // it has kopsdr.json
}

// backupsIn finds the backups in a backup store's listing as
// etcdmanager.ListBackups does (folders holding a _etcd_backup.meta,
// sorted, so the last is the newest), keeping those named by their time,
// and notes which were drilled or taken by kopsdr.
func backupsIn(objs []backupstore.ObjectInfo) []backupEntry {
	listed, drilled, byKopsdr := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, o := range objs {
		parts := strings.Split(o.Key, "/")
		if len(parts) < 2 {
			continue
		}
		folder := parts[len(parts)-2]
		switch parts[len(parts)-1] {
		case etcdmanager.MetaFile:
			listed[folder] = true
		case drill.ResultFile:
			drilled[folder] = true
		case etcdmanager.KopsdrFile:
			byKopsdr[folder] = true
		}
	}
	var out []backupEntry
	for name := range listed {
		if at, _, ok := etcdmanager.ParseBackupName(name); ok {
			out = append(out, backupEntry{name: name, at: at, drilled: drilled[name], byKopsdr: byKopsdr[name]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// evaluate reads one etcd cluster's store: its newest backup, the newest
// one its drill did not fail, the last drill, and whether it is stale.
func evaluate(ctx context.Context, es *etcdSource, now time.Time, maxAge time.Duration) etcdReport {
	er := etcdReport{EtcdCluster: es.name, Store: es.url}
	if err := es.load(ctx); err != nil {
		er.Stale, er.Reason = true, "store unreadable: "+rootCause(err)
		return er
	}
	backups := backupsIn(es.objs)
	er.Backups = len(backups)
	if len(backups) == 0 {
		er.Stale, er.Reason = true, "no backup"
		return er
	}
	ref := func(b backupEntry) *backupRef {
		by := "etcd-manager"
		if b.byKopsdr {
			by = "kopsdr"
		}
		return &backupRef{Name: b.name, At: b.at, AgeSeconds: now.Sub(b.at).Seconds(), TakenBy: by}
	}
	er.Newest = ref(backups[len(backups)-1])
	reads, drillKnown := 0, false
	for i := len(backups) - 1; i >= 0 && (er.NewestGood == nil || !drillKnown); i-- {
		b := backups[i]
		failed := false
		if b.drilled {
			if reads == maxDrillReads {
				break
			}
			reads++
			res, ok, err := drill.ReadResult(ctx, es.store, es.prefix+b.name)
			switch {
			case err != nil:
				if er.DrillError == "" {
					er.DrillError = rootCause(err)
				}
			case ok && !drillKnown:
				er.LastDrill = &drillRef{Backup: b.name, At: res.At, Passed: res.Passed, RTOSeconds: res.Timings.RTOSeconds}
				if len(res.Failures) > 0 {
					er.LastDrill.Reason = res.Failures[0].Check + ": " + res.Failures[0].Reason
				}
				failed = !res.Passed
			case ok:
				failed = !res.Passed
			}
			drillKnown = true
		}
		if !failed && er.NewestGood == nil {
			er.NewestGood = ref(b)
		}
	}
	good := er.NewestGood
	switch {
	case good == nil:
		er.Stale, er.Reason = true, fmt.Sprintf("no good backup: the drills of the newest %d drilled backups failed", reads)
	case now.Sub(good.At) <= maxAge:
	case good.Name == er.Newest.Name:
		er.Stale, er.Reason = true, fmt.Sprintf("newest backup is %s old (max %s)", humanAge(good.AgeSeconds), shortDuration(maxAge))
	default:
		er.Stale, er.Reason = true, fmt.Sprintf("newest good backup %s is %s old (max %s); newer ones failed their drill",
			good.Name, humanAge(good.AgeSeconds), shortDuration(maxAge))
	}
	return er
}

// summary is the drill in a few words: passed 3m ago, FAILED 1h05m ago: why.
func (d *drillRef) summary(now time.Time) string {
	ago := humanAge(now.Sub(d.At).Seconds()) + " ago"
	if d.Passed {
		return "passed " + ago
	}
	s := "FAILED " + ago
	if d.Reason != "" {
		s += ": " + truncate(d.Reason, 60)
	}
	return s
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
