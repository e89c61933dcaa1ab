package changelog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// stores runs fn against a fresh file:// store and a fresh gofakes3 one.
func stores(t *testing.T, fn func(t *testing.T, s backupstore.Store)) {
	t.Run("file", func(t *testing.T) {
		fn(t, openStore(t, "file://"+t.TempDir()+"/changes/main"))
	})
	t.Run("gofakes3", func(t *testing.T) {
		srv := s3test.StartGoFakeS3(t, "changes")
		srv.Setenv(t)
		fn(t, openStore(t, "s3://changes/cluster.example.com/main"))
	})
}

func openStore(t *testing.T, url string) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(context.Background(), url, backupstore.Options{})
	require.NoError(t, err)
	return s
}

func testChain(started time.Time, start int64) changelog.Chain {
	return changelog.Chain{
		ID:            changelog.NewChainID(started, start),
		EtcdCluster:   "main",
		ClusterID:     changelog.FormatClusterID(0xcdf818194e3a8c32),
		StartRevision: start,
		BaseBackup:    "2026-11-30T07:00:00Z-000001",
		BaseRevision:  start - 10,
		Started:       started,
	}
}

// txnsFor makes one put per revision first..last.
func txnsFor(first, last int64) []changelog.Txn {
	var txns []changelog.Txn
	for r := first; r <= last; r++ {
		txns = append(txns, changelog.Txn{Revision: r, Observed: t0.Add(time.Duration(r) * time.Second),
			Ops: []changelog.Op{{Key: fmt.Appendf(nil, "/registry/k%d", r%7), Value: fmt.Appendf(nil, "v%d", r)}}})
	}
	return txns
}

func putSeg(t *testing.T, s backupstore.Store, id string, first, last int64) changelog.SegmentInfo {
	t.Helper()
	info, err := changelog.PutSegment(context.Background(), s, id, txnsFor(first, last))
	require.NoError(t, err)
	return info
}

func TestNewChainID(t *testing.T) {
	id := changelog.NewChainID(time.Date(2026, 11, 30, 8, 15, 0, 5, time.FixedZone("CET", 3600)), 1234)
	assert.Equal(t, "20261130T071500Z-r00000000000000001234", id)
	assert.Less(t, changelog.NewChainID(t0, 99999), changelog.NewChainID(t0.Add(time.Second), 1))
	assert.Equal(t, "cdf818194e3a8c32", changelog.FormatClusterID(0xcdf818194e3a8c32))
}

func TestStartChain(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		c := testChain(t0, 100)
		require.NoError(t, changelog.StartChain(ctx, s, c))
		// Again, the same chain (Started in another zone is the same instant).
		same := c
		same.Started = c.Started.In(time.FixedZone("X", 7200))
		require.NoError(t, changelog.StartChain(ctx, s, same))
		// Something else under the same id.
		other := c
		other.ClusterID = "1"
		assert.ErrorIs(t, changelog.StartChain(ctx, s, other), changelog.ErrConflict)

		st, err := changelog.OpenChain(ctx, s, c.ID)
		require.NoError(t, err)
		assert.True(t, st.Started.Equal(c.Started))
		st.Started = c.Started
		assert.Equal(t, changelog.ChainState{Chain: c, FirstRevision: 100, LastRevision: 99}, st)

		assert.Error(t, changelog.StartChain(ctx, s, changelog.Chain{ID: "a/b", StartRevision: 1}))
		assert.Error(t, changelog.StartChain(ctx, s, changelog.Chain{ID: "x", StartRevision: 0}))
	})
}

func TestSegmentsInStore(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		c := testChain(t0, 100)
		require.NoError(t, changelog.StartChain(ctx, s, c))
		txns := txnsFor(100, 150)
		txns[3].Ops = append(txns[3].Ops, changelog.Op{Delete: true, Key: []byte("/registry/k1")})
		info, err := changelog.PutSegment(ctx, s, c.ID, txns)
		require.NoError(t, err)
		assert.Equal(t, changelog.SegmentKey(c.ID, 100, 150, txns[50].Observed), info.Key)
		assert.Equal(t, 52, info.Ops)
		stat, err := s.Stat(ctx, info.Key)
		require.NoError(t, err)
		assert.Equal(t, info.Bytes, stat.Size)

		// A retry writes the same key with the same content.
		again, err := changelog.PutSegment(ctx, s, c.ID, txns)
		require.NoError(t, err)
		assert.Equal(t, info, again)

		var got []changelog.Txn
		rinfo, err := changelog.ReadSegment(ctx, s, info.Key, func(t changelog.Txn) error {
			got = append(got, t)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, info, rinfo)
		assert.Equal(t, normalize(txns), got)

		// A segment under a name that says something else.
		rc, err := s.Get(ctx, info.Key)
		require.NoError(t, err)
		data, _ := io.ReadAll(rc)
		rc.Close()
		wrong := changelog.SegmentKey(c.ID, 100, 151, txns[50].Observed)
		_, err = s.Put(ctx, wrong, bytes.NewReader(data), backupstore.PutOptions{})
		require.NoError(t, err)
		_, err = changelog.ReadSegment(ctx, s, wrong, func(changelog.Txn) error { return nil })
		assert.ErrorIs(t, err, changelog.ErrCorrupt)

		// A corrupt one names the object.
		data[len(data)/2] ^= 0x40
		_, err = s.Put(ctx, info.Key, bytes.NewReader(data), backupstore.PutOptions{})
		require.NoError(t, err)
		_, err = changelog.ReadSegment(ctx, s, info.Key, func(changelog.Txn) error { return nil })
		assert.ErrorIs(t, err, changelog.ErrCorrupt)
		assert.Contains(t, err.Error(), info.Key)

		_, err = changelog.ReadSegment(ctx, s, changelog.SegmentKey(c.ID, 1, 2, t0), func(changelog.Txn) error { return nil })
		assert.ErrorIs(t, err, backupstore.ErrNotFound)
	})
}

// PutSegment stores nothing when the txns cannot be encoded.
func TestPutSegmentRefuses(t *testing.T) {
	s := openStore(t, "file://"+t.TempDir())
	ctx := context.Background()
	bad := txnsFor(10, 12)
	bad[2].Revision = 13
	_, err := changelog.PutSegment(ctx, s, "c", bad)
	assert.Error(t, err)
	noKey := txnsFor(10, 12)
	noKey[2].Ops[0].Key = nil
	_, err = changelog.PutSegment(ctx, s, "c", noKey)
	assert.Error(t, err)
	unnamed := txnsFor(10, 12)
	unnamed[2].Observed = time.Time{}
	_, err = changelog.PutSegment(ctx, s, "c", unnamed)
	assert.Error(t, err)
	_, err = changelog.PutSegment(ctx, s, "../c", txnsFor(10, 12))
	assert.Error(t, err)
	objs, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, objs)
}

func keys(segs []changelog.SegmentInfo) []string {
	var out []string
	for _, s := range segs {
		out = append(out, fmt.Sprintf("%d-%d", s.First, s.Last))
	}
	return out
}

func TestListChains(t *testing.T) {
	stores(t, func(t *testing.T, s backupstore.Store) {
		ctx := context.Background()
		states, err := changelog.ListChains(ctx, s)
		require.NoError(t, err)
		assert.Empty(t, states)

		// Started later but at a lower revision: sorted by revision.
		a := testChain(t0.Add(time.Hour), 50)
		b := testChain(t0, 500)
		empty := testChain(t0.Add(2*time.Hour), 900)
		for _, c := range []changelog.Chain{b, a, empty} {
			require.NoError(t, changelog.StartChain(ctx, s, c))
		}
		segA := []changelog.SegmentInfo{putSeg(t, s, a.ID, 50, 60), putSeg(t, s, a.ID, 61, 61), putSeg(t, s, a.ID, 62, 99)}
		putSeg(t, s, b.ID, 500, 510)
		head := changelog.Head{Revision: 99, Observed: t0.Add(200 * time.Second)}
		require.NoError(t, changelog.PutHead(ctx, s, a.ID, changelog.Head{Revision: 61, Observed: t0}))
		require.NoError(t, changelog.PutHead(ctx, s, a.ID, head))
		end := changelog.End{Reason: changelog.EndCompacted, LastRevision: 99, At: t0.Add(time.Hour), Detail: "compacted at 120"}
		require.NoError(t, changelog.EndChain(ctx, s, a.ID, end))
		again := end
		again.At = end.At.Add(time.Minute) // a retry, later
		require.NoError(t, changelog.EndChain(ctx, s, a.ID, again))
		other := end
		other.LastRevision = 98
		assert.ErrorIs(t, changelog.EndChain(ctx, s, a.ID, other), changelog.ErrConflict)

		states, err = changelog.ListChains(ctx, s)
		require.NoError(t, err)
		require.Len(t, states, 3)
		assert.Equal(t, []string{a.ID, b.ID, empty.ID}, []string{states[0].ID, states[1].ID, states[2].ID})

		sa := states[0]
		assert.Equal(t, int64(99), sa.LastRevision)
		require.NotNil(t, sa.Head)
		assert.Equal(t, head.Revision, sa.Head.Revision)
		assert.True(t, head.Observed.Equal(sa.Head.Observed))
		require.NotNil(t, sa.End)
		assert.Equal(t, end.Detail, sa.End.Detail)
		assert.True(t, end.At.Equal(sa.End.At), "the first end is kept")
		// From a listing: the name's fields and the size.
		for i := range segA {
			segA[i].FirstObserved, segA[i].Txns, segA[i].Ops, segA[i].SHA256 = time.Time{}, 0, 0, ""
		}
		assert.Equal(t, segA, sa.Segments)
		assert.Empty(t, sa.Superseded)

		assert.Equal(t, int64(510), states[1].LastRevision)
		assert.Nil(t, states[1].Head)
		assert.Nil(t, states[1].End)
		assert.Equal(t, int64(899), states[2].LastRevision)
		assert.Empty(t, states[2].Segments)

		one, err := changelog.OpenChain(ctx, s, a.ID)
		require.NoError(t, err)
		assert.Equal(t, sa, one)
		_, err = changelog.OpenChain(ctx, s, "20990101T000000Z-r00000000000000000001")
		assert.ErrorIs(t, err, backupstore.ErrNotFound)
		// A chain whose name merely starts like another's is not part of it.
		require.NoError(t, changelog.StartChain(ctx, s, changelog.Chain{ID: a.ID + "x", StartRevision: 7}))
		one, err = changelog.OpenChain(ctx, s, a.ID)
		require.NoError(t, err)
		assert.Equal(t, sa, one)

		// A missing segment breaks the chain: named, with the revisions.
		require.NoError(t, s.Delete(ctx, segA[1].Key))
		states, err = changelog.ListChains(ctx, s)
		require.ErrorIs(t, err, changelog.ErrCorrupt)
		assert.Contains(t, err.Error(), a.ID)
		assert.Contains(t, err.Error(), "missing revisions 61-61")
		// The other chains still come back.
		assert.Len(t, states, 3)
		_, err = changelog.OpenChain(ctx, s, a.ID)
		assert.ErrorIs(t, err, changelog.ErrCorrupt)
	})
}

func TestChainOverlaps(t *testing.T) {
	s := openStore(t, "file://"+t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		segs             [][2]int64
		chain, supersede []string
		last             int64
		corrupt          string
	}{
		{name: "none", last: 9},
		{name: "contiguous", segs: [][2]int64{{10, 20}, {21, 30}}, chain: []string{"10-20", "21-30"}, last: 30},
		{name: "same range twice", segs: [][2]int64{{10, 20}, {10, 20}, {21, 30}}, chain: []string{"10-20", "21-30"}, supersede: []string{"10-20"}, last: 30},
		{name: "longer wins", segs: [][2]int64{{10, 20}, {10, 25}}, chain: []string{"10-25"}, supersede: []string{"10-20"}, last: 25},
		{name: "longer, then continued", segs: [][2]int64{{10, 20}, {10, 25}, {26, 30}}, chain: []string{"10-25", "26-30"}, supersede: []string{"10-20"}, last: 30},
		{name: "furthest wins", segs: [][2]int64{{10, 20}, {10, 25}, {21, 30}}, chain: []string{"10-20", "21-30"}, supersede: []string{"10-25"}, last: 30},
		{name: "fewer wins", segs: [][2]int64{{10, 15}, {16, 20}, {10, 20}, {21, 22}}, chain: []string{"10-20", "21-22"}, supersede: []string{"10-15", "16-20"}, last: 22},
		{name: "overlapping the end", segs: [][2]int64{{10, 20}, {21, 30}, {15, 40}}, chain: []string{"10-20", "21-30"}, supersede: []string{"15-40"}, last: 30},
		{name: "gap", segs: [][2]int64{{10, 20}, {22, 30}}, corrupt: "missing revisions 21-21"},
		{name: "late start", segs: [][2]int64{{12, 20}}, corrupt: "missing revisions 10-11"},
		{name: "before start", segs: [][2]int64{{5, 20}}, corrupt: "starts at revision 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := changelog.Chain{ID: changelog.NewChainID(t0, 10) + "-" + tc.name, StartRevision: 10}
			c.ID = fmt.Sprintf("%x", c.ID) // one path segment whatever the name
			require.NoError(t, changelog.StartChain(ctx, s, c))
			for i, sg := range tc.segs {
				txns := txnsFor(sg[0], sg[1])
				txns[len(txns)-1].Observed = t0.Add(time.Duration(i) * time.Hour) // distinct names
				_, err := changelog.PutSegment(ctx, s, c.ID, txns)
				require.NoError(t, err)
			}
			st, err := changelog.OpenChain(ctx, s, c.ID)
			if tc.corrupt != "" {
				require.ErrorIs(t, err, changelog.ErrCorrupt)
				assert.Contains(t, err.Error(), tc.corrupt)
				assert.Contains(t, err.Error(), c.ID)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.chain, keys(st.Segments))
			assert.Equal(t, tc.supersede, keys(st.Superseded))
			assert.Equal(t, tc.last, st.LastRevision)
			if tc.name == "same range twice" {
				assert.True(t, st.Segments[0].LastObserved.After(st.Superseded[0].LastObserved), "the later of two equal ranges")
			}
		})
	}
}

func TestListChainsCorrupt(t *testing.T) {
	s := openStore(t, "file://"+t.TempDir())
	ctx := context.Background()
	good := testChain(t0, 10)
	require.NoError(t, changelog.StartChain(ctx, s, good))
	put := func(key, data string) {
		_, err := s.Put(ctx, key, bytes.NewReader([]byte(data)), backupstore.PutOptions{})
		require.NoError(t, err)
	}
	put("chains/orphan/seg/"+"00000000000000000001-00000000000000000002-0000000000001.kcl", "x")
	put("chains/badjson/chain.json", "{")
	put("chains/wrongid/chain.json", `{"id":"other","startRevision":1}`)
	put("chains/badseg/chain.json", `{"id":"badseg","startRevision":1}`)
	put("chains/badseg/seg/notasegment", "x")
	put("chains/other/notes.txt", "x") // not the change log's: ignored
	put("chains/other/chain.json", `{"id":"other","startRevision":3}`)

	states, err := changelog.ListChains(ctx, s)
	require.ErrorIs(t, err, changelog.ErrCorrupt)
	for _, want := range []string{"orphan", "badjson", "wrongid", "badseg"} {
		assert.Contains(t, err.Error(), want)
	}
	t.Log(err)
	require.Len(t, states, 2)
	assert.Equal(t, "other", states[0].ID)
	assert.Equal(t, good.ID, states[1].ID)
	assert.False(t, errors.Is(err, backupstore.ErrNotFound))
}
