package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// EtcdManagerRestore runs the runbook's etcd-manager restore: pre-flight
// (changes nothing), plan, approval, safety backup, restore commands,
// etcd-manager restarts on every master, wait for the restored cluster,
// master-lease clean-up. Each step is an idempotent activity, so a retry or
// a restarted worker never repeats what was done.
func EtcdManagerRestore(ctx workflow.Context, in EtcdManagerRestoreInput) (*EtcdManagerRestoreResult, error) {
	r := &restoreRun{in: in, status: &RestoreStatus{Step: "validate", Masters: map[string]string{}}}
	r.res = &EtcdManagerRestoreResult{DryRun: in.DryRun}
	if err := workflow.SetQueryHandler(ctx, api.QueryStatus, func() (RestoreStatus, error) { return *r.status, nil }); err != nil {
		return nil, err
	}
	gate, err := newApprovalGate(ctx, in.DryRun, func() string { return r.status.Step }, func(d *api.Decision, deadline time.Time) {
		r.status.Approval, r.res.Approval, r.status.ApprovalDeadline = d, d, deadline
	})
	if err != nil {
		return nil, err
	}
	r.gate = gate
	res, err := r.run(ctx)
	if err != nil {
		err = r.withPendingCommands(ctx, err)
		r.status.LastError, r.status.Step = err.Error(), "failed: "+r.status.Step
		return nil, err
	}
	return res, nil
}

// withPendingCommands adds to the error of a restore that failed after it
// queued its restore commands which commands are still queued, and how to
// withdraw them: the next etcd-manager start or leader change would perform
// them. The error keeps its type. Histories from before this replay
// without the look (GetVersion).
func (r *restoreRun) withPendingCommands(ctx workflow.Context, err error) error {
	if len(r.res.Commands) == 0 ||
		workflow.GetVersion(ctx, "pending-commands-on-failure", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return err
	}
	in := activities.PendingCommandsInput{Cluster: r.in.Cluster, StateStore: r.in.StateStore}
	for _, ec := range r.ecs {
		in.Stores = append(in.Stores, activities.PendingCommandStore{EtcdCluster: ec, Store: r.stores[ec], Override: r.in.Target(ec).BackupStore != ""})
	}
	// Disconnected: a cancelled restore must still say what it left queued.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var a *activities.Restore
	var pc activities.PendingCommandsResult
	if e := workflow.ExecuteActivity(dctx, a.PendingCommands, in).Get(dctx, &pc); e != nil || pc.Message == "" {
		return err
	}
	msg, typ := err.Error(), api.ErrTypeRestoreFailed
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		msg, typ = appErr.Message(), appErr.Type()
	}
	return temporal.NewNonRetryableApplicationError(msg+"\n"+pc.Message, typ, nil)
}

type restoreRun struct {
	in     EtcdManagerRestoreInput
	status *RestoreStatus
	res    *EtcdManagerRestoreResult
	gate   *approvalGate
	// resolved input
	ecs          []string // the etcd clusters restored
	stores       map[string]string
	etcd         map[string]etcdconn.Config
	targets      []restart.Target
	targetIPs    []string // per target, "" when unknown: maps an etcd endpoint to its master
	live         []string
	approvalWait time.Duration
	restoreWait  time.Duration
	// A restore to a point: how each etcd cluster's backup will be made
	// (points), or the backup chosen instead for one without captured
	// changes (selectors).
	points    map[string]*api.PointPlan
	selectors map[string]string
}

func (r *restoreRun) run(ctx workflow.Context) (*EtcdManagerRestoreResult, error) {
	if err := r.resolve(ctx); err != nil {
		return nil, invalidInput(err)
	}
	sa := newSearchAttrs(ctx)
	sa.set(ctx, r.in.Cluster, onlyOne(r.ecs), "")
	var a *activities.Restore
	actx := workflow.WithActivityOptions(ctx, restoreActivityOptions(10*time.Minute, 5))

	// Masters from EC2 when asked.
	if r.in.Discover != nil {
		done := r.step(ctx, "discover masters")
		var found []activities.DiscoveredMaster
		if err := workflow.ExecuteActivity(actx, a.DiscoverMasters, discoverInput(r.in)).Get(ctx, &found); err != nil {
			return nil, err
		}
		for _, m := range found {
			r.targets = append(r.targets, m.Target)
			r.targetIPs = append(r.targetIPs, m.IP)
			if len(r.in.LiveMasterIPs) == 0 {
				r.live = append(r.live, m.IP)
			}
		}
		done()
	}
	for _, t := range r.targets {
		r.status.Masters[t.Name()] = "found"
	}

	// 1. Pre-flight: changes nothing. A restore to a point checks the
	// points against the change logs first, and the base backups here.
	if err := r.resolvePoints(ctx); err != nil {
		return nil, err
	}
	done := r.step(ctx, "preflight")
	pin := activities.PreflightInput{Masters: r.targets}
	for _, ec := range r.ecs {
		pin.Clusters = append(pin.Clusters, activities.PreflightCluster{
			EtcdCluster: ec, Field: ec + ".backup", Store: r.stores[ec], Backup: r.selector(ec), Etcd: r.etcd[ec],
		})
	}
	var pre activities.PreflightResult
	if err := workflow.ExecuteActivity(actx, a.Preflight, pin).Get(ctx, &pre); err != nil {
		return nil, err
	}
	done()
	if len(pre.Clusters) > 0 {
		sa.set(ctx, "", "", pre.Clusters[0].Backup) // main's when both are restored
	}

	// 2. Plan.
	plan := r.plan(ctx, pre)
	r.status.Plan, r.res.Plan = &plan, plan
	if r.in.DryRun {
		r.status.Step = "dry run: plan ready, nothing changed"
		r.res.Steps = r.status.Steps
		return r.res, nil
	}

	// 3. Approval.
	if err := r.approval(ctx); err != nil {
		return nil, err
	}

	// A restore to a point: make the backups at the point now, before
	// anything changes.
	if err := r.makePointBackups(ctx, &pre, sa); err != nil {
		return nil, err
	}

	// 4. Safety backup of the current data, so the restore can be undone.
	if err := r.safetyBackup(ctx, pre); err != nil {
		return nil, err
	}

	// 5. Restore commands, exactly as etcd-manager-ctl writes them.
	done = r.step(ctx, "write restore commands")
	at := workflow.Now(ctx).UTC()
	r.res.Commands = map[string]string{}
	for _, c := range pre.Clusters {
		var cr activities.CommandResult
		if err := workflow.ExecuteActivity(actx, a.WriteRestoreCommand, activities.CommandInput{
			Store: c.Store, Backup: c.Backup, Spec: c.ClusterSpec, At: at,
		}).Get(ctx, &cr); err != nil {
			return nil, err
		}
		r.res.Commands[c.EtcdCluster] = cr.Command
	}
	done()

	// 6. Restart every etcd-manager container, all masters together.
	if err := r.restartAll(ctx); err != nil {
		return nil, err
	}

	// 7. Wait until etcd-manager has restored both clusters.
	done = r.step(ctx, "wait for etcd-manager")
	wait := r.restoreWait
	if reboots(r.targets) {
		wait += bootAllowance
	}
	wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: wait + time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{activities.ErrTypeRestoreTimeout}},
	})
	r.res.Restored = map[string]api.RestoredCluster{}
	waits := map[string]workflow.Future{}
	for _, c := range pre.Clusters {
		waits[c.EtcdCluster] = workflow.ExecuteActivity(wctx, a.WaitRestored, activities.WaitInput{
			EtcdCluster: c.EtcdCluster, Store: c.Store, Command: r.res.Commands[c.EtcdCluster], Etcd: r.etcd[c.EtcdCluster],
			MemberCount: int(c.ClusterSpec.MemberCount), OldClusterID: c.ClusterID, Masters: r.targets, Timeout: wait,
			EndpointMasters: r.endpointMasters(r.etcd[c.EtcdCluster].Endpoints),
		})
	}
	for _, c := range pre.Clusters {
		var w api.RestoredCluster
		if err := waits[c.EtcdCluster].Get(ctx, &w); err != nil {
			return nil, err
		}
		r.res.Restored[c.EtcdCluster] = w
	}
	done()

	// 8. Master-lease clean-up on main.
	if r.in.CleansLeases() {
		done = r.step(ctx, "clean master leases")
		lctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 3 * time.Minute, HeartbeatTimeout: 30 * time.Second,
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, "LeasesNotRenewed"}},
		})
		var lr activities.LeaseResult
		if err := workflow.ExecuteActivity(lctx, a.CleanMasterLeases, activities.LeaseInput{
			Etcd: r.etcd["main"], Live: r.live, WaitRenew: time.Minute,
		}).Get(ctx, &lr); err != nil {
			return nil, err
		}
		r.res.LeasesDeleted = lr.Deleted
		done()
	}
	r.status.Step = "done"
	r.res.Steps = r.status.Steps
	return r.res, nil
}

// step marks a step as started in the status and returns its end marker.
func (r *restoreRun) step(ctx workflow.Context, name string) func() {
	r.status.Step = name
	i := len(r.status.Steps)
	r.status.Steps = append(r.status.Steps, StepTime{Step: name, Started: workflow.Now(ctx).UTC()})
	return func() {
		end := workflow.Now(ctx).UTC()
		r.status.Steps[i].Ended = end
		r.status.Steps[i].Seconds = end.Sub(r.status.Steps[i].Started).Seconds()
	}
}

func (r *restoreRun) plan(ctx workflow.Context, pre activities.PreflightResult) RestorePlan {
	now := workflow.Now(ctx)
	p := RestorePlan{LiveIPs: r.live,
		LeaseRule:  fmt.Sprintf("delete /registry/masterleases/<ip> for every ip not in %v; never a live master's key, never the last key", r.live),
		SafetyNote: "back up main and events as they are now before restoring (undo by restoring those backups)"}
	if r.in.NoLeaseCleanup {
		p.LeaseRule = "none (noLeaseCleanup)"
	}
	if r.in.NoSafetyBackup {
		p.SafetyNote = "none (noSafetyBackup)"
	}
	for _, c := range pre.Clusters {
		p.Backups = append(p.Backups, PlannedBackup{
			EtcdCluster: c.EtcdCluster, Store: c.Store, Backup: c.Backup, Age: now.Sub(c.BackupTime).Round(time.Second).String(),
			Revision: c.Revision, Bytes: c.Bytes, EtcdVersion: c.EtcdVersion, MemberCount: c.ClusterSpec.MemberCount,
			PointInTime: r.points[c.EtcdCluster],
		})
	}
	for _, m := range pre.Masters {
		pm := PlannedMaster{Master: m.Master, Runtime: m.Runtime, Endpoint: m.Endpoint, SSH: m.SSH, Downtime: downtime(m.Runtime)}
		if m.Runtime == restart.RuntimeReboot {
			pm.Endpoint = "EC2 instance " + m.InstanceID
		}
		for _, ec := range r.ecs {
			pm.Containers = append(pm.Containers, m.Containers[ec]...)
		}
		if m.Runtime == restart.RuntimeReboot {
			pm.Containers = pm.Containers[:min(1, len(pm.Containers))] // one instance, whichever etcd cluster found it
		}
		p.Masters = append(p.Masters, pm)
	}
	return p
}

func (r *restoreRun) approval(ctx workflow.Context) error {
	done := r.step(ctx, "approval")
	defer done()
	if !r.in.Approve {
		r.status.Step = api.StepAwaitingApproval
	}
	return r.gate.await(ctx, r.in.Approve, r.approvalWait)
}

// selector is the backup pre-flight checks for one etcd cluster: the
// input's, or for a restore to a point the base of the backup to be made
// (or the backup chosen for an etcd cluster without captured changes).
func (r *restoreRun) selector(ec string) string {
	if p := r.points[ec]; p != nil {
		return p.Bases[0].Backup
	}
	if sel, ok := r.selectors[ec]; ok {
		return sel
	}
	return r.in.BackupSelector(ec)
}

// resolvePoints checks a restore's point against each etcd cluster's
// change log. The first selected cluster (main) takes the input's time or
// revision; the other goes to the time main's point was observed, from its
// own changes when it has any, else to its newest backup at or before it.
func (r *restoreRun) resolvePoints(ctx workflow.Context) error {
	if !r.in.PointInTime() {
		return nil
	}
	done := r.step(ctx, "resolve point")
	defer done()
	var a *activities.PITR
	actx := workflow.WithActivityOptions(ctx, backupActivityOptions(3))
	at, _ := api.CheckPoint("at", r.in.At, "revision", r.in.Revision)
	r.points, r.selectors = map[string]*api.PointPlan{}, map[string]string{}
	now := workflow.Now(ctx)
	for i, ec := range r.ecs {
		change, _ := r.in.ChangeStore(ec)
		in := activities.ResolvePointInput{BackupStore: r.stores[ec], ChangeStore: change, At: at, Now: now}
		if i == 0 {
			in.Revision = r.in.Revision
		}
		var plan api.PointPlan
		err := workflow.ExecuteActivity(actx, a.ResolvePoint, in).Get(ctx, &plan)
		var appErr *temporal.ApplicationError
		if i > 0 && errors.As(err, &appErr) && appErr.Type() == api.ErrTypeNothingCaptured {
			r.selectors[ec] = api.LatestBefore + at.UTC().Format(time.RFC3339)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ec, err)
		}
		r.points[ec] = &plan
		if i == 0 && !plan.Observed.IsZero() {
			at = plan.Observed
		}
	}
	return nil
}

// makePointBackups makes, after approval, the backups at the point that
// the plan describes, and puts them in place of their bases.
func (r *restoreRun) makePointBackups(ctx workflow.Context, pre *activities.PreflightResult, sa *searchAttrs) error {
	if len(r.points) == 0 {
		return nil
	}
	done := r.step(ctx, "make backups at the point")
	defer done()
	for i, c := range pre.Clusters {
		plan := r.points[c.EtcdCluster]
		if plan == nil {
			continue
		}
		change, _ := r.in.ChangeStore(c.EtcdCluster)
		st := &api.MakeBackupStatus{}
		made, err := makeBackup(ctx, r.in.Cluster, c.EtcdCluster, api.PITRStores{Backup: c.Store, Change: change}, *plan, "", st, &searchAttrs{})
		if err != nil {
			return fmt.Errorf("making the backup of %s at %s failed, nothing was restored: %w", c.EtcdCluster, plan.Description, err)
		}
		pre.Clusters[i].Backup, pre.Clusters[i].Revision, pre.Clusters[i].Bytes = made.Backup, made.Revision, made.Bytes
		r.res.Plan.Backups[i].Backup = made.Backup
	}
	sa.set(ctx, "", "", pre.Clusters[0].Backup)
	return nil
}

func (r *restoreRun) safetyBackup(ctx workflow.Context, pre activities.PreflightResult) error {
	if r.in.NoSafetyBackup {
		return nil
	}
	done := r.step(ctx, "safety backup")
	defer done()
	r.res.SafetyBackups = map[string]string{}
	futures := map[string]workflow.ChildWorkflowFuture{}
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	for _, c := range pre.Clusters {
		if !c.EtcdAnswers {
			r.res.SafetyBackups[c.EtcdCluster] = "skipped: etcd does not answer"
			continue
		}
		e := r.etcd[c.EtcdCluster]
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: api.SafetyBackupWorkflowID(id, c.EtcdCluster)})
		futures[c.EtcdCluster] = workflow.ExecuteChildWorkflow(cctx, EtcdBackup, EtcdBackupInput{
			Cluster: r.in.Cluster, EtcdCluster: c.EtcdCluster, BackupStore: c.Store, Endpoints: e.Endpoints,
			BackupOptions: BackupOptions{CACert: e.CACert, Cert: e.Cert, Key: e.Key, NoPrune: true, MaxAttempts: 3},
		})
	}
	for _, ec := range r.ecs {
		f, ok := futures[ec]
		if !ok {
			continue
		}
		var b EtcdBackupResult
		if err := f.Get(ctx, &b); err != nil {
			return fmt.Errorf("safety backup of %s failed, nothing was restored: %w", ec, err)
		}
		r.res.SafetyBackups[ec] = b.Backup
	}
	return nil
}

func (r *restoreRun) restartAll(ctx workflow.Context) error {
	var a *activities.Restore
	// The baseline: which etcd-manager containers run now that the
	// commands are written. Every restart attempt proves its replacements
	// against this one record in history instead of against a time on
	// another machine's clock. Histories from before it replay without it.
	var baselines []activities.Baseline
	if v := workflow.GetVersion(ctx, "restart-baseline", workflow.DefaultVersion, 1); v == 1 {
		done := r.step(ctx, "record etcd-manager baseline")
		var br activities.BaselineResult
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, restoreActivityOptions(2*time.Minute, 5)),
			a.RecordBaseline, activities.BaselineInput{Targets: r.targets, EtcdClusters: r.ecs}).Get(ctx, &br); err != nil {
			return err
		}
		baselines = br.Baselines
		done()
	}

	done := r.step(ctx, "restart etcd-manager")
	defer done()
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		// Short, so a worker that died mid-restart is noticed quickly and
		// the retry restarts what is left while etcd-manager still waits
		// for its peers (20-35 s). A heartbeat late under load only starts
		// a second attempt beside the first, which is safe: both prove
		// against the same baseline and never kill a proven replacement.
		HeartbeatTimeout: 6 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypePreflight}},
	})
	for _, t := range r.targets {
		r.status.Masters[t.Name()] = "restarting"
	}
	var rs activities.RestartResult
	err := workflow.ExecuteActivity(rctx, a.RestartEtcdManagers, activities.RestartInput{
		Targets: r.targets, EtcdClusters: r.ecs, Since: workflow.Now(ctx).UTC(), Baselines: baselines,
	}).Get(ctx, &rs)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.HasDetails() {
		_ = appErr.Details(&rs)
	}
	for _, t := range r.targets {
		if msg, failed := rs.Failed[t.Name()]; failed {
			r.status.Masters[t.Name()] = "failed: " + msg
		} else if err == nil {
			r.status.Masters[t.Name()] = "restarted"
		}
	}
	r.res.Restarts = containerRestarts(rs)
	if err != nil {
		return fmt.Errorf("could not restart etcd-manager on every master: %w", err)
	}
	return nil
}

// endpointMasters maps each etcd client endpoint to its master: by the
// master's IP when the endpoint's host is one, else by position when there
// are as many endpoints as masters (the order the CLI and the README use).
func (r *restoreRun) endpointMasters(endpoints []string) map[string]restart.Target {
	out := map[string]restart.Target{}
	for _, ep := range endpoints {
		host := endpointHost(ep)
		for i, ip := range r.targetIPs {
			if ip != "" && ip == host {
				out[ep] = r.targets[i]
			}
		}
	}
	if len(out) == 0 && len(endpoints) == len(r.targets) {
		for i, ep := range endpoints {
			out[ep] = r.targets[i]
		}
	}
	return out
}

// endpointHost is the host of a client URL like https://10.0.1.10:4001.
func endpointHost(ep string) string {
	u, err := url.Parse(ep)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// resolve checks the input (pure checks; files and endpoints are checked by
// activities) and derives stores, etcd configs, masters and timeouts.
func (r *restoreRun) resolve(ctx workflow.Context) error {
	in := r.in
	if err := in.Validate(); err != nil {
		return err
	}
	if id := workflow.GetInfo(ctx).WorkflowExecution.ID; id != api.RestoreWorkflowID(in.Cluster) {
		return invalid("workflow id", id, fmt.Sprintf("start the restore with workflow id %q, so that two restores of one cluster can never run at once", api.RestoreWorkflowID(in.Cluster)))
	}
	r.ecs = in.Selected()
	r.stores, r.etcd = map[string]string{}, map[string]etcdconn.Config{}
	for _, ec := range r.ecs {
		t := in.Target(ec)
		store, err := api.BackupStoreFor(in.StateStore, t.BackupStore, in.Cluster, ec, ec+".backupStore")
		if err != nil {
			return err
		}
		r.stores[ec] = store
		r.etcd[ec] = etcdconn.Config{Endpoints: t.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key}
	}
	for _, m := range in.Masters {
		r.targets = append(r.targets, masterTarget(in, m))
		r.targetIPs = append(r.targetIPs, m.IP)
		if m.IP != "" && len(in.LiveMasterIPs) == 0 {
			r.live = append(r.live, m.IP)
		}
	}
	if len(in.LiveMasterIPs) > 0 {
		r.live = in.LiveMasterIPs
	}
	// Validate has parsed both.
	r.approvalWait, _ = api.Duration("approvalTimeout", in.ApprovalTimeout, api.DefaultApprovalTimeout)
	r.restoreWait, _ = api.Duration("restoreTimeout", in.RestoreTimeout, api.DefaultRestoreTimeout)
	return nil
}

func restoreActivityOptions(timeout time.Duration, attempts int32) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		// Long steps heartbeat every few seconds; a dead worker's step is
		// retried elsewhere within this.
		HeartbeatTimeout: 20 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts:        attempts,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput, activities.ErrTypeAccessDenied, activities.ErrTypePreflight},
		},
	}
}

// containerRestarts is the restart step's outcome in the contract's terms.
func containerRestarts(rs activities.RestartResult) []api.ContainerRestart {
	out := make([]api.ContainerRestart, 0, len(rs.Restarted))
	for _, x := range rs.Restarted {
		out = append(out, api.ContainerRestart{Master: x.Master, EtcdCluster: x.EtcdCluster, Before: x.Before.Name, After: x.After.Name, Action: x.Action, Proof: x.Proof})
	}
	return out
}

// onlyOne is the one element of a single-element list, else "": a run of
// both etcd clusters has no EtcdCluster search attribute.
func onlyOne(ecs []string) string {
	if len(ecs) == 1 {
		return ecs[0]
	}
	return ""
}
