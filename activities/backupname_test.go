package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// nameStores are the stores the name reservation is checked on: a file://
// store and a real S3 server (gofakes3), each empty.
func nameStores(t *testing.T) map[string]backupstore.Store {
	srv := s3test.StartGoFakeS3(t, "names")
	srv.Setenv(t)
	stores := map[string]backupstore.Store{}
	for kind, url := range map[string]string{
		"file": "file://" + t.TempDir() + "/c.example.com/backups/etcd/main",
		"s3":   "s3://names/c.example.com/backups/etcd/main",
	} {
		s, err := backupstore.Open(context.Background(), url, backupstore.Options{})
		require.NoError(t, err)
		stores[kind] = s
	}
	return stores
}

var sameSecond = time.Date(2026, 11, 30, 7, 15, 0, 0, time.UTC)

// TestBackupsOfOneSecondGetTheirOwnNames: eight runs reserving at once in
// one second get eight names, each past what is stored; a run asking again (its
// activity retried) gets the name it has, unless that one is finalized;
// names something else is stored under are skipped.
func TestBackupsOfOneSecondGetTheirOwnNames(t *testing.T) {
	for kind, store := range nameStores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			// etcd-manager's own backup, and an upload without a meta, of
			// the same second.
			for _, key := range []string{"2026-11-30T07:15:00Z-000001/" + etcdmanager.MetaFile, "2026-11-30T07:15:00Z-000002/" + etcdmanager.DataFile} {
				_, err := store.Put(ctx, key, strings.NewReader("x"), backupstore.PutOptions{})
				require.NoError(t, err)
			}

			const runs = 8
			names := make([]string, runs)
			errs := make([]error, runs)
			var wg sync.WaitGroup
			for i := range runs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					names[i], errs[i] = reserveNameFor(ctx, store, sameSecond.Add(300*time.Millisecond), run(i), "")
				}()
			}
			wg.Wait()
			seen := map[string]int{}
			for i := range runs {
				require.NoError(t, errs[i])
				_, seq, ok := etcdmanager.ParseBackupName(names[i])
				require.True(t, ok, names[i])
				require.GreaterOrEqual(t, seq, 3, "took the name of what is stored")
				if j, dup := seen[names[i]]; dup {
					t.Fatalf("runs %d and %d both got %s", j, i, names[i])
				}
				seen[names[i]] = i
				r, err := readReservation(ctx, store, names[i])
				require.NoError(t, err)
				require.True(t, r.sameOwner(run(i)), "%s is reserved for %v, not run %d", names[i], r, i)
			}
			require.Len(t, seen, runs)

			again, err := reserveNameFor(ctx, store, sameSecond, run(3), "")
			require.NoError(t, err)
			require.Equal(t, names[3], again, "a retried reservation keeps its name")

			_, err = store.Put(ctx, names[3]+"/"+etcdmanager.MetaFile, strings.NewReader("x"), backupstore.PutOptions{})
			require.NoError(t, err)
			next, err := reserveNameFor(ctx, store, sameSecond, run(3), "")
			require.NoError(t, err)
			require.Equal(t, "2026-11-30T07:15:00Z-000011", next, "a finalized name is never handed out again")
		})
	}
}

func run(i int) reservation {
	return reservation{WorkflowID: fmt.Sprintf("backup/c.example.com/main/%d", i), RunID: fmt.Sprintf("run-%d", i)}
}

// TestFinalizeAndDiscardLeaveAnothersNameAlone: the activities, run as
// the test environment's workflow run, meet a name another run holds. Finalize
// refuses, naming the holder, whether the other has only reserved the name
// or already finalized a backup under it; Discard removes nothing of it,
// and removes the run's own reservation.
func TestFinalizeAndDiscardLeaveAnothersNameAlone(t *testing.T) {
	for kind, store := range nameStores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx, url := context.Background(), store.URL()
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			b := &Backup{}
			env.RegisterActivity(b)

			other := run(7)
			taken, err := reserveNameFor(ctx, store, sameSecond, other, "")
			require.NoError(t, err)
			data := "not a snapshot, and not this backup's"
			_, err = store.Put(ctx, taken+"/"+etcdmanager.DataFile, strings.NewReader(data), backupstore.PutOptions{})
			require.NoError(t, err)

			upload := UploadResult{}
			upload.GzipSHA256, upload.GzipBytes, upload.EtcdVersion = strings.Repeat("ab", 32), 123, "3.5.9"
			finalize := func(name string) error {
				_, err := env.ExecuteActivity(b.FinalizeBackup, FinalizeInput{
					Store: url, Name: name, Upload: upload, MemberCount: 1, WorkflowID: "mine", Timestamp: sameSecond,
				})
				return err
			}
			err = finalize(taken)
			requireNameTaken(t, err, taken, other.WorkflowID)

			_, err = env.ExecuteActivity(b.DiscardIncomplete, DiscardInput{Store: url, Name: taken})
			require.NoError(t, err)
			objs, err := store.List(ctx, taken+"/")
			require.NoError(t, err)
			require.Len(t, objs, 2, "the other run's reservation and upload are still there")

			// The other run finalizes; this one then finds a finalized
			// backup with other facts under the name.
			facts, _ := json.Marshal(Facts{Backup: taken, WorkflowID: other.WorkflowID, GzipSHA256: strings.Repeat("cd", 32), GzipBytes: 456})
			_, err = store.Put(ctx, taken+"/"+etcdmanager.KopsdrFile, strings.NewReader(string(facts)), backupstore.PutOptions{})
			require.NoError(t, err)
			_, err = store.Put(ctx, taken+"/"+etcdmanager.MetaFile, strings.NewReader("{}"), backupstore.PutOptions{})
			require.NoError(t, err)
			requireNameTaken(t, finalize(taken), taken, other.WorkflowID)

			// Its own name: the test environment's run reserves it.
			v, err := env.ExecuteActivity(b.PrepareBackup, PrepareInput{Store: url, Now: sameSecond})
			require.NoError(t, err)
			var prep PrepareResult
			require.NoError(t, v.Get(&prep))
			require.NotEqual(t, taken, prep.Name)
			_, err = env.ExecuteActivity(b.DiscardIncomplete, DiscardInput{Store: url, Name: prep.Name})
			require.NoError(t, err)
			objs, err = store.List(ctx, prep.Name+"/")
			require.NoError(t, err)
			require.Empty(t, objs, "its own reservation is discarded")
		})
	}
}

func requireNameTaken(t *testing.T, err error, name, holder string) {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, ErrTypeBackupNameTaken, ae.Type(), err.Error())
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), name)
	require.Contains(t, err.Error(), holder)
}
