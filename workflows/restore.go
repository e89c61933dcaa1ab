package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/restart"
)

// EtcdManagerRestoreInput restores main and events of one kops cluster from
// etcd-manager backups. Start it with workflow id restore/<cluster>.
type EtcdManagerRestoreInput struct {
	Cluster    string `json:"cluster"`
	StateStore string `json:"stateStore,omitempty"` // stores are <stateStore>/<cluster>/backups/etcd/{main,events}
	// Backup selects the backup of both etcd clusters unless one sets its
	// own: "latest" (default), a backup name, or "latest-before:<RFC3339>".
	Backup string        `json:"backup,omitempty"`
	Main   RestoreTarget `json:"main"`
	Events RestoreTarget `json:"events"`
	// etcd client TLS files on the worker, for verification and clean-up.
	CACert string `json:"cacert,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"`
	// Masters lists each master's Docker endpoint; or Discover finds them in EC2.
	Masters  []MasterInput  `json:"masters,omitempty"`
	Discover *DiscoverInput `json:"discover,omitempty"`
	// LiveMasterIPs are the apiserver IPs whose master leases stay; default
	// the masters' ip fields, or the discovered instances' private IPs.
	LiveMasterIPs []string `json:"liveMasterIPs,omitempty"`

	DryRun          bool   `json:"dryRun,omitempty"`
	Approve         bool   `json:"approve,omitempty"`
	ApprovalTimeout string `json:"approvalTimeout,omitempty"` // default 24h
	RestoreTimeout  string `json:"restoreTimeout,omitempty"`  // per etcd cluster, default 15m
	NoSafetyBackup  bool   `json:"noSafetyBackup,omitempty"`
	NoLeaseCleanup  bool   `json:"noLeaseCleanup,omitempty"`
}

// RestoreTarget is one etcd cluster: its backup, store and endpoints.
type RestoreTarget struct {
	Backup      string   `json:"backup,omitempty"`
	BackupStore string   `json:"backupStore,omitempty"`
	Endpoints   []string `json:"endpoints"`
}

// MasterInput is one master: its node name, Docker endpoint and IP.
type MasterInput struct {
	Name    string `json:"name,omitempty"` // kubelet node name; narrows the container match
	Docker  string `json:"docker"`         // unix:///var/run/docker.sock or tcp://10.0.1.10:2376
	IP      string `json:"ip,omitempty"`   // the apiserver IP, for the lease clean-up
	TLSCA   string `json:"tlsCA,omitempty"`
	TLSCert string `json:"tlsCert,omitempty"`
	TLSKey  string `json:"tlsKey,omitempty"`
}

// DiscoverInput finds masters as running EC2 instances tagged for the cluster.
type DiscoverInput struct {
	Region                 string `json:"region"`
	DockerEndpointTemplate string `json:"dockerEndpointTemplate"` // e.g. tcp://{{.PrivateIP}}:2376
	TLSCA                  string `json:"tlsCA,omitempty"`
	TLSCert                string `json:"tlsCert,omitempty"`
	TLSKey                 string `json:"tlsKey,omitempty"`
}

// RestorePlan is what the restore will do; dryRun returns it.
type RestorePlan struct {
	Backups    []PlannedBackup `json:"backups"`
	Masters    []PlannedMaster `json:"masters"`
	LiveIPs    []string        `json:"liveMasterIps"`
	LeaseRule  string          `json:"leaseRule"`
	SafetyNote string          `json:"safetyBackup"`
}

// PlannedBackup is one etcd cluster's chosen backup.
type PlannedBackup struct {
	EtcdCluster string `json:"etcdCluster"`
	Store       string `json:"store"`
	Backup      string `json:"backup"`
	Age         string `json:"age"`
	Revision    int64  `json:"revision,omitempty"`
	Bytes       int64  `json:"bytes"`
	EtcdVersion string `json:"etcdVersion"`
	MemberCount int32  `json:"memberCount"`
}

// PlannedMaster lists the containers that will be restarted on a master.
type PlannedMaster struct {
	Master     string   `json:"master"`
	Endpoint   string   `json:"endpoint"`
	Containers []string `json:"containers"`
}

// Approval is who approved or rejected, and why: the payload of the approve
// and reject signals and updates of both restores,
// {"by": "alice", "comment": "INC-42"}.
type Approval struct {
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
}

// StepTime is when a step ran.
type StepTime struct {
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitempty"`
	Seconds float64   `json:"seconds,omitempty"`
}

// RestoreStatus is the "status" query of both restore workflows.
type RestoreStatus struct {
	Step      string            `json:"step"`
	Masters   map[string]string `json:"masters,omitempty"` // master -> state
	Steps     []StepTime        `json:"steps"`
	Plan      *RestorePlan      `json:"plan,omitempty"`
	Approval  *Approval         `json:"approval,omitempty"`
	LastError string            `json:"lastError,omitempty"`
}

// EtcdManagerRestoreResult is what was done.
type EtcdManagerRestoreResult struct {
	DryRun        bool                             `json:"dryRun,omitempty"`
	Plan          RestorePlan                      `json:"plan"`
	ApprovedBy    *Approval                        `json:"approvedBy,omitempty"`
	SafetyBackups map[string]string                `json:"safetyBackups,omitempty"` // etcd cluster -> backup name
	Commands      map[string]string                `json:"commands,omitempty"`
	Restarts      []restart.Restarted              `json:"restarts,omitempty"`
	Restored      map[string]activities.WaitResult `json:"restored,omitempty"`
	LeasesDeleted []string                         `json:"leasesDeleted,omitempty"`
	Steps         []StepTime                       `json:"steps"`
}

// Signal, update and query names shared by both restores.
const (
	SignalApprove = "approve"
	SignalReject  = "reject"
	UpdateApprove = "approve"
	UpdateReject  = "reject"
)

// RestoreWorkflowID is the one id a restore of a cluster runs under, both
// the etcd-manager and the volume restore, so a second restore of the same
// cluster is refused while one runs.
func RestoreWorkflowID(cluster string) string { return "restore/" + cluster }

// EtcdManagerRestore runs the runbook's etcd-manager restore: pre-flight
// (changes nothing), plan, approval, safety backup, restore commands,
// etcd-manager restarts on every master, wait for the restored cluster,
// master-lease clean-up. Each step is an idempotent activity, so a retry or
// a restarted worker never repeats what was done.
func EtcdManagerRestore(ctx workflow.Context, in EtcdManagerRestoreInput) (*EtcdManagerRestoreResult, error) {
	r := &restoreRun{in: in, status: &RestoreStatus{Step: "validate", Masters: map[string]string{}}}
	r.res = &EtcdManagerRestoreResult{DryRun: in.DryRun}
	if err := r.setHandlers(ctx); err != nil {
		return nil, err
	}
	res, err := r.run(ctx)
	if err != nil {
		r.status.LastError, r.status.Step = err.Error(), "failed: "+r.status.Step
		return nil, err
	}
	return res, nil
}

type restoreRun struct {
	in       EtcdManagerRestoreInput
	status   *RestoreStatus
	res      *EtcdManagerRestoreResult
	decision *Approval
	approved bool
	waiting  bool
	// resolved input
	stores       map[string]string
	etcd         map[string]etcdconn.Config
	targets      []restart.Target
	targetIPs    []string // per target, "" when unknown: maps an etcd endpoint to its master
	live         []string
	approvalWait time.Duration
	restoreWait  time.Duration
}

func (r *restoreRun) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RestoreStatus, error) { return *r.status, nil }); err != nil {
		return err
	}
	decide := func(ok bool) func(workflow.Context, Approval) error {
		return func(_ workflow.Context, a Approval) error {
			if r.decision == nil {
				r.decision, r.approved = &a, ok
			}
			return nil
		}
	}
	validate := func(_ workflow.Context, a Approval) error {
		if !r.waiting || r.decision != nil {
			return fmt.Errorf("restore is not waiting for approval (step %s)", r.status.Step)
		}
		if strings.TrimSpace(a.By) == "" {
			return fmt.Errorf(`say who decides: {"by": "your name"}`)
		}
		return nil
	}
	for _, u := range []struct {
		name string
		ok   bool
	}{{UpdateApprove, true}, {UpdateReject, false}} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, decide(u.ok), workflow.UpdateHandlerOptions{Validator: validate}); err != nil {
			return err
		}
	}
	// Signals (what `temporal workflow signal` and the Web UI send) carry
	// the same payload. One that arrives before the plan is shown is
	// ignored: nobody can approve what they have not seen.
	for _, sg := range []struct {
		name string
		ok   bool
	}{{SignalApprove, true}, {SignalReject, false}} {
		ch := workflow.GetSignalChannel(ctx, sg.name)
		workflow.Go(ctx, func(gctx workflow.Context) {
			for {
				var a Approval
				ch.Receive(gctx, &a)
				if r.waiting && r.decision == nil {
					if a.By == "" {
						a.By = "signal " + sg.name
					}
					r.decision, r.approved = &a, sg.ok
				} else {
					workflow.GetLogger(gctx).Warn("ignored signal: restore is not waiting for approval", "signal", sg.name)
				}
			}
		})
	}
	return nil
}

func (r *restoreRun) run(ctx workflow.Context) (*EtcdManagerRestoreResult, error) {
	if err := r.resolve(ctx); err != nil {
		return nil, invalidInput(err)
	}
	var a *activities.Restore
	actx := workflow.WithActivityOptions(ctx, restoreActivityOptions(10*time.Minute, 5))

	// Masters from EC2 when asked.
	if r.in.Discover != nil {
		done := r.step(ctx, "discover masters")
		var found []activities.DiscoveredMaster
		if err := workflow.ExecuteActivity(actx, a.DiscoverMasters, activities.DiscoverInput{
			Cluster: r.in.Cluster, Region: r.in.Discover.Region, Template: r.in.Discover.DockerEndpointTemplate,
			TLSCA: r.in.Discover.TLSCA, TLSCert: r.in.Discover.TLSCert, TLSKey: r.in.Discover.TLSKey,
		}).Get(ctx, &found); err != nil {
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

	// 1. Pre-flight: changes nothing.
	done := r.step(ctx, "preflight")
	pin := activities.PreflightInput{Masters: r.targets}
	for _, ec := range EtcdClusters {
		pin.Clusters = append(pin.Clusters, activities.PreflightCluster{
			EtcdCluster: ec, Field: ec + ".backup", Store: r.stores[ec], Backup: r.backupSelector(ec), Etcd: r.etcd[ec],
		})
	}
	var pre activities.PreflightResult
	if err := workflow.ExecuteActivity(actx, a.Preflight, pin).Get(ctx, &pre); err != nil {
		return nil, err
	}
	done()

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
	wctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: r.restoreWait + time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{activities.ErrTypeRestoreTimeout}},
	})
	r.res.Restored = map[string]activities.WaitResult{}
	waits := map[string]workflow.Future{}
	for _, c := range pre.Clusters {
		waits[c.EtcdCluster] = workflow.ExecuteActivity(wctx, a.WaitRestored, activities.WaitInput{
			EtcdCluster: c.EtcdCluster, Store: c.Store, Command: r.res.Commands[c.EtcdCluster], Etcd: r.etcd[c.EtcdCluster],
			MemberCount: int(c.ClusterSpec.MemberCount), OldClusterID: c.ClusterID, Masters: r.targets, Timeout: r.restoreWait,
			EndpointMasters: r.endpointMasters(r.etcd[c.EtcdCluster].Endpoints),
		})
	}
	for _, c := range pre.Clusters {
		var w activities.WaitResult
		if err := waits[c.EtcdCluster].Get(ctx, &w); err != nil {
			return nil, err
		}
		r.res.Restored[c.EtcdCluster] = w
	}
	done()

	// 8. Master-lease clean-up on main.
	if !r.in.NoLeaseCleanup {
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

func (r *restoreRun) backupSelector(ec string) string {
	if t := r.target(ec); t.Backup != "" {
		return t.Backup
	}
	if r.in.Backup != "" {
		return r.in.Backup
	}
	return "latest"
}

func (r *restoreRun) target(ec string) RestoreTarget {
	if ec == "events" {
		return r.in.Events
	}
	return r.in.Main
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
		})
	}
	for _, m := range pre.Masters {
		pm := PlannedMaster{Master: m.Master, Endpoint: m.Endpoint}
		for _, ec := range EtcdClusters {
			pm.Containers = append(pm.Containers, m.Containers[ec]...)
		}
		p.Masters = append(p.Masters, pm)
	}
	return p
}

func (r *restoreRun) approval(ctx workflow.Context) error {
	done := r.step(ctx, "approval")
	defer done()
	if r.in.Approve {
		r.res.ApprovedBy = &Approval{By: "input (approve: true)"}
		r.status.Approval = r.res.ApprovedBy
		return nil
	}
	r.waiting = true
	r.status.Step = "waiting for approval (kopsdr approve " + workflow.GetInfo(ctx).WorkflowExecution.ID + ")"
	decided, err := workflow.AwaitWithTimeout(ctx, r.approvalWait, func() bool { return r.decision != nil })
	r.waiting = false
	if err != nil {
		return err
	}
	if !decided {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("nobody approved the restore within %v; nothing was changed", r.approvalWait), ErrTypeApprovalTimedOut, nil)
	}
	r.status.Approval = r.decision
	if !r.approved {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("restore rejected by %s (%s); nothing was changed", r.decision.By, r.decision.Comment), ErrTypeRestoreRejected, nil)
	}
	r.res.ApprovedBy = r.decision
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
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "/safety-backup/" + c.EtcdCluster})
		futures[c.EtcdCluster] = workflow.ExecuteChildWorkflow(cctx, EtcdBackup, EtcdBackupInput{
			Cluster: r.in.Cluster, EtcdCluster: c.EtcdCluster, BackupStore: c.Store, Endpoints: e.Endpoints,
			BackupOptions: BackupOptions{CACert: e.CACert, Cert: e.Cert, Key: e.Key, NoPrune: true, MaxAttempts: 3},
		})
	}
	for _, ec := range EtcdClusters {
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
			a.RecordBaseline, activities.BaselineInput{Targets: r.targets, EtcdClusters: EtcdClusters}).Get(ctx, &br); err != nil {
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
		Targets: r.targets, EtcdClusters: EtcdClusters, Since: workflow.Now(ctx).UTC(), Baselines: baselines,
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
	r.res.Restarts = rs.Restarted
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
	if err := checkCluster(in.Cluster); err != nil {
		return err
	}
	if id := workflow.GetInfo(ctx).WorkflowExecution.ID; id != RestoreWorkflowID(in.Cluster) {
		return invalid("workflow id", id, fmt.Sprintf("start the restore with workflow id %q, so that two restores of one cluster can never run at once", RestoreWorkflowID(in.Cluster)))
	}
	r.stores, r.etcd = map[string]string{}, map[string]etcdconn.Config{}
	for _, ec := range EtcdClusters {
		t := r.target(ec)
		store, err := BackupStoreFor(in.StateStore, t.BackupStore, in.Cluster, ec)
		if err != nil {
			return prefixField(err, ec)
		}
		if len(t.Endpoints) == 0 {
			return invalid(ec+".endpoints", "", fmt.Sprintf("list etcd %s's client URLs on the masters, e.g. [\"https://10.0.1.10:%d\"]", ec, map[string]int{"main": 4001, "events": 4002}[ec]))
		}
		r.stores[ec] = store
		r.etcd[ec] = etcdconn.Config{Endpoints: t.Endpoints, CACert: in.CACert, Cert: in.Cert, Key: in.Key}
	}
	if (len(in.Masters) == 0) == (in.Discover == nil) {
		return invalid("masters", "", `give either "masters" (each {"name", "docker", "ip"}) or "discover" ({"region", "dockerEndpointTemplate"})`)
	}
	for i, m := range in.Masters {
		if m.Docker == "" {
			return invalid(fmt.Sprintf("masters[%d].docker", i), "", "give the master's Docker endpoint, e.g. tcp://10.0.1.10:2376 or unix:///var/run/docker.sock")
		}
		r.targets = append(r.targets, restart.Target{Master: m.Name, Endpoint: m.Docker, TLSCA: m.TLSCA, TLSCert: m.TLSCert, TLSKey: m.TLSKey})
		r.targetIPs = append(r.targetIPs, m.IP)
		if m.IP != "" && len(in.LiveMasterIPs) == 0 {
			r.live = append(r.live, m.IP)
		}
	}
	if len(in.LiveMasterIPs) > 0 {
		r.live = in.LiveMasterIPs
	}
	if !in.NoLeaseCleanup && in.Discover == nil && len(r.live) == 0 {
		return invalid("liveMasterIPs", "", `list the live masters' IPs (or give each master an "ip"), or set "noLeaseCleanup": true`)
	}
	r.approvalWait, r.restoreWait = 24*time.Hour, 15*time.Minute
	if err := setDuration("approvalTimeout", in.ApprovalTimeout, &r.approvalWait); err != nil {
		return err
	}
	return setDuration("restoreTimeout", in.RestoreTimeout, &r.restoreWait)
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
