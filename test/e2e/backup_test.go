// Package e2e runs kopsdr end to end against real components: an in-process
// Temporal server, embedded etcd clusters with TLS, S3 servers (gofakes3 and
// versitygw), the machine's Docker engine and kopsdr's own binaries. It is
// the one heavy test package: the Temporal server links into it once.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

const bucket = "kops-state"

// kopsCluster is one kops cluster's etcd: main and events, each 3 members
// with TLS, and some keys that look like Kubernetes objects.
type kopsCluster struct {
	name         string
	main, events *etcdtest.Cluster
}

// startKopsCluster starts main and events with one CA and client
// certificate between them, as kops sets them up.
func startKopsCluster(t *testing.T, members int) *kopsCluster {
	certs, err := etcdtest.GenerateCerts(t.TempDir())
	require.NoError(t, err)
	k := &kopsCluster{name: "test.my.clusters",
		main:   etcdtest.Start(t, members, etcdtest.WithCerts(certs)),
		events: etcdtest.Start(t, members, etcdtest.WithCerts(certs))}
	etcdtest.Fill(t, k.main.Client(t), "/registry/pods/default/", 200, 2048)
	etcdtest.Fill(t, k.events.Client(t), "/registry/events/default/", 100, 1024)
	return k
}

func (k *kopsCluster) backupInput(stateStore string) workflows.ClusterBackupInput {
	c := k.main.ConnConfig()
	return workflows.ClusterBackupInput{
		Cluster: k.name, StateStore: stateStore,
		Main:          workflows.EtcdTarget{Endpoints: k.main.Endpoints},
		Events:        workflows.EtcdTarget{Endpoints: k.events.Endpoints},
		BackupOptions: tlsOf(c),
	}
}

// tlsOf is the etcd TLS part of a backup input.
func tlsOf(c etcdconn.Config) workflows.BackupOptions {
	return workflows.BackupOptions{CACert: c.CACert, Cert: c.Cert, Key: c.Key}
}

func TestClusterBackupWritesEtcdManagerFormat(t *testing.T) {
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	s3.Setenv(t)
	k := startKopsCluster(t, 3)
	ctx := testenv.Context(t, 3*time.Minute)

	in := k.backupInput("s3://" + bucket)
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "backup/" + k.name, TaskQueue: temporalconn.TaskQueue}, workflows.ClusterBackup, in)
	require.NoError(t, err)
	var res workflows.ClusterBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))

	for _, ec := range []struct {
		name    string
		res     *workflows.EtcdBackupResult
		cluster *etcdtest.Cluster
		prefix  string
	}{{"main", res.Main, k.main, "/registry/pods/"}, {"events", res.Events, k.events, "/registry/events/"}} {
		t.Run(ec.name, func(t *testing.T) {
			require.NotNil(t, ec.res)
			storeURL := fmt.Sprintf("s3://%s/%s/backups/etcd/%s", bucket, k.name, ec.name)
			require.Equal(t, storeURL, ec.res.Store)
			store, err := backupstore.Open(ctx, storeURL, backupstore.Options{})
			require.NoError(t, err)
			checkBackupFormat(t, ctx, store, ec.res)
			raw := downloadSnapshot(t, ctx, store, ec.res.Backup)
			restored := etcdtest.StartFromSnapshot(t, raw)
			requireSameKeys(t, ctx, ec.cluster, restored, ec.prefix)
		})
	}
}

// checkBackupFormat byte-checks a backup against docs/formats.md.
func checkBackupFormat(t *testing.T, ctx context.Context, store backupstore.Store, res *workflows.EtcdBackupResult) {
	t.Helper()
	names, err := etcdmanager.ListBackups(ctx, store)
	require.NoError(t, err)
	require.Equal(t, []string{res.Backup}, names)
	ts, seq, ok := etcdmanager.ParseBackupName(res.Backup)
	require.True(t, ok, "name %q is RFC3339Z-NNNNNN", res.Backup)
	require.Equal(t, 1, seq)

	objs, err := store.List(ctx, res.Backup+"/")
	require.NoError(t, err)
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	require.ElementsMatch(t, []string{res.Backup + "/etcd.backup.gz", res.Backup + "/_etcd_backup.meta", res.Backup + "/kopsdr.json",
		res.Backup + "/kopsdr-reservation.json"}, keys)

	meta := readAll(t, ctx, store, res.Backup+"/_etcd_backup.meta")
	want := fmt.Sprintf(`{"etcdVersion": %q, "timestamp": "%d", "clusterSpec": {"memberCount": 3, "etcdVersion": %q}}`,
		res.EtcdVersion, ts.Unix(), res.EtcdVersion)
	require.Equal(t, want, string(meta))
	_, err = etcdmanager.ParseBackupInfo(meta)
	require.NoError(t, err)

	var facts map[string]any
	require.NoError(t, json.Unmarshal(readAll(t, ctx, store, res.Backup+"/kopsdr.json"), &facts))
	require.Equal(t, res.SHA256, facts["gzipSha256"])
	require.Equal(t, res.RawSHA256, facts["rawSha256"])
	require.EqualValues(t, res.Revision, facts["revision"])
	var reserved map[string]any
	require.NoError(t, json.Unmarshal(readAll(t, ctx, store, res.Backup+"/kopsdr-reservation.json"), &reserved))
	require.Equal(t, facts["workflowId"], reserved["workflowId"], "the name was reserved for the run that took the backup")
	require.NotEmpty(t, reserved["runId"])

	data := readAll(t, ctx, store, res.Backup+"/etcd.backup.gz")
	require.EqualValues(t, res.Bytes, len(data))
	v, err := snapshot.VerifyGzip(bytes.NewReader(data))
	require.NoError(t, err, "gzip decompresses to a snapshot whose sha256 trailer is valid")
	require.Equal(t, res.SHA256, v.GzipSHA256)
	require.Equal(t, res.RawSHA256, v.RawSHA256)
	require.Positive(t, res.Revision)
	require.Less(t, res.Bytes, res.RawBytes/2, "Kubernetes-like data is compressed")
}

func readAll(t *testing.T, ctx context.Context, store backupstore.Store, key string) []byte {
	t.Helper()
	rc, err := store.Get(ctx, key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

// downloadSnapshot writes the decompressed snapshot (trailer included) to a file.
func downloadSnapshot(t *testing.T, ctx context.Context, store backupstore.Store, name string) string {
	t.Helper()
	rc, err := store.Get(ctx, name+"/etcd.backup.gz")
	require.NoError(t, err)
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "snapshot.db")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = io.Copy(f, zr)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return path
}

// requireSameKeys checks every key under prefix in src has the same value in dst.
func requireSameKeys(t *testing.T, ctx context.Context, src, dst *etcdtest.Cluster, prefix string) {
	t.Helper()
	want, err := src.Client(t).Get(ctx, prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	got, err := dst.Client(t).Get(ctx, prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	require.NotZero(t, want.Count)
	require.Equal(t, want.Count, got.Count)
	for i := range want.Kvs {
		require.Equal(t, string(want.Kvs[i].Key), string(got.Kvs[i].Key))
		require.True(t, bytes.Equal(want.Kvs[i].Value, got.Kvs[i].Value), "value of %s", want.Kvs[i].Key)
	}
}

// TestBackupRemovesAbandonedFolders: the prune after a backup asks the real
// Temporal server about the runs that reserved day-old folders without a
// meta: it removes the folder of a run that has ended and keeps the one of
// a run still open. The reservations are written as docs/formats.md gives
// them.
func TestBackupRemovesAbandonedFolders(t *testing.T) {
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	k := startKopsCluster(t, 1)
	ctx := testenv.Context(t, 3*time.Minute)
	state := "file://" + t.TempDir() + "/state"
	dir := filepath.Join(strings.TrimPrefix(state, "file://"), k.name, "backups", "etcd", "main")

	// A run that has ended: a backup refused for its input.
	ended, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup,
		workflows.EtcdBackupInput{Cluster: k.name, EtcdCluster: "neither", StateStore: state})
	require.NoError(t, err)
	require.Error(t, temporalconn.Await(ctx, ended, nil))
	// A run still open: nobody polls its task queue.
	open, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "nobody-polls-this"}, workflows.EtcdBackup, workflows.EtcdBackupInput{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = tp.Client.TerminateWorkflow(context.Background(), open.GetID(), open.GetRunID(), "test over")
	})

	endedFolder, openFolder := "2026-11-20T10:00:00Z-000001", "2026-11-20T10:00:00Z-000002"
	twoDaysAgo := time.Now().Add(-48 * time.Hour)
	for folder, run := range map[string]client.WorkflowRun{endedFolder: ended, openFolder: open} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, folder), 0o755))
		reservation := fmt.Sprintf(`{"namespace":%q,"workflowId":%q,"runId":%q,"reservedAt":%q}`,
			tp.Namespace, run.GetID(), run.GetRunID(), twoDaysAgo.UTC().Format(time.RFC3339))
		for name, data := range map[string]string{etcdmanager.ReservationFile: reservation, etcdmanager.DataFile: "half a snapshot"} {
			path := filepath.Join(dir, folder, name)
			require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
			require.NoError(t, os.Chtimes(path, twoDaysAgo, twoDaysAgo))
		}
	}

	in := workflows.EtcdBackupInput{Cluster: k.name, EtcdCluster: "main", StateStore: state, Endpoints: k.main.Endpoints,
		BackupOptions: tlsOf(k.main.ConnConfig())}
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup, in)
	require.NoError(t, err)
	var res workflows.EtcdBackupResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	require.Equal(t, []string{endedFolder}, res.Abandoned)
	require.NoDirExists(t, filepath.Join(dir, endedFolder))
	require.FileExists(t, filepath.Join(dir, openFolder, etcdmanager.DataFile))
	require.FileExists(t, filepath.Join(dir, res.Backup, etcdmanager.MetaFile))
}
