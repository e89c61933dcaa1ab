package workflows

import (
	"os"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// A restore recorded by the code before the restart baseline (no version
// marker, RestartEtcdManagers right after the commands; recorded with stub
// activities on a real Temporal server from commit ba90507) must replay on
// today's code: workflow.GetVersion("restart-baseline") keeps such
// histories on the old path, so a worker upgraded while restores are in
// flight does not break them. Without the version check the replay fails:
// today's code would schedule RecordBaseline where the history has
// RestartEtcdManagers.
func TestReplayRestoreRecordedBeforeBaseline(t *testing.T) {
	f, err := os.Open("testdata/etcdmanagerrestore-before-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflow(EtcdManagerRestore)
	// The restore checks its own workflow id, so replay under the original.
	err = r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: "restore/c.example.com", RunID: "recorded"},
	})
	if err != nil {
		t.Fatal(err)
	}
}
