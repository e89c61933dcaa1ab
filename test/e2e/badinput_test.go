package e2e

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
)

// TestBackupBadInput: each bad input ends the workflow with an error that
// names the field, the value and the fix, is not retried, and leaves the
// store as it was.
func TestBackupBadInput(t *testing.T) {
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	s3 := s3test.StartGoFakeS3(t, bucket)
	s3.Setenv(t)
	etcd := etcdtest.Start(t, 1)
	good := workflows.EtcdBackupInput{Cluster: "c.example.com", EtcdCluster: "main", StateStore: "s3://" + bucket,
		Endpoints: etcd.Endpoints, BackupOptions: tlsOf(etcd.ConnConfig())}

	cases := []struct {
		name    string
		mutate  func(*workflows.EtcdBackupInput)
		errType string
		field   string // "" when the error is not about one field
		value   string
	}{
		{"unknown etcd cluster", func(in *workflows.EtcdBackupInput) { in.EtcdCluster = "mian" }, "InvalidInput", "etcdCluster", "mian"},
		{"malformed store URL", func(in *workflows.EtcdBackupInput) { in.StateStore = ""; in.BackupStore = "s4:/bucket" }, "InvalidInput", "backupStore", "s4:/bucket"},
		{"missing TLS file", func(in *workflows.EtcdBackupInput) { in.CACert = "/nonexistent/ca.crt" }, "InvalidInput", "cacert", "/nonexistent/ca.crt"},
		{"no endpoints", func(in *workflows.EtcdBackupInput) { in.Endpoints = nil }, "InvalidInput", "endpoints", ""},
		{"bad retention", func(in *workflows.EtcdBackupInput) { in.Retention = &workflows.Retention{HourlyFor: "a week"} }, "InvalidInput", "retention.hourlyFor", "a week"},
		{"unreachable etcd", func(in *workflows.EtcdBackupInput) {
			in.Endpoints = []string{"https://127.0.0.1:9"}
			in.MaxAttempts = 2
		}, "EtcdUnreachable", "", "https://127.0.0.1:9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testenv.Context(t, 2*time.Minute)
			in := good
			tc.mutate(&in)
			run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup, in)
			require.NoError(t, err)
			err = temporalconn.Await(ctx, run, nil)
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "%v", err)
			require.Equal(t, tc.errType, appErr.Type(), "%v", err)
			require.Contains(t, appErr.Error(), tc.value)
			if tc.field != "" {
				require.True(t, appErr.NonRetryable(), "bad input is not retried")
				require.Contains(t, appErr.Error(), tc.field)
				require.Contains(t, appErr.Error(), "fix:")
			}
			requireStoreEmpty(t, "s3://"+bucket)
		})
	}
}

// TestBackupDeniedBucket uses versitygw, which checks signatures: a worker
// with the wrong secret gets AccessDenied, final, naming the store.
func TestBackupDeniedBucket(t *testing.T) {
	tp := stack.StartTemporal(t)
	tp.StartWorker(t)
	s3 := s3test.StartVersityGW(t, bucket)
	s3.Setenv(t)
	t.Setenv("S3_SECRET_ACCESS_KEY", "not-the-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	etcd := etcdtest.Start(t, 1)
	ctx := testenv.Context(t, 2*time.Minute)
	store := "s3://" + bucket + "/c/backups/etcd/main"
	run, err := tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: temporalconn.TaskQueue}, workflows.EtcdBackup,
		workflows.EtcdBackupInput{Cluster: "c", EtcdCluster: "main", BackupStore: store, Endpoints: etcd.Endpoints,
			BackupOptions: tlsOf(etcd.ConnConfig())})
	require.NoError(t, err)
	err = temporalconn.Await(ctx, run, nil)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.Equal(t, "AccessDenied", appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Contains(t, appErr.Error(), store)

	s3.Setenv(t) // the right credentials again, to look
	requireStoreEmpty(t, "s3://"+bucket)
}

func requireStoreEmpty(t *testing.T, url string) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	st, err := backupstore.Open(ctx, url, backupstore.Options{})
	require.NoError(t, err)
	objs, err := st.List(ctx, "")
	require.NoError(t, err)
	require.Empty(t, objs)
}
