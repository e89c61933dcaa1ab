package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/storeurl"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// disableWait bounds how long disable waits for the capture to write its
// chain's end: the capture stops within a segment interval, so a minute
// without it closing means the worker is down or stuck, which the operator
// should hear about rather than wait on. A variable for a test.
var disableWait = time.Minute

func (a *app) pitrCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pitr",
		Short: "Point-in-time restore: capture every change to an etcd cluster, see what can be restored",
		Long: `Point-in-time restore. 'kopsdr pitr enable' starts a ChangeCapture workflow (id
pitr/<cluster>/<etcd>) that takes a full backup and then records every change to the etcd cluster
into a change store, beside the backup store (<state store>/<cluster>/backups/kopsdr-changes/<etcd>
unless --change-store). 'kopsdr make-backup' and 'kopsdr restore etcd-manager --at/--revision'
then make a backup at any second or revision the changes reach.`,
	}
	cmd.AddCommand(a.pitrEnableCmd(), a.pitrDisableCmd(), a.pitrStatusCmd())
	return cmd
}

func (a *app) pitrEnableCmd() *cobra.Command {
	var (
		in               api.ChangeCaptureInput
		ef               etcdFlags
		sf               storeFlags
		window, interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "enable --cluster NAME --state-store URL [--etcd main|events] --endpoints URL[,URL] [--change-store URL] [--window 168h] [--interval 5s]",
		Short: "Start capturing every change to one etcd cluster (a full backup first, then a chain of changes)",
		Long: `Start capturing every change to one etcd cluster, as the workflow pitr/<cluster>/<etcd>: it
takes a full backup, then writes the changes after it to the change store every --interval (the
most a crash can lose), and keeps them for --window. It runs until 'kopsdr pitr disable'. When
etcd compacts past where capture must resume, or the cluster is replaced, it takes a new full
backup and starts a new chain; the revisions between are a gap that 'kopsdr pitr status' shows.

One capture per etcd cluster: enabling it again while it runs is refused (exit code 2).`,
		Example: `  kopsdr pitr enable --cluster test.my.clusters --state-store s3://my.clusters \
    --endpoints https://10.0.1.10:4001,https://10.0.2.10:4001,https://10.0.3.10:4001 \
    --cacert /etc/kopsdr/etcd-ca.crt --cert /etc/kopsdr/etcd-client.crt --key /etc/kopsdr/etcd-client.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Endpoints, in.CACert, in.Cert, in.Key = ef.endpoints, ef.cacert, ef.cert, ef.key
			in.BackupStore, in.StateStore = sf.backupStore, sf.stateStore
			if cmd.Flags().Changed("window") {
				in.Window = window.String()
			}
			if cmd.Flags().Changed("interval") {
				in.Interval = interval.String()
			}
			if err := checkCaptureInput(in, sf); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, running, err := startCapture(cmd.Context(), c, in)
			if err != nil {
				return err
			}
			if running {
				return captureRunning(in.Cluster, in.Etcd())
			}
			return a.captureStarted(cmd, in, run)
		},
	}
	bindCluster(cmd, &in.Cluster)
	cmd.Flags().StringVar(&in.EtcdCluster, "etcd", "main", "etcd cluster: main or events")
	cmd.Flags().StringVar(&in.ChangeStore, "change-store", "", "where the changes go (default: beside the backup store, <state store>/<cluster>/backups/kopsdr-changes/<etcd>)")
	cmd.Flags().DurationVar(&window, "window", api.DefaultChangeWindow, "keep changes this long: the oldest point that can be restored")
	cmd.Flags().DurationVar(&interval, "interval", api.DefaultSegmentInterval, "write pending changes this often, at most 60s: the most a crash of the worker can lose")
	cmd.Flags().StringVar(&in.SSEKMSKeyID, "sse-kms-key-id", "", "encrypt the uploaded objects with this KMS key (S3 SSE-KMS)")
	cmd.Flags().BoolVar(&in.RetentionDryRun, "retention-dry-run", false, "list what retention of the changes would delete, delete nothing")
	ef.bind(cmd)
	sf.bind(cmd)
	return cmd
}

// checkCaptureInput is everything enable checks before it dials: the
// contract's Validate, and that local stores can be written.
func checkCaptureInput(in api.ChangeCaptureInput, sf storeFlags) error {
	// Empty means "main" in the JSON input; typed on the command line it
	// is a mistake.
	if in.EtcdCluster == "" {
		return badFlag("etcd", "", "give main or events, or leave the flag out for main")
	}
	if err := in.Validate(); err != nil {
		return err
	}
	return checkPITRStores(sf, in.ChangeStore)
}

// checkPITRStores refuses local stores whose parent folder is missing:
// the backup store's and the change store's.
func checkPITRStores(sf storeFlags, changeStore string) error {
	if err := sf.checkLocal(); err != nil {
		return err
	}
	if changeStore != "" {
		return storeurl.CheckLocalParent("--change-store", changeStore)
	}
	return nil
}

// startCapture starts the capture of one etcd cluster under its one id.
// running says a capture already runs: Temporal refuses a second one,
// and the caller decides whether that is an error.
func startCapture(ctx context.Context, c client.Client, in api.ChangeCaptureInput) (run client.WorkflowRun, running bool, err error) {
	id := api.CaptureWorkflowID(in.Cluster, in.Etcd())
	run, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: api.TaskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, api.WorkflowChangeCapture, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("start change capture %s: %w", id, err)
	}
	return run, false, nil
}

// captureRunning is enabling a capture that runs: bad input (nothing was
// started), with where to look and how to stop it.
func captureRunning(cluster, etcd string) error {
	id := api.CaptureWorkflowID(cluster, etcd)
	return badFlag("cluster", cluster, fmt.Sprintf(
		"change capture of %s is already running as workflow %s: see it with 'kopsdr pitr status --cluster %s --etcd %s', or stop it with 'kopsdr pitr disable --cluster %s --etcd %s' before enabling it again",
		etcd, id, cluster, etcd, cluster, etcd))
}

func (a *app) captureStarted(cmd *cobra.Command, in api.ChangeCaptureInput, run client.WorkflowRun) error {
	stores, _ := in.Stores()
	args := fmt.Sprintf("--cluster %s --etcd %s%s", in.Cluster, in.Etcd(), connFlags(cmd))
	out := map[string]string{"workflowId": run.GetID(), "runId": run.GetRunID(), "changeStore": stores.Change}
	return a.print(out, func(w io.Writer) {
		fmt.Fprintf(w, "started change capture %s into %s (a full backup first, then every change)\n", run.GetID(), stores.Change)
		fmt.Fprintf(w, "  status:  kopsdr pitr status %s --state-store ...\n  disable: kopsdr pitr disable %s\n", args, args)
	})
}

func (a *app) pitrDisableCmd() *cobra.Command {
	var cluster, etcd string
	cmd := &cobra.Command{
		Use:   "disable --cluster NAME [--etcd main|events]",
		Short: "Stop capturing changes: cancel the capture, which ends its chain",
		Long: `Stop capturing changes to one etcd cluster: cancel the workflow pitr/<cluster>/<etcd> and wait
(at most ` + disableWait.String() + `) for it to write the end of its chain. The changes captured so far stay
restorable until the window passes; points after now are not. A later 'kopsdr pitr enable' takes a
full backup and starts a new chain: the time between is a gap in what can be restored.

Exit code 1 when no capture runs.`,
		Example: `  kopsdr pitr disable --cluster test.my.clusters --etcd main`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkClusterEtcd(cluster, etcd); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id := api.CaptureWorkflowID(cluster, etcd)
			st, err := cancelCapture(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			state, err := awaitClosed(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			return a.printDisabled(id, st.Chain, state)
		},
	}
	bindCluster(cmd, &cluster)
	cmd.Flags().StringVar(&etcd, "etcd", "main", "etcd cluster: main or events")
	return cmd
}

// checkClusterEtcd checks --cluster and --etcd of the commands that take
// no other input.
func checkClusterEtcd(cluster, etcd string) error {
	if err := api.CheckCluster(cluster); err != nil {
		return err
	}
	if etcd == "" {
		return badFlag("etcd", "", "give main or events, or leave the flag out for main")
	}
	return api.CheckEtcdCluster("etcdCluster", etcd)
}

// notCapturing: disable found no running capture.
type notCapturing struct {
	id, state string
}

func (e notCapturing) Error() string {
	return fmt.Sprintf("change capture %s is not running (%s): nothing to disable; 'kopsdr pitr status' shows what the change store holds", e.id, e.state)
}

// cancelCapture asks a running capture to stop. Its status, read first,
// names the chain that will end (empty when Temporal does not answer the
// query).
func cancelCapture(ctx context.Context, c client.Client, id string) (api.CaptureStatus, error) {
	var st api.CaptureStatus
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return st, notCapturing{id: id, state: "never enabled, or its history is gone"}
	case err != nil:
		return st, fmt.Errorf("describe %s: %s", id, rootCause(err))
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return st, notCapturing{id: id, state: "its last run " + stateName(s)}
	}
	if q, err := c.QueryWorkflow(ctx, id, "", api.QueryStatus); err == nil {
		_ = q.Get(&st)
	}
	if err := c.CancelWorkflow(ctx, id, ""); err != nil {
		return st, fmt.Errorf("cancel %s: %s", id, rootCause(err))
	}
	return st, nil
}

// awaitClosed waits, bounded, for a cancelled capture to close and says
// how it ended.
func awaitClosed(ctx context.Context, c client.Client, id string) (enumspb.WorkflowExecutionStatus, error) {
	wctx, cancel := context.WithTimeout(ctx, disableWait)
	defer cancel()
	err := c.GetWorkflow(wctx, id, "").Get(wctx, nil)
	switch {
	case ctx.Err() != nil:
		return 0, interrupted{id: id}
	case wctx.Err() != nil:
		return 0, fmt.Errorf("asked %s to stop, but it has not closed within %s (is a worker running?); it ends its chain once it stops: 'kopsdr status %s' shows when", id, disableWait, id)
	}
	desc, derr := c.DescribeWorkflowExecution(ctx, id, "")
	if derr != nil {
		return 0, lostTemporal{id: id, err: errors.Join(err, derr)}
	}
	return desc.GetWorkflowExecutionInfo().GetStatus(), nil
}

func (a *app) printDisabled(id, chain string, state enumspb.WorkflowExecutionStatus) error {
	if state != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		// Failed or terminated while stopping: the chain's end may not be written.
		return workflowEnded{id: id, status: state}
	}
	out := map[string]string{"workflowId": id, "state": stateName(state), "chain": chain}
	return a.print(out, func(w io.Writer) {
		ended := "its chain was ended (reason disabled)"
		if chain != "" {
			ended = "chain " + chain + " was ended (reason disabled)"
		}
		fmt.Fprintf(w, "disabled change capture %s: %s. Points up to now stay restorable until the window passes;\n", id, ended)
		fmt.Fprintln(w, "a later 'kopsdr pitr enable' starts a new chain after a full backup, and the time between is a gap.")
	})
}

func (a *app) pitrStatusCmd() *cobra.Command {
	var (
		in api.MakeBackupInput // the cluster, etcd cluster and stores: what status reads too
		sf storeFlags
	)
	cmd := &cobra.Command{
		Use:   "status --cluster NAME --state-store URL [--etcd main|events] [--change-store URL]",
		Short: "Show what can be restored to a point: chains, gaps, lag, size, and the capture's state",
		Long: `Show what point-in-time restore can reach for one etcd cluster, read from the change store
directly with this shell's credentials: per chain its start revision, last durable revision, the
capture's newest observation (head) and, for the chain being captured, its lag (now minus that
observation); the gaps between chains; the bytes stored and per day of capture; and the earliest
and newest restorable points. When Temporal answers, the capture workflow's step and last error
too; when it does not, the change store still answers.`,
		Example: `  kopsdr pitr status --cluster test.my.clusters --state-store s3://my.clusters
  kopsdr pitr status --cluster test.my.clusters --state-store s3://my.clusters --etcd events -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.BackupStore, in.StateStore = sf.backupStore, sf.stateStore
			if err := checkClusterEtcd(in.Cluster, in.EtcdCluster); err != nil {
				return err
			}
			stores, err := in.Stores()
			if err != nil {
				return err
			}
			if err := sf.checkLocal(); err != nil {
				return err
			}
			v, err := readChangeLog(cmd.Context(), in.Cluster, in.Etcd(), stores.Change, time.Now().UTC())
			if err != nil {
				return err
			}
			v.Temporal = a.captureNote(cmd.Context(), api.CaptureWorkflowID(in.Cluster, in.Etcd()))
			return a.print(v, v.text)
		},
	}
	bindCluster(cmd, &in.Cluster)
	cmd.Flags().StringVar(&in.EtcdCluster, "etcd", "main", "etcd cluster: main or events")
	cmd.Flags().StringVar(&in.ChangeStore, "change-store", "", "the change store (default: beside the backup store, <state store>/<cluster>/backups/kopsdr-changes/<etcd>)")
	sf.bind(cmd)
	return cmd
}

// captureNote is what Temporal says of the capture; Temporal being down
// is a note, not a failure: the change store is the record.
func (a *app) captureNote(ctx context.Context, id string) captureState {
	n := captureState{WorkflowID: id, Address: a.conn.Address}
	c, err := a.dial()
	if err != nil {
		var u unreachable
		if errors.As(err, &u) {
			err = u.err
		}
		n.Error = rootCause(err)
		return n
	}
	defer c.Close()
	n.Reachable = true
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		n.State = "not enabled"
		return n
	case err != nil:
		n.Error = rootCause(err)
		return n
	}
	n.State = stateName(desc.GetWorkflowExecutionInfo().GetStatus())
	var st api.CaptureStatus
	if q, err := c.QueryWorkflow(ctx, id, "", api.QueryStatus); err == nil && q.Get(&st) == nil {
		n.Status = &st
	}
	return n
}

// changeLogView is what pitr status prints: the change store's chains,
// the gaps between them, its size, and what can be restored.
type changeLogView struct {
	Cluster     string      `json:"cluster"`
	EtcdCluster string      `json:"etcdCluster"`
	ChangeStore string      `json:"changeStore"`
	At          time.Time   `json:"at"`
	Chains      []chainView `json:"chains"` // oldest first
	Gaps        []api.Gap   `json:"gaps"`   // the last one open (toRevision 0) when capture stopped
	Segments    int         `json:"segments"`
	Bytes       int64       `json:"bytes"`
	// CapturedSeconds is the time the stored segments span, gaps left out;
	// BytesPerDay is Bytes over it, once there is an hour of it.
	CapturedSeconds float64 `json:"capturedSeconds"`
	BytesPerDay     int64   `json:"bytesPerDay,omitempty"`
	// Earliest is the first change the log holds, Newest the last durable
	// revision with the newest time kopsdr observed it. A point between
	// also needs a full backup at or before it; make-backup says when
	// there is none.
	Earliest *changelog.Point `json:"earliest,omitempty"`
	Newest   *changelog.Point `json:"newest,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
	Temporal captureState     `json:"temporal"`
}

// chainView is one chain of the change log.
type chainView struct {
	ID            string    `json:"id"`
	StartRevision int64     `json:"startRevision"`
	BaseBackup    string    `json:"baseBackup,omitempty"`
	Started       time.Time `json:"started"`
	LastRevision  int64     `json:"lastDurableRevision"`
	// LastObserved is the newest time kopsdr saw the chain complete up to
	// LastRevision: the head while capture runs, else its last segment.
	LastObserved time.Time       `json:"lastObserved"`
	Head         *changelog.Head `json:"head,omitempty"`
	LagSeconds   *float64        `json:"lagSeconds,omitempty"` // the chain being captured only
	Segments     int             `json:"segments"`
	Bytes        int64           `json:"bytes"`
	Ended        *changelog.End  `json:"ended,omitempty"`
}

// captureState is what Temporal says of the capture workflow.
type captureState struct {
	WorkflowID string             `json:"workflowId"`
	Address    string             `json:"address"`
	Reachable  bool               `json:"reachable"`
	State      string             `json:"state,omitempty"` // running, cancelled, not enabled, ...
	Status     *api.CaptureStatus `json:"status,omitempty"`
	Error      string             `json:"error,omitempty"`
}

// minRateSpan is the capture time below which a daily rate is noise.
const minRateSpan = time.Hour

// readChangeLog lists the change store and describes it.
func readChangeLog(ctx context.Context, cluster, etcd, url string, now time.Time) (changeLogView, error) {
	store, err := backupstore.Open(ctx, url, backupstore.Options{})
	if err != nil {
		return changeLogView{}, err
	}
	chains, err := changelog.ListChains(ctx, store)
	if err != nil {
		return changeLogView{}, fmt.Errorf("list the change store %s: %w", url, err)
	}
	v := describeChangeLog(chains, now)
	v.Cluster, v.EtcdCluster, v.ChangeStore = cluster, etcd, url
	if v.Earliest != nil {
		// A listing names each segment's last observation only: the first
		// change's time is in the segment.
		if err := firstObserved(ctx, store, chains, v.Earliest); err != nil {
			v.Notes = append(v.Notes, "the time of the earliest change is unknown: "+rootCause(err))
		}
	}
	return v, nil
}

// describeChangeLog is the view of a listing, without reading a segment.
func describeChangeLog(chains []changelog.ChainState, now time.Time) changeLogView {
	v := changeLogView{At: now, Chains: []chainView{}, Gaps: []api.Gap{}}
	spans := map[string]changelog.Span{}
	for _, s := range changelog.Spans(chains) {
		spans[s.Chain] = s
	}
	// Time order, not revision order: a replaced cluster may number its
	// revisions anew.
	sorted := slices.Clone(chains)
	slices.SortStableFunc(sorted, func(x, y changelog.ChainState) int { return x.Started.Compare(y.Started) })
	var captured time.Duration
	for i, c := range sorted {
		cv, d := viewChain(c, spans[c.ID], now)
		v.Chains = append(v.Chains, cv)
		v.Segments += cv.Segments
		v.Bytes += cv.Bytes
		captured += d
		if c.End != nil || i < len(sorted)-1 {
			v.Gaps = append(v.Gaps, gapAfter(c, spans[c.ID], sorted[i+1:]))
		}
		if v.Earliest == nil && len(c.Segments) > 0 {
			v.Earliest = &changelog.Point{Chain: c.ID, Revision: c.Segments[0].First}
		}
		if s := spans[c.ID]; s.To.Revision >= c.StartRevision {
			v.Newest = &s.To
		}
	}
	v.CapturedSeconds = captured.Seconds()
	if captured >= minRateSpan {
		v.BytesPerDay = int64(float64(v.Bytes) / captured.Hours() * 24)
	}
	return v
}

// viewChain describes one chain, and how long its stored segments span.
func viewChain(c changelog.ChainState, s changelog.Span, now time.Time) (chainView, time.Duration) {
	cv := chainView{ID: c.ID, StartRevision: c.StartRevision, BaseBackup: c.BaseBackup, Started: c.Started,
		LastRevision: c.LastRevision, LastObserved: s.To.Observed, Head: c.Head, Segments: len(c.Segments), Ended: c.End}
	for _, seg := range c.Segments {
		cv.Bytes += seg.Bytes
	}
	if c.End == nil {
		lag := now.Sub(s.To.Observed).Seconds()
		cv.LagSeconds = &lag
	}
	// Retention may have removed the chain's first segments: its stored
	// changes then begin about where the first kept segment ends.
	from := c.Started
	if n := len(c.Segments); n > 0 && c.Segments[0].First > c.StartRevision {
		from = c.Segments[0].LastObserved
	}
	return cv, max(0, s.To.Observed.Sub(from))
}

// gapAfter is what no chain covers after c: up to the next chain, or,
// when c is the last and ended, from its end on (ToRev 0).
func gapAfter(c changelog.ChainState, s changelog.Span, later []changelog.ChainState) api.Gap {
	g := api.Gap{After: c.ID, Reason: "unknown: the chain has no end record", FromRev: s.To.Revision + 1, FromTime: s.To.Observed}
	if c.End != nil {
		g.Reason = c.End.Reason
		if c.End.Detail != "" {
			g.Reason += ": " + c.End.Detail
		}
	}
	if len(later) > 0 {
		next := later[0]
		g.ToRev, g.ToTime, g.NextChain = next.StartRevision-1, next.Started, next.ID
	}
	return g
}

// errFirstRead stops a segment read after its first change.
var errFirstRead = errors.New("first change read")

// firstObserved fills in when kopsdr observed p, the first change of a
// chain's first stored segment.
func firstObserved(ctx context.Context, store backupstore.Store, chains []changelog.ChainState, p *changelog.Point) error {
	for _, c := range chains {
		if c.ID != p.Chain || len(c.Segments) == 0 {
			continue
		}
		_, err := changelog.ReadSegment(ctx, store, c.Segments[0].Key, func(tx changelog.Txn) error {
			p.Revision, p.Observed = tx.Revision, tx.Observed
			return errFirstRead
		})
		if errors.Is(err, errFirstRead) {
			return nil
		}
		return err
	}
	return nil
}

func (v changeLogView) text(w io.Writer) {
	fmt.Fprintf(w, "change log of %s/%s in %s, at %s\n", v.Cluster, v.EtcdCluster, v.ChangeStore, v.At.Format(time.RFC3339))
	v.Temporal.text(w)
	switch {
	case len(v.Chains) == 0 && v.Temporal.State == "running":
		fmt.Fprintln(w, "no changes captured yet: the capture starts its first chain after a full backup")
		return
	case len(v.Chains) == 0:
		fmt.Fprintf(w, "no changes captured: enable capture with kopsdr pitr enable --cluster %s --etcd %s ...\n", v.Cluster, v.EtcdCluster)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHAIN\tSTART REV\tLAST DURABLE REV\tHEAD OBSERVED\tLAG\tSEGMENTS\tSIZE\tENDED")
	for _, c := range v.Chains {
		head, lag, ended := "-", "-", "-"
		if c.Head != nil {
			head = fmt.Sprintf("%d at %s", c.Head.Revision, c.Head.Observed.UTC().Format(time.RFC3339))
		}
		if c.LagSeconds != nil {
			lag = humanAge(*c.LagSeconds)
		}
		if c.Ended != nil {
			ended = c.Ended.Reason + " at " + c.Ended.At.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", c.ID, c.StartRevision, c.LastRevision, head, lag, c.Segments, size(c.Bytes), ended)
	}
	tw.Flush()
	for _, g := range v.Gaps {
		fmt.Fprintln(w, gapLine(g))
	}
	rate := "per day: unknown until an hour is captured"
	if v.BytesPerDay > 0 {
		rate = size(v.BytesPerDay) + " per day of capture"
	}
	fmt.Fprintf(w, "stored: %s in %d segments, %s\n", size(v.Bytes), v.Segments, rate)
	if v.Earliest != nil && v.Newest != nil {
		fmt.Fprintf(w, "restorable: from %s to %s (gaps excepted; a point also needs a full backup at or before it)\n", v.Earliest, v.Newest)
	} else {
		fmt.Fprintln(w, "restorable: nothing yet (no change captured)")
	}
	for _, n := range v.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

func gapLine(g api.Gap) string {
	from := g.FromTime.UTC().Format(time.RFC3339)
	if g.NextChain == "" {
		return fmt.Sprintf("not captured since %s (revision %d on) after chain %s: %s", from, g.FromRev, g.After, g.Reason)
	}
	return fmt.Sprintf("gap: revisions %d to %d, %s to %s, between chains %s and %s: %s",
		g.FromRev, g.ToRev, from, g.ToTime.UTC().Format(time.RFC3339), g.After, g.NextChain, g.Reason)
}

func (n captureState) text(w io.Writer) {
	switch {
	case !n.Reachable:
		fmt.Fprintf(w, "capture %s: unknown, Temporal at %s did not answer (%s); the change log below is read from the store\n", n.WorkflowID, n.Address, n.Error)
	case n.Error != "":
		fmt.Fprintf(w, "capture %s: unknown (%s)\n", n.WorkflowID, n.Error)
	case n.Status == nil:
		fmt.Fprintf(w, "capture %s: %s\n", n.WorkflowID, n.State)
	default:
		fmt.Fprintf(w, "capture %s: %s, step %s", n.WorkflowID, n.State, n.Status.Step)
		if n.Status.Revision > 0 {
			fmt.Fprintf(w, ", revision %d durable (observed %s)", n.Status.Revision, n.Status.Observed.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		if n.Status.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", n.Status.LastError)
		}
	}
}

// pitrScheduleFlags are the flags schedule create adds to start change
// capture with the schedule's endpoints and stores.
type pitrScheduleFlags struct {
	main, events                       bool
	mainChangeStore, eventsChangeStore string
}

func (f *pitrScheduleFlags) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.main, "pitr", false, "also start change capture of main (kopsdr pitr enable) for point-in-time restore")
	cmd.Flags().BoolVar(&f.events, "pitr-events", false, "with --pitr: capture the changes of events too")
	cmd.Flags().StringVar(&f.mainChangeStore, "main-change-store", "", "with --pitr: main's change store (default: beside its backup store)")
	cmd.Flags().StringVar(&f.eventsChangeStore, "events-change-store", "", "with --pitr-events: events' change store (default: beside its backup store)")
}

// inputs are the captures to start, checked; none without --pitr.
func (f *pitrScheduleFlags) inputs(cmd *cobra.Command, in api.ClusterBackupInput, volumes bool) ([]api.ChangeCaptureInput, error) {
	switch {
	case f.main && volumes:
		return nil, badFlag("pitr", "true", "change capture works with etcd-manager backups, not EBS snapshots: drop --pitr with --volume-snapshots")
	case f.events && !f.main:
		return nil, badFlag("pitr-events", "true", "captures events in addition to main: give --pitr too")
	case f.mainChangeStore != "" && !f.main:
		return nil, badFlag("main-change-store", f.mainChangeStore, "goes with --pitr")
	case f.eventsChangeStore != "" && !f.events:
		return nil, badFlag("events-change-store", f.eventsChangeStore, "goes with --pitr-events")
	case !f.main:
		return nil, nil
	}
	stores := map[string]string{"main": f.mainChangeStore, "events": f.eventsChangeStore}
	ecs := []string{"main"}
	if f.events {
		ecs = append(ecs, "events")
	}
	var out []api.ChangeCaptureInput
	for _, ec := range ecs {
		ci := captureOf(in, ec, stores[ec])
		if err := ci.Validate(); err != nil {
			return nil, asScheduleField(err, ec)
		}
		if ci.ChangeStore != "" {
			if err := storeurl.CheckLocalParent("--"+ec+"-change-store", ci.ChangeStore); err != nil {
				return nil, err
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// captureOf is the capture of one etcd cluster of a scheduled backup.
func captureOf(in api.ClusterBackupInput, ec, changeStore string) api.ChangeCaptureInput {
	b := in.ForEtcd(ec)
	return api.ChangeCaptureInput{
		Cluster: in.Cluster, EtcdCluster: ec, StateStore: b.StateStore, BackupStore: b.BackupStore, ChangeStore: changeStore,
		Endpoints: b.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key, SSEKMSKeyID: in.SSEKMSKeyID,
	}
}

// asScheduleField names a capture's field as schedule create spells it
// (changeStore of main is --main-change-store).
func asScheduleField(err error, ec string) error {
	if ie, ok := inputerr.As(err); ok {
		switch ie.Field {
		case "changeStore", "endpoints", "backupStore":
			ie.Field = ec + "." + ie.Field
		}
	}
	return err
}

// startCaptures starts each capture; one already running is left alone.
// When one cannot be started, those this call started are cancelled again
// and returned as started, for the caller to report.
func startCaptures(ctx context.Context, c client.Client, ins []api.ChangeCaptureInput) (started, running []string, err error) {
	started, running = []string{}, []string{}
	for _, in := range ins {
		id := api.CaptureWorkflowID(in.Cluster, in.Etcd())
		_, already, err := startCapture(ctx, c, in)
		if err != nil {
			for _, s := range started {
				_ = c.CancelWorkflow(context.WithoutCancel(ctx), s, "")
			}
			return started, running, err
		}
		if already {
			running = append(running, id)
		} else {
			started = append(started, id)
		}
	}
	return started, running, nil
}

// removeSchedules deletes what schedule create created, and names it.
func removeSchedules(ctx context.Context, sc client.ScheduleClient, id string, drills *client.ScheduleOptions) []string {
	ctx = context.WithoutCancel(ctx)
	ids := []string{id}
	if drills != nil {
		ids = append(ids, drills.ID)
	}
	var removed []string
	for _, sid := range ids {
		if sc.GetHandle(ctx, sid).Delete(ctx) == nil {
			removed = append(removed, "schedule "+sid)
		}
	}
	return removed
}

// disableCaptures cancels a cluster's running captures without waiting:
// each ends its chain when it stops.
func disableCaptures(ctx context.Context, c client.Client, cluster string) ([]string, error) {
	disabled := []string{}
	for _, ec := range api.EtcdClusters {
		id := api.CaptureWorkflowID(cluster, ec)
		_, err := cancelCapture(ctx, c, id)
		var nc notCapturing
		switch {
		case errors.As(err, &nc):
			continue
		case err != nil:
			return disabled, err
		}
		disabled = append(disabled, id)
	}
	return disabled, nil
}
