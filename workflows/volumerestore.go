package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// volumeRestore is one VolumeRestore run's state.
type volumeRestore struct {
	in     VolumeRestoreInput
	ctx    workflow.Context
	actx   workflow.Context // EC2 activity options
	rep    *VolumeRestoreReport
	gate   *approvalGate
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
	if err := workflow.SetQueryHandler(ctx, api.QueryStatus, func() (VolumeRestoreReport, error) { return *r.rep, nil }); err != nil {
		return nil, err
	}
	gate, err := newApprovalGate(ctx, in.DryRun, func() string { return r.rep.Step }, func(d *api.Decision, deadline time.Time) {
		r.rep.Approval, r.rep.ApprovalDeadline, r.rep.UpdatedAt = d, deadline, r.now()
	})
	if err != nil {
		return nil, err
	}
	r.gate = gate
	sel, approvalTimeout, verifyTimeout, err := r.resolve()
	if err != nil {
		return nil, r.fail(invalidInput(err))
	}
	newSearchAttrs(ctx).set(ctx, in.Cluster, onlyOne(sel.etcdClusters), "")
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
	r.rep.Plan = volumePlan(r.plan)
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

// awaitApproval waits for approve or reject unless the input approved up
// front. Until approved nothing has been created, so a rejection or the
// timeout simply ends the restore.
func (r *volumeRestore) awaitApproval(timeout time.Duration) error {
	if !r.in.Approve {
		r.step(api.StepAwaitingApproval)
	}
	return r.gate.await(r.ctx, r.in.Approve, timeout)
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

// resolve validates the input (api's checks) and applies the defaults.
func (r *volumeRestore) resolve() (volumeSelection, time.Duration, time.Duration, error) {
	in := r.in
	var s volumeSelection
	if err := in.Validate(); err != nil {
		return s, 0, 0, err
	}
	s.etcdClusters, _ = api.EtcdClusterList("etcdClusters", in.EtcdClusters)
	s.selection = ebs.Selection{Set: in.SnapshotSet, SnapshotIDs: in.SnapshotIDs}
	if in.At != "" {
		s.selection.At, _ = api.CheckTime("at", in.At)
	}
	s.restart, s.oldVolumes = in.RestartMode(), in.OldVolumesMode()
	approval, _ := api.Duration("approvalTimeout", in.ApprovalTimeout, api.DefaultApprovalTimeout)
	verify := api.DefaultVerifyTimeout
	if v := in.Verify; v != nil {
		verify, _ = api.Duration("verify.timeout", v.Timeout, api.DefaultVerifyTimeout)
		r.verify = map[string]etcdconn.Config{}
		for _, ec := range s.etcdClusters {
			if eps := v.Endpoints(ec); len(eps) > 0 {
				r.verify[ec] = etcdconn.Config{Endpoints: eps, CACert: v.CACert, Cert: v.Cert, Key: v.Key}
			}
		}
	}
	return s, approval, verify, nil
}

// volumePlan is the restore plan in the contract's terms.
func volumePlan(p ebs.RestorePlan) *api.VolumePlan {
	out := &api.VolumePlan{SnapshotSet: p.SnapshotSet, SetTime: p.SetTime, Restart: p.Restart, OldVolumes: p.OldVolumes,
		Instances: p.Instances, Warnings: p.Warnings, Members: []api.VolumePlanMember{}}
	for _, m := range p.Members {
		pm := api.VolumePlanMember{EtcdCluster: m.EtcdCluster, Member: m.Member, AvailabilityZone: m.AvailabilityZone,
			Snapshot: m.Snapshot.ID, SnapshotTime: m.Snapshot.StartTime, Instance: m.InstanceID,
			VolumeType: m.New.Spec.Type, SizeGiB: m.New.Spec.Size, Encryption: m.Encryption}
		if m.OldVolume != nil {
			pm.OldVolume = m.OldVolume.ID
		}
		out.Members = append(out.Members, pm)
	}
	return out
}
