package storeurl

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

func TestParse(t *testing.T) {
	for raw, want := range map[string]Location{
		"s3://my.clusters":                     {Scheme: "s3", Bucket: "my.clusters"},
		"s3://my.clusters/a/b/":                {Scheme: "s3", Bucket: "my.clusters", Prefix: "a/b"},
		"file:///srv/kops/../kops/state":       {Scheme: "file", Prefix: "/srv/kops/state"},
		"file:///var/lib/kopsdr/backups/main/": {Scheme: "file", Prefix: "/var/lib/kopsdr/backups/main"},
	} {
		got, err := Parse("stateStore", raw)
		require.NoError(t, err, raw)
		require.Equal(t, want, got, raw)
	}
	for _, raw := range []string{"", "my.clusters", "gs://b/p", "s3://", "s3://b", "s3://bucket:9000/x", "s3://bucket/a//b",
		"s3://bucket/../x", "s3://user@bucket/x", "file://state", "file:///", "file://host/abs", "s3://bucket/x?versionId=1"} {
		_, err := Parse("stateStore", raw)
		ie, ok := inputerr.As(err)
		require.True(t, ok, "%q: %v", raw, err)
		require.Equal(t, "stateStore", ie.Field)
		require.Equal(t, raw, ie.Value)
		require.Equal(t, Fix, ie.Fix)
	}
}

func TestCheckLocalParent(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, CheckLocalParent("stateStore", "file://"+filepath.Join(dir, "state")))
	require.NoError(t, CheckLocalParent("stateStore", "s3://my.clusters/x"))
	err := CheckLocalParent("stateStore", "file://"+filepath.Join(dir, "no/such/state"))
	ie, ok := inputerr.As(err)
	require.True(t, ok, "%v", err)
	require.Contains(t, ie.Fix, "mkdir -p "+filepath.Join(dir, "no/such"))
}
