package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// TestRestoreFromCLI is the operator's path: kopsdr-worker and kopsdr as
// processes, the restore started with the CLI, followed with status,
// approved with approve.
func TestRestoreFromCLI(t *testing.T) {
	bin := stack.Binaries(t)
	f := newRestoreFixture(t, false)
	w := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), nil, f.tp.ConnFlags()...)
	w.WaitOutput(t, "kopsdr worker started", time.Minute)
	kopsdr := func(args ...string) string {
		t.Helper()
		out, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), nil, append(f.tp.ConnFlags(), args...)...)
		require.NoError(t, err, "kopsdr %v: %s", args, stderr)
		return out
	}
	args := []string{"restore", "etcd-manager", "--cluster", f.c.Name,
		"--main-backup-store", f.c.MainStore, "--events-backup-store", f.c.EventsStore,
		"--main-endpoints", strings.Join(f.c.MainEndpoints, ","), "--events-endpoints", strings.Join(f.c.EventsEndpoints, ","),
		"--cacert", f.c.CACert, "--cert", f.c.ClientCert, "--key", f.c.ClientKey, "--restore-timeout", "3m"}
	for _, m := range f.c.Masters {
		args = append(args, "--master", "name="+m.Node+",docker="+f.c.DockerHost+",ip="+m.IP)
	}
	require.Contains(t, kopsdr(args...), "kopsdr approve restore/"+f.c.Name)

	id := workflows.RestoreWorkflowID(f.c.Name)
	require.Eventually(t, func() bool { return strings.Contains(kopsdr("status", id), "awaiting approval") }, time.Minute, 500*time.Millisecond)
	var st struct {
		Status workflows.RestoreStatus `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(kopsdr("status", id, "-o", "json")), &st))
	require.Equal(t, f.backups[masters.Main], st.Status.Plan.Backups[0].Backup)
	// A second restore is refused with a message that says what to do.
	_, stderr, err := stack.Run(t, filepath.Join(bin, "kopsdr"), nil, append(f.tp.ConnFlags(), args...)...)
	require.Error(t, err)
	require.Contains(t, stderr, "already running")

	kopsdr("approve", id, "--by", "carol", "--comment", "drill")
	ctx := testenv.Context(t, 4*time.Minute)
	var res workflows.EtcdManagerRestoreResult
	require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, id, ""), &res))
	require.Equal(t, "carol", res.Approval.By)
	require.ElementsMatch(t, leaseKeys(masters.OldMasterIPs), res.LeasesDeleted)
	require.Nil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"))
	require.Contains(t, kopsdr("status", id), ": completed")
}

// TestRestoreWorkerKilledAfterEachStep kills the worker process (SIGKILL)
// each time the workflow's history records a finished step (an activity or
// the safety-backup children) and starts a fresh one; whatever the old
// worker had begun next is lost with it. The restore must still end with
// exactly one command per cluster and one restart per container.
func TestRestoreWorkerKilledAfterEachStep(t *testing.T) {
	bin := stack.Binaries(t)
	f := newRestoreFixture(t, false)
	ctx := testenv.Context(t, 10*time.Minute)
	commands := watchCommands(t, ctx, f)
	startWorker := func() *stack.Proc { return startWorkerProc(t, bin, f.tp) }
	w := startWorker()
	in := f.input()
	in.Approve = true
	run := f.start(t, ctx, in)

	done := make(chan error, 1)
	go func() { done <- temporalconn.Await(ctx, run, nil) }()
	kills, killCount := 0, 0
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			// Steps that finish together (the two safety backups, the two
			// commands, the two waits) get one kill between them, and the
			// last steps may finish before a look; pre-flight, the safety
			// backups and the restart are each seconds apart.
			t.Logf("killed the worker %d times", killCount)
			require.GreaterOrEqual(t, killCount, 3)
			for ec, names := range commands() {
				require.Len(t, names, 1, "exactly one restore command for %s: %v", ec, names)
			}
			for _, m := range f.c.Masters {
				require.Equal(t, 1, f.c.RestartCount(t, m.MainContainer), m.MainContainer)
				require.Equal(t, 1, f.c.RestartCount(t, m.EventsContainer), m.EventsContainer)
			}
			require.Nil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"))
			return
		case <-time.After(100 * time.Millisecond):
		}
		finished := finishedSteps(ctx, f.tp.Client, run)
		if finished < 0 {
			t.Log("history unreadable")
		}
		if finished > kills {
			kills = finished
			killCount++
			t.Logf("killing the worker after %d finished steps", finished)
			w.Kill()
			w = startWorker()
		}
	}
}

// startWorkerProc runs the kopsdr-worker binary against tp until the test
// ends (or the test kills it), once it says it has started.
func startWorkerProc(t *testing.T, bin string, tp *stack.Temporal) *stack.Proc {
	w := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), nil, tp.ConnFlags()...)
	w.WaitOutput(t, "kopsdr worker started", time.Minute)
	return w
}

// finishedSteps counts the activities and child workflows the history
// records as completed.
func finishedSteps(ctx context.Context, c client.Client, run client.WorkflowRun) int {
	n := 0
	it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return -1
		}
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
			n++
		}
	}
	return n
}

// watchCommands records every restore command that appears in the stores
// while the test runs; it returns the names seen per etcd cluster.
func watchCommands(t *testing.T, ctx context.Context, f *restoreFixture) func() map[string][]string {
	var mu sync.Mutex
	seen := map[string][]string{}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	for _, ec := range []string{masters.Main, masters.Events} {
		store := f.c.Store(t, ec)
		go func() {
			for ctx.Err() == nil {
				cmds, _ := etcdmanager.ListCommands(ctx, store)
				mu.Lock()
				for _, c := range cmds {
					if !slices.Contains(seen[ec], c.Name) {
						seen[ec] = append(seen[ec], c.Name)
					}
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	return func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]string{}
		for k, v := range seen {
			out[k] = slices.Clone(v)
		}
		return out
	}
}
