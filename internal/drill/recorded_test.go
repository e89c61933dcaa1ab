package drill_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// TestRecorderGivesTheCountsAtEveryRevision writes, overwrites and deletes
// keys while a recording runs (as while a snapshot streams), and checks
// the recording against etcd's own counts at every revision it covers.
func TestRecorderGivesTheCountsAtEveryRevision(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := testCtx(t)
	fillKubernetes(t, cli)

	rec, err := drill.StartRecorder(ctx, cli)
	require.NoError(t, err)
	for i := range 20 {
		key := fmt.Sprintf("/registry/pods/default/p%d", i)
		_, err := cli.Put(ctx, key, "v1")
		require.NoError(t, err)
		_, err = cli.Put(ctx, key, "v2") // an update adds no key
		require.NoError(t, err)
		if i%3 == 0 {
			_, err = cli.Delete(ctx, key)
			require.NoError(t, err)
		}
	}
	// One transaction that adds a key and removes another.
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("/registry/secrets/default/s", "x"),
		clientv3.OpDelete("/registry/configmaps/default/", clientv3.WithPrefix())).Commit()
	require.NoError(t, err)
	got, err := rec.Finish(ctx)
	require.NoError(t, err)

	require.Greater(t, got.UpTo, got.Revision)
	for rev := got.Revision; rev <= got.UpTo; rev++ {
		want, err := drill.CountKeys(ctx, cli, rev)
		require.NoError(t, err)
		at, ok := got.At(rev)
		require.True(t, ok)
		assert.Equal(t, want, at, "revision %d", rev)
	}
	_, ok := got.At(got.UpTo + 1)
	assert.False(t, ok)
}
