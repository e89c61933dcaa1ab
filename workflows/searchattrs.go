package workflows

import (
	"sync/atomic"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/internal/searchattr"
)

// searchAttrsRegistered is the worker's finding, at start, that the
// namespace has kopsdr's search attributes. Upserting one the server does
// not know fails the workflow task over and over, so a worker that found
// them missing runs the workflows without them. It is a process-wide
// setting because workflow functions are registered as plain functions.
var searchAttrsRegistered atomic.Bool

// SetSearchAttributesRegistered tells the workflows of this process whether
// to set their search attributes (see searchAttrsRegistered).
func SetSearchAttributesRegistered(ok bool) { searchAttrsRegistered.Store(ok) }

// searchAttrs sets a run's KopsCluster, EtcdCluster and BackupName.
// Whether they are set is recorded once per run (a side effect), so a
// replay on a worker that decided otherwise takes the same path; runs
// started before this existed replay without it (GetVersion).
type searchAttrs struct{ on bool }

func newSearchAttrs(ctx workflow.Context) *searchAttrs {
	if workflow.GetVersion(ctx, "searchAttributes", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return &searchAttrs{}
	}
	var on bool
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return searchAttrsRegistered.Load() }).Get(&on)
	return &searchAttrs{on: on}
}

// set upserts the non-empty values. A failed upsert is logged, never the
// workflow's failure: the attributes only help find runs.
func (s *searchAttrs) set(ctx workflow.Context, cluster, etcdCluster, backup string) {
	if !s.on {
		return
	}
	var updates []temporal.SearchAttributeUpdate
	if cluster != "" {
		updates = append(updates, searchattr.KopsCluster.ValueSet(cluster))
	}
	if etcdCluster != "" {
		updates = append(updates, searchattr.EtcdCluster.ValueSet(etcdCluster))
	}
	if backup != "" {
		updates = append(updates, searchattr.BackupName.ValueSet(backup))
	}
	if len(updates) == 0 {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("setting search attributes", "error", err)
	}
}
