package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
)

// Error types a restore ends with when it does not run.
const (
	ErrTypeRestoreRejected  = "RestoreRejected"
	ErrTypeApprovalTimedOut = "ApprovalTimedOut"
	ErrTypeRestoreFailed    = "RestoreFailed" // a step failed after approval; see rolledBack
)

// VolumeRestoreInput restores etcd volumes of one kops cluster from EBS
// snapshots. Plain JSON with defaults; no credentials: the worker's AWS
// environment provides them.
type VolumeRestoreInput struct {
	Cluster    string `json:"cluster"`
	Region     string `json:"region"`
	StateStore string `json:"stateStore"` // kops state store: the cluster spec's encryption rules are read from <stateStore>/<cluster>/config
	// Which members: by default every member of main and events.
	EtcdClusters []string `json:"etcdClusters,omitempty"`
	Members      []string `json:"members,omitempty"`
	// Which snapshots: at most one of snapshotSet, snapshotIds and at; by
	// default the newest set with a completed snapshot of every member.
	SnapshotSet string   `json:"snapshotSet,omitempty"`
	SnapshotIDs []string `json:"snapshotIds,omitempty"`
	At          string   `json:"at,omitempty"` // RFC 3339: the newest complete set taken at or before
	// Again restores snapshots the current volumes already came from (a
	// restore done before); without it such a restore is refused.
	Again bool `json:"again,omitempty"`
	// AllowMixedTimes lets members of one etcd cluster hold data from
	// different times (snapshots of different sets, or only some members
	// restored); without it such a restore is refused.
	AllowMixedTimes bool   `json:"allowMixedTimes,omitempty"`
	OldVolumes      string `json:"oldVolumes,omitempty"` // untag (default) | delete (once detached)
	Restart         string `json:"restart,omitempty"`    // reboot (default) | stop-start | none
	DryRun          bool   `json:"dryRun,omitempty"`     // stop after the plan and return it
	Approve         bool   `json:"approve,omitempty"`    // approved up front: no waiting
	// ApprovalTimeout is how long to wait for approve or reject (Go
	// duration, default "24h"); then the restore ends having created nothing.
	ApprovalTimeout string `json:"approvalTimeout,omitempty"`
	// Verify, if set, is where etcd answers after the masters restarted: the
	// restore then waits until every member is back.
	Verify *VolumeVerify `json:"verify,omitempty"`
	// MaxAttempts bounds how often a failing EC2 step is retried. Default 10.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// VolumeVerify says where the restored etcd clusters answer. Paths are on
// the worker.
type VolumeVerify struct {
	MainEndpoints   []string `json:"mainEndpoints,omitempty"`
	EventsEndpoints []string `json:"eventsEndpoints,omitempty"`
	CACert          string   `json:"cacert,omitempty"`
	Cert            string   `json:"cert,omitempty"`
	Key             string   `json:"key,omitempty"`
	Timeout         string   `json:"timeout,omitempty"` // default "15m"
}

// VolumeRestoreReport is both the "status" query's answer and the result:
// the step, the plan, the decision, every member's state and what became
// of its old volume, with times.
type VolumeRestoreReport struct {
	Cluster          string               `json:"cluster"`
	WorkflowID       string               `json:"workflowId"`
	Step             string               `json:"step"`
	DryRun           bool                 `json:"dryRun,omitempty"`
	StartedAt        time.Time            `json:"startedAt"`
	UpdatedAt        time.Time            `json:"updatedAt"`
	FinishedAt       time.Time            `json:"finishedAt,omitzero"`
	Plan             *ebs.RestorePlan     `json:"plan,omitempty"`
	ApprovalDeadline time.Time            `json:"approvalDeadline,omitzero"`
	Approval         *VolumeDecision      `json:"approval,omitempty"`
	Members          []VolumeMemberStatus `json:"members"`
	Restarted        []string             `json:"restarted,omitempty"`
	EtcdMembers      map[string]int       `json:"etcdMembers,omitempty"` // members answering after the restart, per etcd cluster
	RolledBack       bool                 `json:"rolledBack,omitempty"`
	LastError        string               `json:"lastError,omitempty"`
}

// VolumeDecision is how the restore was approved or rejected.
type VolumeDecision struct {
	Decision string    `json:"decision"` // approved | rejected
	By       string    `json:"by"`
	Comment  string    `json:"comment,omitempty"`
	Via      string    `json:"via"` // input | signal | update
	At       time.Time `json:"at"`
}

// VolumeMemberStatus is one member's progress.
type VolumeMemberStatus struct {
	EtcdCluster      string            `json:"etcdCluster"`
	Member           string            `json:"member"`
	AvailabilityZone string            `json:"availabilityZone"`
	Snapshot         string            `json:"snapshot"`
	OldVolume        string            `json:"oldVolume,omitempty"`
	NewVolume        string            `json:"newVolume,omitempty"`
	Instance         string            `json:"instance,omitempty"`
	State            string            `json:"state"` // planned, creating, waiting, tagging, tagged, restored, rolled-back, failed
	OldTags          map[string]string `json:"oldTags,omitempty"`
	OldVolumeOutcome string            `json:"oldVolumeOutcome,omitempty"` // untagged | deleted | kept: why
	Error            string            `json:"error,omitempty"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}

// volumeRestore is one VolumeRestore run's state.
type volumeRestore struct {
	in     VolumeRestoreInput
	ctx    workflow.Context
	actx   workflow.Context // EC2 activity options
	rep    *VolumeRestoreReport
	plan   ebs.RestorePlan
	runs   []*volumeMemberRun
	verify map[string]etcdconn.Config
}

// volumeMemberRun is one member's restore and what compensation needs to undo it.
type volumeMemberRun struct {
	plan      ebs.MemberPlan
	st        *VolumeMemberStatus
	newVolume string
	swapBegan bool
	oldTags   map[string]string
}

// VolumeRestore restores etcd volumes from EBS snapshots the way protokube
// needs them: pre-flight (changes nothing), plan, approval, then per member
// in parallel a new volume from the snapshot with the old one's type, size,
// iops, throughput and the cluster spec's encryption, and the kops tags moved
// from the old volume to the new one; then the masters restart. If a step
// after the tags moved fails for good, the old volumes get their tags back
// so the cluster is never left without a tagged volume per member.
func VolumeRestore(ctx workflow.Context, in VolumeRestoreInput) (*VolumeRestoreReport, error) {
	info := workflow.GetInfo(ctx)
	now := workflow.Now(ctx).UTC()
	r := &volumeRestore{in: in, ctx: ctx, rep: &VolumeRestoreReport{
		Cluster: in.Cluster, WorkflowID: info.WorkflowExecution.ID, Step: "validate", DryRun: in.DryRun,
		StartedAt: now, UpdatedAt: now, Members: []VolumeMemberStatus{},
	}}
	if err := r.handlers(); err != nil {
		return nil, err
	}
	sel, approvalTimeout, verifyTimeout, err := r.resolve()
	if err != nil {
		return nil, r.fail(invalidInput(err))
	}
	var a *activities.Volumes
	r.actx = workflow.WithActivityOptions(ctx, ec2ActivityOptions(in.MaxAttempts))

	r.step("preflight")
	if err := workflow.ExecuteActivity(r.actx, a.EBSPlanRestore, activities.PlanRestoreInput{
		Region: in.Region, Cluster: in.Cluster, StateStore: in.StateStore, EtcdClusters: sel.etcdClusters, Members: in.Members,
		Select: sel.selection, Restart: sel.restart, OldVolumes: sel.oldVolumes,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.FirstRunID,
		Again: in.Again, AllowMixedTimes: in.AllowMixedTimes,
	}).Get(ctx, &r.plan); err != nil {
		return nil, r.fail(err)
	}
	r.rep.Plan = &r.plan
	for i := range r.plan.Members {
		m := r.plan.Members[i]
		st := VolumeMemberStatus{EtcdCluster: m.EtcdCluster, Member: m.Member, AvailabilityZone: m.AvailabilityZone,
			Snapshot: m.Snapshot.ID, Instance: m.InstanceID, State: "planned", UpdatedAt: r.now()}
		if m.OldVolume != nil {
			st.OldVolume = m.OldVolume.ID
		}
		r.rep.Members = append(r.rep.Members, st)
	}
	for i := range r.plan.Members {
		r.runs = append(r.runs, &volumeMemberRun{plan: r.plan.Members[i], st: &r.rep.Members[i]})
	}
	if in.DryRun {
		r.step("dry-run")
		r.rep.FinishedAt = r.now()
		return r.rep, nil
	}

	if err := r.awaitApproval(approvalTimeout); err != nil {
		return nil, r.fail(err)
	}

	r.step("restore volumes")
	if err := r.restoreMembers(); err != nil {
		return nil, r.rollBack(err)
	}

	r.step("restart masters")
	if err := r.restartMasters(); err != nil {
		return nil, r.rollBack(fmt.Errorf("restart masters: %w", err))
	}
	r.rep.Restarted = r.plan.Instances

	// From here on the masters run on the new volumes: moving the tags back
	// would only take effect at their next restart, so a failure is
	// reported and left to the operator.
	if len(r.verify) > 0 {
		r.step("verify etcd")
		if err := r.waitEtcd(verifyTimeout); err != nil {
			return nil, r.fail(fmt.Errorf("the volumes are restored and the masters restarted, but etcd did not come back with every member: %w", err))
		}
	}

	r.step("old volumes")
	r.cleanUp()
	for _, run := range r.runs {
		r.member(run, "restored", "")
	}
	r.step("done")
	r.rep.FinishedAt = r.now()
	return r.rep, nil
}

func (r *volumeRestore) now() time.Time { return workflow.Now(r.ctx).UTC() }

func (r *volumeRestore) step(s string) {
	r.rep.Step, r.rep.UpdatedAt = s, r.now()
}

func (r *volumeRestore) member(run *volumeMemberRun, state, errText string) {
	run.st.State, run.st.Error, run.st.UpdatedAt = state, errText, r.now()
	r.rep.UpdatedAt = run.st.UpdatedAt
}

func (r *volumeRestore) fail(err error) error {
	r.rep.LastError = err.Error()
	r.step("failed")
	r.rep.FinishedAt = r.rep.UpdatedAt
	return err
}

// handlers registers the status query and the approve/reject signals and
// updates before anything can block.
func (r *volumeRestore) handlers() error {
	if err := workflow.SetQueryHandler(r.ctx, QueryStatus, func() (VolumeRestoreReport, error) { return *r.rep, nil }); err != nil {
		return err
	}
	for _, name := range []string{UpdateApprove, UpdateReject} {
		decision := map[string]string{UpdateApprove: "approved", UpdateReject: "rejected"}[name]
		if err := workflow.SetUpdateHandlerWithOptions(r.ctx, name,
			func(ctx workflow.Context, a Approval) (VolumeRestoreReport, error) {
				r.decide(decision, a, "update")
				return *r.rep, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, a Approval) error {
				if strings.TrimSpace(a.By) == "" {
					return errors.New(`say who decides: {"by": "<name>", "comment": "<why>"}`)
				}
				return r.undecidable()
			}}); err != nil {
			return err
		}
		ch := workflow.GetSignalChannel(r.ctx, name)
		workflow.Go(r.ctx, func(ctx workflow.Context) {
			for {
				var a Approval
				ch.Receive(ctx, &a)
				if err := r.undecidable(); err != nil {
					workflow.GetLogger(ctx).Warn("ignored signal", "signal", name, "reason", err)
					continue
				}
				if a.By == "" {
					a.By = "signal " + name
				}
				r.decide(decision, a, "signal")
			}
		})
	}
	return nil
}

// undecidable says why approve/reject cannot be taken now (nil: it can).
// As in the etcd-manager restore, only a restore showing its plan and
// waiting can be decided: nobody approves a plan they have not seen (the
// approve input is the way to approve up front).
func (r *volumeRestore) undecidable() error {
	switch {
	case r.rep.Approval != nil:
		return fmt.Errorf("already %s by %s", r.rep.Approval.Decision, r.rep.Approval.By)
	case r.in.DryRun:
		return errors.New("a dry run is never approved: start the restore again without dryRun")
	case r.rep.Step != stepAwaitingApproval:
		return fmt.Errorf("the restore is not waiting for approval (step %s)", r.rep.Step)
	}
	return nil
}

const stepAwaitingApproval = "awaiting approval"

func (r *volumeRestore) decide(decision string, a Approval, via string) {
	r.rep.Approval = &VolumeDecision{Decision: decision, By: a.By, Comment: a.Comment, Via: via, At: r.now()}
	r.rep.UpdatedAt = r.rep.Approval.At
}

// awaitApproval waits for approve or reject unless the input approved up
// front. Until approved nothing has been created, so a rejection or the
// timeout simply ends the restore.
func (r *volumeRestore) awaitApproval(timeout time.Duration) error {
	if r.in.Approve && r.rep.Approval == nil {
		r.decide("approved", Approval{By: "input"}, "input")
	}
	if r.rep.Approval == nil {
		r.step(stepAwaitingApproval)
		r.rep.ApprovalDeadline = r.now().Add(timeout)
		decided, err := workflow.AwaitWithTimeout(r.ctx, timeout, func() bool { return r.rep.Approval != nil })
		if err != nil {
			return err
		}
		if !decided {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"no approval within %s: the restore ended having created nothing", timeout), ErrTypeApprovalTimedOut, nil)
		}
	}
	if d := r.rep.Approval; d.Decision != "approved" {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"rejected by %s (%s): the restore ended having created nothing", d.By, d.Comment), ErrTypeRestoreRejected, nil)
	}
	return nil
}

// restoreMembers runs every member at once and waits for all of them, so
// compensation, if needed, sees every member's final state.
func (r *volumeRestore) restoreMembers() error {
	wg := workflow.NewWaitGroup(r.ctx)
	errs := make([]error, len(r.runs))
	for i, run := range r.runs {
		wg.Add(1)
		workflow.Go(r.ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if err := r.restoreMember(ctx, run); err != nil {
				errs[i] = fmt.Errorf("%s: %w", run.plan.Key(), err)
				r.member(run, "failed", err.Error())
			}
		})
	}
	wg.Wait(r.ctx)
	return errors.Join(errs...)
}

func (r *volumeRestore) restoreMember(ctx workflow.Context, run *volumeMemberRun) error {
	var a *activities.Volumes
	m := run.plan
	r.member(run, "creating", "")
	if err := workflow.ExecuteActivity(r.actx, a.EBSCreateVolume, activities.CreateVolumeInput{
		Region: r.in.Region, Member: m,
	}).Get(ctx, &run.newVolume); err != nil {
		return err
	}
	run.st.NewVolume = run.newVolume

	r.member(run, "waiting", "")
	wctx := workflow.WithActivityOptions(r.ctx, ec2WaitActivityOptions(r.in.MaxAttempts, 30*time.Minute))
	if err := workflow.ExecuteActivity(wctx, a.EBSWaitVolume, activities.WaitVolumeInput{
		Region: r.in.Region, VolumeID: run.newVolume, New: m.New,
	}).Get(ctx, nil); err != nil {
		return err
	}

	r.member(run, "tagging", "")
	run.swapBegan = true
	var swap activities.SwapResult
	if err := workflow.ExecuteActivity(r.actx, a.EBSSwapTags, activities.SwapTagsInput{
		Region: r.in.Region, Member: m, NewVolumeID: run.newVolume,
	}).Get(ctx, &swap); err != nil {
		return err
	}
	run.oldTags, run.st.OldTags = swap.OldTags, swap.OldTags
	r.member(run, "tagged", "")
	return nil
}

// restartMasters restarts every master of the plan once, however many of
// its members were restored. With stop-start and oldVolumes delete, the old
// volumes are detached while their masters are stopped, when nothing has
// them mounted.
func (r *volumeRestore) restartMasters() error {
	var a *activities.Volumes
	ids := r.plan.Instances
	if r.plan.Restart == ebs.RestartNone || len(ids) == 0 {
		return nil
	}
	wctx := workflow.WithActivityOptions(r.ctx, ec2WaitActivityOptions(r.in.MaxAttempts, 30*time.Minute))
	in := activities.InstancesInput{Region: r.in.Region, InstanceIDs: ids}
	if r.plan.Restart == ebs.RestartReboot {
		return workflow.ExecuteActivity(r.actx, a.EBSRebootInstances, in).Get(r.ctx, nil)
	}
	if err := workflow.ExecuteActivity(wctx, a.EBSStopInstances, in).Get(r.ctx, nil); err != nil {
		return err
	}
	if r.plan.OldVolumes == ebs.OldVolumesDelete {
		var attached []string
		for _, run := range r.runs {
			if v := run.plan.OldVolume; v != nil && v.InstanceID != "" {
				attached = append(attached, v.ID)
			}
		}
		if len(attached) > 0 {
			if err := workflow.ExecuteActivity(wctx, a.EBSDetachVolumes, activities.VolumesInput{
				Region: r.in.Region, VolumeIDs: attached,
			}).Get(r.ctx, nil); err != nil {
				return err
			}
		}
	}
	return workflow.ExecuteActivity(wctx, a.EBSStartInstances, in).Get(r.ctx, nil)
}

// rollBack is the compensation: every member whose tags may have moved gets
// them back on its old volume (and off the new one). It runs in a context
// that survives the workflow's cancellation.
func (r *volumeRestore) rollBack(cause error) error {
	var a *activities.Volumes
	r.step("rolling back")
	dctx, _ := workflow.NewDisconnectedContext(r.ctx)
	dctx = workflow.WithActivityOptions(dctx, ec2ActivityOptions(max(r.in.MaxAttempts, 20)))
	var failed []string
	rolled := 0
	for _, run := range r.runs {
		if !run.swapBegan {
			continue
		}
		err := workflow.ExecuteActivity(dctx, a.EBSRollBackTags, activities.RollBackTagsInput{
			Region: r.in.Region, Member: run.plan, NewVolumeID: run.newVolume, OldTags: run.oldTags,
		}).Get(dctx, nil)
		if err != nil {
			failed = append(failed, run.plan.Key()+": "+err.Error())
			r.member(run, "failed", "roll back: "+err.Error())
			continue
		}
		run.st.OldVolumeOutcome = "kept: tags restored"
		r.member(run, "rolled-back", cause.Error())
		rolled++
	}
	r.rep.RolledBack = rolled > 0 && len(failed) == 0
	if len(failed) > 0 {
		cause = fmt.Errorf("%w; ROLL BACK FAILED, check these members' tags by hand: %s", cause, strings.Join(failed, "; "))
	}
	return r.fail(temporal.NewNonRetryableApplicationError(cause.Error(), ErrTypeRestoreFailed, cause))
}

// waitEtcd waits until each etcd cluster given in verify answers with all
// the members its volumes' tags list.
func (r *volumeRestore) waitEtcd(timeout time.Duration) error {
	var a *activities.Volumes
	wctx := workflow.WithActivityOptions(r.ctx, ec2WaitActivityOptions(r.in.MaxAttempts, timeout))
	r.rep.EtcdMembers = map[string]int{}
	for _, ec := range volumeEtcdOrder(r.verify) {
		want := 0
		for _, m := range r.plan.Members {
			if m.EtcdCluster == ec {
				want = len(m.Etcd.Members)
			}
		}
		if want == 0 {
			continue
		}
		var got int
		if err := workflow.ExecuteActivity(wctx, a.EBSWaitEtcd, activities.WaitEtcdInput{
			Etcd: r.verify[ec], Members: want,
		}).Get(r.ctx, &got); err != nil {
			return fmt.Errorf("etcd %s: %w", ec, err)
		}
		r.rep.EtcdMembers[ec] = got
	}
	return nil
}

// volumeEtcdOrder lists the etcd clusters of a map in a fixed order.
func volumeEtcdOrder[V any](m map[string]V) []string {
	var out []string
	for _, ec := range EtcdClusters {
		if _, ok := m[ec]; ok {
			out = append(out, ec)
		}
	}
	return out
}

// cleanUp records what became of each old volume and, with oldVolumes
// delete, deletes those that are detached.
func (r *volumeRestore) cleanUp() {
	var a *activities.Volumes
	for _, run := range r.runs {
		switch {
		case run.plan.OldVolume == nil:
			run.st.OldVolumeOutcome = "none: the member had no volume"
		case r.plan.OldVolumes != ebs.OldVolumesDelete:
			run.st.OldVolumeOutcome = "untagged"
		default:
			var out activities.DeleteOutcome
			err := workflow.ExecuteActivity(r.actx, a.EBSDeleteOldVolume, activities.DeleteVolumeInput{
				Region: r.in.Region, VolumeID: run.plan.OldVolume.ID, ReplacedBy: run.newVolume,
			}).Get(r.ctx, &out)
			switch {
			case err != nil:
				run.st.OldVolumeOutcome = "kept (untagged): delete failed: " + err.Error()
			case out.Deleted:
				run.st.OldVolumeOutcome = "deleted"
			default:
				run.st.OldVolumeOutcome = "kept (untagged): " + out.Reason
			}
		}
	}
}

// volumeSelection is the validated input.
type volumeSelection struct {
	etcdClusters        []string
	selection           ebs.Selection
	restart, oldVolumes string
}

// resolve validates the input (pure checks) and applies the defaults.
func (r *volumeRestore) resolve() (volumeSelection, time.Duration, time.Duration, error) {
	in := r.in
	var s volumeSelection
	if err := checkCluster(in.Cluster); err != nil {
		return s, 0, 0, err
	}
	if err := checkEC2Region(in.Region); err != nil {
		return s, 0, 0, err
	}
	if in.StateStore == "" {
		return s, 0, 0, invalid("stateStore", "", "give the kops state store (as in KOPS_STATE_STORE, e.g. s3://my.clusters): the cluster spec says which volumes are encrypted")
	}
	if _, err := backupstore.ParseURL(in.StateStore); err != nil {
		return s, 0, 0, invalid("stateStore", in.StateStore, "use s3://bucket[/prefix] or file:///abs/path")
	}
	ecs, err := volumeEtcdClusters(in.EtcdClusters)
	if err != nil {
		return s, 0, 0, err
	}
	s.etcdClusters = ecs
	for _, m := range in.Members {
		if m == "" || strings.ContainsAny(m, "/, ") {
			return s, 0, 0, invalid("members", m, "give etcd member names as in the cluster spec, e.g. a or us-east-1a")
		}
	}
	chosen := 0
	for _, set := range []bool{in.SnapshotSet != "", len(in.SnapshotIDs) > 0, in.At != ""} {
		if set {
			chosen++
		}
	}
	if chosen > 1 {
		return s, 0, 0, invalid("snapshotSet", in.SnapshotSet, "give at most one of snapshotSet, snapshotIds and at")
	}
	s.selection = ebs.Selection{Set: in.SnapshotSet, SnapshotIDs: in.SnapshotIDs}
	for _, id := range in.SnapshotIDs {
		if !strings.HasPrefix(id, "snap-") {
			return s, 0, 0, invalid("snapshotIds", id, "give EBS snapshot ids such as snap-0123456789abcdef0")
		}
	}
	if in.At != "" {
		t, err := time.Parse(time.RFC3339, in.At)
		if err != nil {
			return s, 0, 0, invalid("at", in.At, "give an RFC 3339 time such as 2026-11-21T22:00:00Z")
		}
		s.selection.At = t.UTC()
	}
	s.restart = volumeDefault(in.Restart, ebs.RestartReboot)
	if !slices.Contains([]string{ebs.RestartReboot, ebs.RestartStopStart, ebs.RestartNone}, s.restart) {
		return s, 0, 0, invalid("restart", in.Restart, `use "reboot", "stop-start" or "none"`)
	}
	s.oldVolumes = volumeDefault(in.OldVolumes, ebs.OldVolumesUntag)
	if s.oldVolumes != ebs.OldVolumesUntag && s.oldVolumes != ebs.OldVolumesDelete {
		return s, 0, 0, invalid("oldVolumes", in.OldVolumes, `use "untag" (keep them, without kops tags) or "delete" (once detached)`)
	}
	approval := 24 * time.Hour
	if err := setDuration("approvalTimeout", in.ApprovalTimeout, &approval); err != nil {
		return s, 0, 0, err
	}
	verify := 15 * time.Minute
	if v := in.Verify; v != nil {
		if err := setDuration("verify.timeout", v.Timeout, &verify); err != nil {
			return s, 0, 0, err
		}
		r.verify = map[string]etcdconn.Config{}
		for _, ec := range ecs {
			eps := v.MainEndpoints
			if ec == "events" {
				eps = v.EventsEndpoints
			}
			if len(eps) > 0 {
				r.verify[ec] = etcdconn.Config{Endpoints: eps, CACert: v.CACert, Cert: v.Cert, Key: v.Key}
			}
		}
		if len(r.verify) == 0 {
			return s, 0, 0, invalid("verify.mainEndpoints", "", "give the etcd client URLs to check after the restart (main :4001, events :4002), or leave verify out")
		}
	}
	return s, approval, verify, nil
}

func volumeDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
