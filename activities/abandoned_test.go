package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// testNamespace is the namespace of the test environment's workflow run.
const testNamespace = "default-test-namespace"

// runTable answers RunOpen from run id to open; a run it does not hold is
// a failed lookup.
type runTable map[string]bool

func (r runTable) RunOpen(_ context.Context, _, runID string) (bool, error) {
	open, ok := r[runID]
	if !ok {
		return false, errors.New("the server did not answer")
	}
	return open, nil
}

// TestAbandonedFoldersGoOnlyWhenNobodyCanWriteThem: the prune after a
// backup removes a folder without a meta once it is a day old and its
// reservation's run has ended, or it has none; it keeps the folders of
// open runs, of runs it cannot look up or tell, and everything younger.
func TestAbandonedFoldersGoOnlyWhenNobodyCanWriteThem(t *testing.T) {
	for kind, store := range nameStores(t) {
		t.Run(kind, func(t *testing.T) {
			url := store.URL()
			second := "2026-11-20T10:00:00Z-00000"
			folders := map[string]string{ // folder -> its reservation ("": none)
				second + "1": reservationJSON(t, reservation{Namespace: testNamespace, WorkflowID: "backup/a", RunID: "ended"}),
				second + "2": reservationJSON(t, reservation{Namespace: testNamespace, WorkflowID: "backup/b", RunID: "open"}),
				second + "3": reservationJSON(t, reservation{Namespace: testNamespace, WorkflowID: "backup/c", RunID: "unknown"}),
				second + "4": reservationJSON(t, reservation{Namespace: "elsewhere", WorkflowID: "backup/d", RunID: "ended"}),
				second + "5": reservationJSON(t, reservation{WorkflowID: "backup/e", RunID: "ended"}),
				second + "6": "", // etcd-manager's, or kopsdr's before it reserved names
				second + "7": reservationJSON(t, reservation{Nonce: "0123"}),
				second + "8": "{not json",
				// Larger than any reservation: refused by the read, as a
				// reservation under a KMS key the worker may not use is.
				second + "9": strings.Repeat(" ", 1<<20+1),
			}
			for name, r := range folders {
				put(t, store, name+"/"+etcdmanager.DataFile, "half a snapshot")
				if r != "" {
					put(t, store, name+"/"+etcdmanager.ReservationFile, r)
				}
			}
			finished := "2026-11-20T10:00:00Z-000010"
			put(t, store, finished+"/"+etcdmanager.DataFile, "a snapshot")
			put(t, store, finished+"/"+etcdmanager.MetaFile, "{}")

			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			b := &Backup{Runs: runTable{"ended": false, "open": true}}
			env.RegisterActivity(b)
			prune := func(now time.Time, dryRun bool) RetainAndPruneResult {
				t.Helper()
				v, err := env.ExecuteActivity(b.RetainAndPrune, RetainAndPruneInput{PruneInput: PruneInput{
					Store: url, Now: now, Retention: etcdmanager.DefaultRetention(), DryRun: dryRun,
				}})
				require.NoError(t, err)
				var res RetainAndPruneResult
				require.NoError(t, v.Get(&res))
				require.Empty(t, res.Pruned, "the one backup is the newest")
				return res
			}
			gone := []string{second + "1", second + "6", second + "7"}

			require.Empty(t, prune(time.Now().Add(time.Hour), false).Abandoned, "nothing is a day old yet")
			require.Equal(t, gone, prune(time.Now().Add(48*time.Hour), true).Abandoned)
			require.Len(t, folderNames(t, store), 10, "a dry run removes nothing")

			require.Equal(t, gone, prune(time.Now().Add(48*time.Hour), false).Abandoned)
			left := folderNames(t, store)
			for name := range folders {
				require.Equal(t, !slices.Contains(gone, name), left[name], name)
			}
			require.True(t, left[finished])
		})
	}
}

// TestReservationNamesItsNamespace: the run a reservation names can be
// looked up, namespace and all.
func TestReservationNamesItsNamespace(t *testing.T) {
	store := nameStores(t)["file"]
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	b := &Backup{}
	env.RegisterActivity(b)
	v, err := env.ExecuteActivity(b.PrepareBackup, PrepareInput{Store: store.URL(), Now: sameSecond})
	require.NoError(t, err)
	var prep PrepareResult
	require.NoError(t, v.Get(&prep))
	r, err := readReservation(context.Background(), store, prep.Name)
	require.NoError(t, err)
	require.Equal(t, testNamespace, r.Namespace)
	require.NotEmpty(t, r.WorkflowID)
	require.NotEmpty(t, r.RunID)
}

func reservationJSON(t *testing.T, r reservation) string {
	data, err := json.Marshal(r)
	require.NoError(t, err)
	return string(data)
}

func put(t *testing.T, store backupstore.Store, key, data string) {
	t.Helper()
	_, err := store.Put(context.Background(), key, strings.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
}

// folderNames are the top-level folders of store.
func folderNames(t *testing.T, store backupstore.Store) map[string]bool {
	objs, err := store.List(context.Background(), "")
	require.NoError(t, err)
	names := map[string]bool{}
	for _, o := range objs {
		name, _, _ := strings.Cut(o.Key, "/")
		names[name] = true
	}
	return names
}

// TestAbandonedFoldersGoAHundredAtATime: one prune removes at most
// maxAbandonedPerPrune folders; the next takes the rest.
func TestAbandonedFoldersGoAHundredAtATime(t *testing.T) {
	store := nameStores(t)["file"]
	for i := range maxAbandonedPerPrune + 1 {
		put(t, store, fmt.Sprintf("2026-11-20T10:00:00Z-%06d/%s", i+1, etcdmanager.DataFile), "half a snapshot")
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	b := &Backup{}
	env.RegisterActivity(b)
	prune := func() []string {
		v, err := env.ExecuteActivity(b.RetainAndPrune, RetainAndPruneInput{PruneInput: PruneInput{
			Store: store.URL(), Now: time.Now().Add(48 * time.Hour), Retention: etcdmanager.DefaultRetention(),
		}})
		require.NoError(t, err)
		var res RetainAndPruneResult
		require.NoError(t, v.Get(&res))
		return res.Abandoned
	}
	require.Len(t, prune(), maxAbandonedPerPrune)
	require.Equal(t, []string{fmt.Sprintf("2026-11-20T10:00:00Z-%06d", maxAbandonedPerPrune+1)}, prune())
	require.Empty(t, folderNames(t, store))
}
