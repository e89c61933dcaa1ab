package kopsspec

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// A spec whose main sets backupRetentionDays and whose events does not.
const retentionYAML = `apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: test.my.clusters
spec:
  etcdClusters:
  - etcdMembers:
    - instanceGroup: master-us-east-1a
      name: a
    manager:
      backupRetentionDays: 14
      env:
      - name: ETCD_LISTEN_METRICS_URLS
        value: http://0.0.0.0:8081
    name: main
  - etcdMembers:
    - instanceGroup: master-us-east-1a
      name: a
    manager:
      backupInterval: 15m0s
    name: events
  - etcdMembers:
    - name: a
    manager:
      backupRetentionDays: 0
    name: cilium
`

func TestDailyRetention(t *testing.T) {
	spec, err := Parse([]byte(retentionYAML))
	require.NoError(t, err)
	assert.Equal(t, []DailyRetention{
		{EtcdCluster: "main", Days: 14, Found: true},
		{EtcdCluster: "events", Days: 90},
		{EtcdCluster: "cilium", Days: 90},
	}, spec.DailyRetentions())
	main := spec.DailyRetention("main")
	assert.Equal(t, 14*24*time.Hour, main.Duration())
	assert.Contains(t, main.Rule(), "14 days from the cluster spec (etcdClusters[main].manager.backupRetentionDays)")
	assert.Contains(t, spec.DailyRetention("events").Rule(), "90 days, kops's default")
	assert.Equal(t, DailyRetention{EtcdCluster: "other", Days: 90}, spec.DailyRetention("other"))

	// The encryption test's spec has no manager at all.
	plain, err := Parse([]byte(clusterYAML))
	require.NoError(t, err)
	assert.False(t, plain.DailyRetention("main").Found)
}

func TestReadDailyRetention(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) backupstore.Store{
		"file": func(t *testing.T) backupstore.Store {
			s, err := backupstore.Open(context.Background(), "file://"+t.TempDir()+"/state", backupstore.Options{})
			require.NoError(t, err)
			return s
		},
		"s3": func(t *testing.T) backupstore.Store {
			srv := s3test.StartGoFakeS3(t, "clusters")
			srv.Setenv(t)
			s, err := backupstore.Open(context.Background(), "s3://clusters", backupstore.Options{})
			require.NoError(t, err)
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			// No spec in the state store: kops's default, not found.
			r, err := ReadDailyRetention(ctx, store, "test.my.clusters", "main")
			require.NoError(t, err)
			assert.Equal(t, DailyRetention{EtcdCluster: "main", Days: 90}, r)

			_, err = store.Put(ctx, Key("test.my.clusters"), strings.NewReader(retentionYAML), backupstore.PutOptions{})
			require.NoError(t, err)
			r, err = ReadDailyRetention(ctx, store, "test.my.clusters", "main")
			require.NoError(t, err)
			assert.Equal(t, DailyRetention{EtcdCluster: "main", Days: 14, Found: true}, r)
			r, err = ReadDailyRetention(ctx, store, "test.my.clusters", "events")
			require.NoError(t, err)
			assert.False(t, r.Found)

			// A spec that is there but unusable is an error, not a default.
			_, err = store.Put(ctx, Key("bad.my.clusters"), strings.NewReader("spec: ["), backupstore.PutOptions{})
			require.NoError(t, err)
			_, err = ReadDailyRetention(ctx, store, "bad.my.clusters", "main")
			assert.ErrorIs(t, err, ErrBadSpec)
		})
	}
}
