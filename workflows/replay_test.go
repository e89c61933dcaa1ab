package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/kopsdr/kopsdr/worker/registry"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestReplayRecordedHistories replays every history recorded from real runs
// (testdata/histories, written by `make record-histories`) against today's
// workflow code. A change that would break a workflow in flight, such as a
// restore waiting a day for approval, fails here: guard it with
// workflow.GetVersion, keep the old path, and record a new history.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories: run make record-histories")
	types := map[string]bool{}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			registry.RegisterWorkflows(r)
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			h, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			require.NoError(t, err)
			id, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".id")
			require.NoError(t, err, "the workflow id beside the history")
			started := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
			types[started.GetWorkflowType().GetName()] = true
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: strings.TrimSpace(string(id)), RunID: started.GetOriginalExecutionRunId()},
			}))
		})
	}
	for _, typ := range []string{api.WorkflowEtcdBackup, api.WorkflowClusterBackup, api.WorkflowEtcdManagerRestore,
		api.WorkflowVolumeSnapshot, api.WorkflowVolumeRestore, api.WorkflowRestoreDrill, api.WorkflowClusterDrill,
		api.WorkflowChangeCapture, api.WorkflowMakeBackup} {
		require.True(t, types[typ], "no recorded history of %s", typ)
	}
}
