package kopsspec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// A cluster spec as kops writes it to the state store (trimmed).
const clusterYAML = `apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  creationTimestamp: "2026-01-02T03:04:05Z"
  name: test.my.clusters
spec:
  cloudProvider: aws
  configBase: s3://my.clusters/test.my.clusters
  etcdClusters:
  - etcdMembers:
    - instanceGroup: master-us-east-1a
      name: a
      encryptedVolume: true
      kmsKeyId: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab
    - instanceGroup: master-us-east-1b
      name: b
      encryptedVolume: true
    - instanceGroup: master-us-east-1c
      name: c
    name: main
  - etcdMembers:
    - instanceGroup: master-us-east-1a
      name: a
    name: events
  kubernetesVersion: 1.11.10
`

func TestParse(t *testing.T) {
	spec, err := Parse([]byte(clusterYAML))
	require.NoError(t, err)
	require.Equal(t, "test.my.clusters", spec.ClusterName)
	a, ok := spec.Member("main", "a")
	require.True(t, ok)
	require.True(t, a.EncryptedVolume)
	require.Equal(t, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", a.KMSKeyID)
	require.Equal(t, "master-us-east-1a", a.InstanceGroup)
	b, _ := spec.Member("main", "b")
	require.True(t, b.EncryptedVolume)
	require.Empty(t, b.KMSKeyID)
	c, _ := spec.Member("main", "c")
	require.False(t, c.EncryptedVolume)
	ea, ok := spec.Member("events", "a")
	require.True(t, ok)
	require.False(t, ea.EncryptedVolume)
	_, ok = spec.Member("events", "b")
	require.False(t, ok)
}

func TestParseBareSpec(t *testing.T) {
	spec, err := Parse([]byte("etcdClusters:\n- name: main\n  etcdMembers:\n  - name: a\n    encryptedVolume: true\n"))
	require.NoError(t, err)
	a, ok := spec.Member("main", "a")
	require.True(t, ok)
	require.True(t, a.EncryptedVolume)
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"not yaml":         "spec: [",
		"no etcd clusters": "kind: Cluster\nspec:\n  cloudProvider: aws\n",
		"nameless member":  "spec:\n  etcdClusters:\n  - name: main\n    etcdMembers:\n    - instanceGroup: x\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc))
			require.Error(t, err)
		})
	}
}

// TestRead goes through a real file:// state store laid out as kops does.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "test.my.clusters"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.my.clusters", "config"), []byte(clusterYAML), 0o644))
	ctx := context.Background()
	store, err := backupstore.Open(ctx, "file://"+dir, backupstore.Options{})
	require.NoError(t, err)

	spec, err := Read(ctx, store, "test.my.clusters")
	require.NoError(t, err)
	a, _ := spec.Member("main", "a")
	require.True(t, a.EncryptedVolume)

	_, err = Read(ctx, store, "other.my.clusters")
	require.True(t, errors.Is(err, ErrNoSpec), "%v", err)

	// A spec copied under another cluster's name is refused, not trusted.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "copy.my.clusters"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "copy.my.clusters", "config"), []byte(clusterYAML), 0o644))
	_, err = Read(ctx, store, "copy.my.clusters")
	require.ErrorContains(t, err, "not copy.my.clusters")
}
