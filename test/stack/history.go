package stack

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// RecordEnv names the variable that makes RecordHistory write: the replay
// tests' histories are recorded on purpose (make record-histories), never
// as a side effect of an ordinary test run.
const RecordEnv = "KOPSDR_RECORD_HISTORIES"

// RecordHistory saves a workflow's history as it is now (finished or still
// waiting) to workflows/testdata/histories/<name>.json, in the JSON form
// `temporal workflow show --output json` writes, and its workflow id to
// <name>.id (the history does not hold it, and the workflows check their
// ids), when RecordEnv is set. workflows' replay test replays every such
// file against the current code.
func RecordHistory(t testing.TB, ctx context.Context, c client.Client, workflowID, runID, name string) {
	t.Helper()
	if os.Getenv(RecordEnv) == "" {
		return
	}
	h := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", workflowID, err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	_, here, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(here), "..", "..", "workflows", "testdata", "histories")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".id"), []byte(workflowID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded the history of %s (%d events) as %s.json", workflowID, len(h.Events), name)
}
