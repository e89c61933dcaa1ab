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

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/stack"
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
	require.Eventually(t, func() bool { return strings.Contains(kopsdr("status", id), "waiting for approval") }, time.Minute, 500*time.Millisecond)
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
	ctx := stack.Context(t, 4*time.Minute)
	var res workflows.EtcdManagerRestoreResult
	require.NoError(t, f.tp.Client.GetWorkflow(ctx, id, "").Get(ctx, &res))
	require.Equal(t, "carol", res.ApprovedBy.By)
	require.ElementsMatch(t, leaseKeys(masters.OldMasterIPs), res.LeasesDeleted)
	require.Nil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"))
	require.Contains(t, kopsdr("status", id), "COMPLETED")
}

// TestRestoreWorkerKilledAtEachStep kills the worker process (SIGKILL) as
// soon as each step of the restore is seen to start, so the step's activity
// is lost mid-way, and starts a fresh worker. The restore must end with
// exactly one command per cluster and one restart per container.
func TestRestoreWorkerKilledAtEachStep(t *testing.T) {
	bin := stack.Binaries(t)
	f := newRestoreFixture(t, false)
	ctx := stack.Context(t, 10*time.Minute)
	commands := watchCommands(t, ctx, f)
	startWorker := func() *stack.Proc {
		w := stack.StartProc(t, filepath.Join(bin, "kopsdr-worker"), nil, f.tp.ConnFlags()...)
		w.WaitOutput(t, "kopsdr worker started", time.Minute)
		return w
	}
	w := startWorker()
	in := f.input()
	in.Approve = true
	run := f.start(t, ctx, in)

	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, nil) }()
	killed := map[string]bool{}
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			// Steps of a few milliseconds (writing the commands) may pass
			// between two looks; the others are each interrupted once.
			t.Logf("worker killed during %d steps: %v", len(killed), killed)
			require.GreaterOrEqual(t, len(killed), 3)
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
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		step := f.status(qctx, run).Step
		cancel()
		if step == "" || killed[step] || step == "approval" || step == "done" {
			continue
		}
		killed[step] = true
		t.Logf("killing the worker during %q", step)
		w.Kill()
		w = startWorker()
	}
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
