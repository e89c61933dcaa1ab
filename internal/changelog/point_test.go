package changelog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/changelog"
)

var p0 = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

// sec is p0 plus n seconds (n may be fractional).
func sec(n float64) time.Time { return p0.Add(time.Duration(n * float64(time.Second))) }

func fileStore(t *testing.T) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(t.Context(), "file://"+t.TempDir(), backupstore.Options{})
	require.NoError(t, err)
	return s
}

// putRun writes one segment of revisions first..last, revision r observed
// at sec(obs(r)).
func putRun(t *testing.T, s backupstore.Store, chain string, first, last int64, obs func(int64) float64) {
	t.Helper()
	var txns []changelog.Txn
	for r := first; r <= last; r++ {
		txns = append(txns, changelog.Txn{Revision: r, Observed: sec(obs(r)),
			Ops: []changelog.Op{{Key: []byte(fmt.Sprintf("/k/%d", r)), Value: []byte("v")}}})
	}
	_, err := changelog.PutSegment(t.Context(), s, chain, txns)
	require.NoError(t, err)
}

// twoChains is a change log with a gap: chain A holds 11..20 (revision r
// observed at r-10 s) and ended when etcd compacted; chain B starts after a
// full backup at 30 and holds 31..35 (observed at r-11 s), its head at 40 s.
func twoChains(t *testing.T) (backupstore.Store, []changelog.ChainState) {
	t.Helper()
	ctx := t.Context()
	s := fileStore(t)
	a := changelog.Chain{ID: changelog.NewChainID(p0, 11), EtcdCluster: "main", ClusterID: "1", StartRevision: 11, BaseBackup: "b0", BaseRevision: 10, Started: p0}
	require.NoError(t, changelog.StartChain(ctx, s, a))
	putRun(t, s, a.ID, 11, 15, func(r int64) float64 { return float64(r - 10) })
	putRun(t, s, a.ID, 16, 20, func(r int64) float64 { return float64(r - 10) })
	require.NoError(t, changelog.EndChain(ctx, s, a.ID, changelog.End{Reason: changelog.EndCompacted, LastRevision: 20, At: sec(15), Detail: "compacted at 28"}))
	b := changelog.Chain{ID: changelog.NewChainID(sec(19), 31), EtcdCluster: "main", ClusterID: "1", StartRevision: 31, BaseBackup: "b1", BaseRevision: 30, Started: sec(19)}
	require.NoError(t, changelog.StartChain(ctx, s, b))
	putRun(t, s, b.ID, 31, 35, func(r int64) float64 { return float64(r - 11) })
	require.NoError(t, changelog.PutHead(ctx, s, b.ID, changelog.Head{Revision: 35, Observed: sec(40)}))
	chains, err := changelog.ListChains(ctx, s)
	require.NoError(t, err)
	require.Len(t, chains, 2)
	return s, chains
}

func TestResolveRevision(t *testing.T) {
	s, chains := twoChains(t)
	ctx := t.Context()

	p, err := changelog.ResolveRevision(ctx, s, chains, 13)
	require.NoError(t, err)
	require.Equal(t, chains[0].ID, p.Chain)
	require.EqualValues(t, 13, p.Revision)
	require.Equal(t, sec(3), p.Observed, "when kopsdr observed it, read from its segment")

	for _, c := range []struct {
		rev     int64
		reason  string
		nearest []int64
	}{
		{25, "falls in a gap of the change log: revisions 21 to 30 were not captured (capture ended: compacted, compacted at 28)", []int64{20, 31}},
		{30, "falls in a gap", []int64{20, 31}},
		{5, "is before the earliest captured change", []int64{11}},
		{36, "has not been captured: the newest captured revision is 35", []int64{35}},
	} {
		_, err := changelog.ResolveRevision(ctx, s, chains, c.rev)
		var nr *changelog.NotRestorable
		require.True(t, errors.As(err, &nr), "revision %d: %v", c.rev, err)
		require.Contains(t, nr.Error(), c.reason, "revision %d", c.rev)
		var got []int64
		for _, n := range nr.Nearest {
			got = append(got, n.Revision)
		}
		require.Equal(t, c.nearest, got, "nearest points to %d", c.rev)
	}
	_, err = changelog.ResolveRevision(ctx, s, nil, 13)
	require.ErrorIs(t, err, changelog.ErrNothingCaptured)
}

func TestResolveTime(t *testing.T) {
	s, chains := twoChains(t)
	ctx := t.Context()
	now := sec(60)
	for _, c := range []struct {
		at  float64
		rev int64
	}{
		{3, 13},    // exactly when 13 was observed
		{3.5, 13},  // between 13 and 14: the last observed by then
		{5.9, 15},  // across a segment boundary: the first segment's last
		{6, 16},    // the second segment's first
		{10, 20},   // chain A's last
		{24, 35},   // chain B's last change
		{39.9, 35}, // no change since; the head says capture was watching
	} {
		p, err := changelog.ResolveTime(ctx, s, chains, sec(c.at), now)
		require.NoError(t, err, "at %gs", c.at)
		require.Equal(t, c.rev, p.Revision, "at %gs", c.at)
		require.False(t, p.Observed.After(sec(c.at)), "observed by the time asked")
	}
	for _, c := range []struct {
		at     time.Time
		reason string
	}{
		{sec(12), "falls in a gap of the change log"}, // after A's last observation, before B started
		{sec(-5), "is before the earliest captured change"},
		{sec(45), "is after the newest observation kopsdr holds"},
		{sec(61), "is in the future"},
		{sec(0.5), "is before the first change of chain"}, // A started, nothing observed yet
	} {
		_, err := changelog.ResolveTime(ctx, s, chains, c.at, now)
		var nr *changelog.NotRestorable
		require.True(t, errors.As(err, &nr), "%s: %v", c.at, err)
		require.Contains(t, nr.Error(), c.reason)
		require.NotEmpty(t, nr.Nearest)
	}
}

func TestChooseBases(t *testing.T) {
	_, chains := twoChains(t)
	b := chains[1] // starts at 31 after a backup at 30
	bases := []changelog.Base{
		{Backup: "older-than-chain", Revision: 25, UpTo: 26},
		{Backup: "sure", Revision: 32, UpTo: 33},
		{Backup: "maybe", Revision: 34}, // no upper bound known
		{Backup: "too-new", Revision: 36, UpTo: 36},
	}
	var names []string
	for _, x := range changelog.ChooseBases(b, 35, bases) {
		names = append(names, x.Backup)
	}
	require.Equal(t, []string{"sure", "maybe", "b1"}, names,
		"surely at or below the point first, then probably, then the chain's own base; never one the chain cannot replay from")
}

func TestRetentionKeepsWhatTheWindowNeeds(t *testing.T) {
	ctx := t.Context()
	s := fileStore(t)
	day := 86400.0
	// An ended chain from ten days ago, and a live chain: revisions 101..400
	// over nine days, 50 per segment, one revision every 30 minutes.
	old := changelog.Chain{ID: changelog.NewChainID(p0, 1), StartRevision: 1, BaseBackup: "b-old", BaseRevision: 0, Started: p0}
	require.NoError(t, changelog.StartChain(ctx, s, old))
	putRun(t, s, old.ID, 1, 10, func(r int64) float64 { return float64(r) })
	require.NoError(t, changelog.EndChain(ctx, s, old.ID, changelog.End{Reason: changelog.EndCompacted, LastRevision: 10, At: sec(20)}))
	live := changelog.Chain{ID: changelog.NewChainID(sec(day), 101), StartRevision: 101, BaseBackup: "b-100", BaseRevision: 100, Started: sec(day)}
	require.NoError(t, changelog.StartChain(ctx, s, live))
	obs := func(r int64) float64 { return day + float64(r-100)*1800 }
	for first := int64(101); first <= 400; first += 50 {
		putRun(t, s, live.ID, first, first+49, obs)
	}
	now := sec(obs(400) + 60)
	window := 3 * 24 * time.Hour
	backups := []changelog.Base{
		{Backup: "b-100", Revision: 100, UpTo: 100},
		{Backup: "b-180", Revision: 180, UpTo: 181},
		{Backup: "b-260", Revision: 260, UpTo: 262},
		{Backup: "b-390", Revision: 390, UpTo: 390}, // inside the window
	}
	chains, err := changelog.ListChains(ctx, s)
	require.NoError(t, err)
	plan := changelog.PlanRetention(chains, backups, window, now)

	// The cutoff falls near revision 256 (three days before 400): the newest
	// backup surely below what was observed before it is b-180, so every
	// segment up to 180 goes, and the old chain as a whole.
	require.Equal(t, []string{old.ID}, plan.Chains)
	require.Len(t, plan.Segments, 1, "101-150 ends below b-180; 151-200 holds 181..200 that b-180 needs")
	require.Equal(t, map[string]int64{live.ID: 151, old.ID: 11}, plan.Trims, "the old chain is trimmed past its end before it goes")

	require.NoError(t, plan.Apply(ctx, s))
	chains, err = changelog.ListChains(ctx, s)
	require.NoError(t, err, "a trimmed chain still reads")
	require.Len(t, chains, 1)
	require.EqualValues(t, 151, chains[0].FirstRevision)
	require.EqualValues(t, 400, chains[0].LastRevision)

	// Every point inside the window is still reachable from a kept backup.
	cutoffRev := int64(0)
	for r := int64(151); r <= 400; r++ {
		if !sec(obs(r)).Before(now.Add(-window)) {
			break
		}
		cutoffRev = r
	}
	for rev := cutoffRev; rev <= 400; rev += 7 {
		p, err := changelog.ResolveRevision(ctx, s, chains, rev)
		require.NoError(t, err, "revision %d is inside the window", rev)
		require.NotEmpty(t, changelog.ChooseBases(chains[0], p.Revision, backups), "revision %d needs a base", rev)
	}
	_, err = changelog.ResolveRevision(ctx, s, chains, 120)
	require.ErrorContains(t, err, "is before the earliest captured change")

	// A second pass finds nothing more to do.
	again := changelog.PlanRetention(chains, backups, window, now)
	require.Empty(t, again.Chains)
	require.Empty(t, again.Segments)
	require.NoError(t, context.Cause(ctx))
}

// TestChainBeingRemovedStillReads: retention removes a whole chain in
// steps; a listing between them must not fail (it would fail every
// make-backup and capture that lists meanwhile).
func TestChainBeingRemovedStillReads(t *testing.T) {
	ctx := t.Context()
	s := fileStore(t)
	old := changelog.Chain{ID: changelog.NewChainID(p0, 1), StartRevision: 1, Started: p0}
	require.NoError(t, changelog.StartChain(ctx, s, old))
	putRun(t, s, old.ID, 1, 5, func(r int64) float64 { return float64(r) })
	putRun(t, s, old.ID, 6, 10, func(r int64) float64 { return float64(r) })
	require.NoError(t, changelog.EndChain(ctx, s, old.ID, changelog.End{Reason: changelog.EndCompacted, LastRevision: 10, At: sec(20)}))

	// Apply's first steps: the trim past the end, then one segment gone.
	require.NoError(t, changelog.PutTrim(ctx, s, old.ID, changelog.Trim{StartRevision: 11, At: sec(30)}))
	chains, err := changelog.ListChains(ctx, s)
	require.NoError(t, err)
	require.Len(t, chains, 1)
	require.NoError(t, s.Delete(ctx, chains[0].Superseded[0].Key))
	chains, err = changelog.ListChains(ctx, s)
	require.NoError(t, err, "half removed, the chain reads as an empty ended one")
	require.Empty(t, chains[0].Segments)
	require.EqualValues(t, 10, chains[0].LastRevision)
}

// TestCurrentClusterAfterARestore: after etcd-manager restores into a new
// cluster, whose revisions start again below the old chain's, only the new
// cluster's chains resolve points, and full backups older than the old
// chain's end cannot be its bases.
func TestCurrentClusterAfterARestore(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	old := changelog.ChainState{Chain: changelog.Chain{ID: "20261130T110000Z-r00000000000000000042", ClusterID: "d980", StartRevision: 42, Started: t0}}
	old.End = &changelog.End{Reason: changelog.EndClusterChanged, LastRevision: 60, At: t0.Add(20 * time.Minute)}
	restored := changelog.ChainState{Chain: changelog.Chain{ID: "20261130T112100Z-r00000000000000000031", ClusterID: "12ba", StartRevision: 31, Started: t0.Add(21 * time.Minute)}}

	cur, dropped, since := changelog.CurrentCluster([]changelog.ChainState{restored, old}) // ListChains's order: by start revision
	if len(cur) != 1 || cur[0].ID != restored.ID || dropped != 1 || !since.Equal(old.End.At) {
		t.Fatalf("CurrentCluster = %v, %d, %s; want only the restored cluster's chain, 1 dropped, since %s", cur, dropped, since, old.End.At)
	}
	cur, dropped, since = changelog.CurrentCluster([]changelog.ChainState{old})
	if len(cur) != 1 || dropped != 0 || !since.IsZero() {
		t.Fatalf("one cluster: CurrentCluster = %v, %d, %s; want it kept whole", cur, dropped, since)
	}
}

// TestRetentionAfterARestoreKeepsTheNewClustersSegments: a full backup of
// the cluster before a restore can sit in the new cluster's revision range;
// retention must not drop the new chain's segments for it.
func TestRetentionAfterARestoreKeepsTheNewClustersSegments(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	seg := func(first, last int64, obs time.Time) changelog.SegmentInfo {
		return changelog.SegmentInfo{Key: fmt.Sprintf("seg-%d-%d", first, last), First: first, Last: last, LastObserved: obs, Bytes: 100}
	}
	old := changelog.ChainState{Chain: changelog.Chain{ID: "old", ClusterID: "d980", StartRevision: 42, Started: t0}}
	old.LastRevision = 60
	old.Segments = []changelog.SegmentInfo{seg(42, 60, t0.Add(10*time.Minute))}
	old.End = &changelog.End{Reason: changelog.EndClusterChanged, LastRevision: 60, At: t0.Add(20 * time.Minute)}
	restored := changelog.ChainState{Chain: changelog.Chain{ID: "new", ClusterID: "12ba", StartRevision: 31, Started: t0.Add(21 * time.Minute), BaseBackup: "new-base", BaseRevision: 30}}
	restored.LastRevision = 80
	restored.Segments = []changelog.SegmentInfo{seg(31, 40, t0.Add(22*time.Minute)), seg(41, 50, t0.Add(23*time.Minute)), seg(51, 80, t0.Add(90*time.Minute))}
	// The safety backup of the old cluster, taken just before the restore,
	// at revision 45: inside the new chain's range, but of another cluster.
	backups := []changelog.Base{
		{Backup: "safety", Revision: 45, UpTo: 45, Taken: t0.Add(15 * time.Minute)},
		{Backup: "new-base", Revision: 30, UpTo: 30, Taken: t0.Add(21 * time.Minute)},
	}
	plan := changelog.PlanRetention([]changelog.ChainState{restored, old}, backups, time.Hour, t0.Add(85*time.Minute))
	require.NotContains(t, plan.Segments, "seg-31-40", "the new chain's segments stay: its only base of its own cluster is its start")
}
