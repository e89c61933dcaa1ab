package workflows

import "go.temporal.io/sdk/workflow"

// forBoth runs child for main and events in parallel, as child workflows
// <this id>/main and <this id>/events, and waits for both: one failing
// does not stop the other. It returns each one's result (absent when it
// failed) and the first error.
func forBoth[I, R any](ctx workflow.Context, child any, input func(etcdCluster string) I) (map[string]*R, error) {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	futures := map[string]workflow.ChildWorkflowFuture{}
	for _, ec := range EtcdClusters {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "/" + ec})
		futures[ec] = workflow.ExecuteChildWorkflow(cctx, child, input(ec))
	}
	results := map[string]*R{}
	var firstErr error
	for _, ec := range EtcdClusters {
		var r R
		if err := futures[ec].Get(ctx, &r); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		results[ec] = &r
	}
	return results, firstErr
}
