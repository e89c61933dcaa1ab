package ebs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// set builds a set of two snapshots (main/a, events/a) taken at t.
func set(t time.Time, states ...string) SnapshotSet {
	id := SetID(t, t.String())
	s := SnapshotSet{ID: id, Time: t}
	for i, st := range states {
		m := []string{"main", "events"}[i%2]
		s.Snapshots = append(s.Snapshots, Snapshot{ID: "snap-" + id + m, State: st, Set: id, EtcdCluster: m, Member: "a",
			Tags: map[string]string{TagSetSize: "2"}})
	}
	return s
}

func decisions(p RetentionPlan) (keep, del map[string]string) {
	keep, del = map[string]string{}, map[string]string{}
	for _, d := range p.Keep {
		keep[d.Set] = d.Reason
	}
	for _, d := range p.Delete {
		del[d.Set] = d.Reason
	}
	return keep, del
}

func TestPlanRetentionBuckets(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)
	ok := []string{SnapshotCompleted, SnapshotCompleted}
	var sets []SnapshotSet
	// Every 20 minutes for the last 3 days, newest first.
	for i := range 3 * 24 * 3 {
		sets = append(sets, set(now.Add(-time.Duration(i)*20*time.Minute), ok...))
	}
	p := PlanRetention(sets, now, RetentionPolicy{KeepLast: 5, HourlyFor: 24 * time.Hour, DailyFor: 7 * 24 * time.Hour})
	keep, del := decisions(p)
	require.Len(t, p.Keep, len(keep))
	require.Equal(t, len(sets), len(keep)+len(del), "every set is decided once")
	require.Equal(t, "newest completed set", keep[sets[0].ID])
	for _, s := range sets[1:5] {
		require.Equal(t, "among the last 5", keep[s.ID])
	}
	// Beyond the last 5: exactly the first set of each hour of the last day,
	// then the first set of each day.
	hours, days := map[time.Time]int{}, map[time.Time]int{}
	for _, s := range sets[5:] {
		switch keep[s.ID] {
		case "first of its hour":
			require.Less(t, now.Sub(s.Time), 24*time.Hour)
			require.Less(t, s.Time.Minute(), 20, "the first set of an hour is its earliest")
			hours[s.Time.Truncate(time.Hour)]++
		case "first of its day":
			require.GreaterOrEqual(t, now.Sub(s.Time), 24*time.Hour)
			days[s.Time.Truncate(24*time.Hour)]++
		case "":
			require.Equal(t, "expired", del[s.ID])
		}
	}
	for h, n := range hours {
		require.Equal(t, 1, n, h)
	}
	require.Len(t, days, 3, "three days reach back past 24h: %v", days)
}

func TestPlanRetentionNeverDeletesNewestCompletedOrPending(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	old := now.Add(-400 * 24 * time.Hour)
	sets := []SnapshotSet{
		set(now.Add(-time.Minute), SnapshotPending, SnapshotCompleted),   // a run in flight
		set(now.Add(-2*time.Minute), SnapshotError, SnapshotCompleted),   // failed, no newer completed
		set(old, SnapshotCompleted, SnapshotCompleted),                   // the only completed one, very old
		set(old.Add(-time.Hour), SnapshotCompleted, SnapshotError),       // failed, a newer one completed
		set(old.Add(-2*time.Hour), SnapshotCompleted, SnapshotCompleted), // expired
	}
	p := PlanRetention(sets, now, RetentionPolicy{KeepLast: 1})
	keep, del := decisions(p)
	require.Equal(t, "pending", keep[sets[0].ID])
	require.Equal(t, "failed, but no newer set completed", keep[sets[1].ID])
	require.Equal(t, "newest completed set", keep[sets[2].ID], "kept whatever its age")
	require.Equal(t, "failed", del[sets[3].ID])
	require.Equal(t, "expired", del[sets[4].ID])
	require.ElementsMatch(t, []string{"snap-" + sets[3].ID + "main", "snap-" + sets[3].ID + "events"}, p.Delete[0].Snapshots)
}

func TestSetMissingASnapshotIsNotCompleted(t *testing.T) {
	s := set(time.Now(), SnapshotCompleted, SnapshotCompleted)
	require.Equal(t, SnapshotCompleted, s.State())
	s.Snapshots = s.Snapshots[:1]
	require.Equal(t, SnapshotError, s.State(), "the run that made it failed to start one of its 2 snapshots")
}

func TestSetsGroupsNewestFirst(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := set(t1, SnapshotCompleted, SnapshotCompleted), set(t1.Add(time.Hour), SnapshotCompleted, SnapshotCompleted)
	foreign := Snapshot{ID: "snap-lambda", State: SnapshotCompleted} // no set tag: never grouped, never pruned
	got := Sets(append(append(append([]Snapshot{}, a.Snapshots...), foreign), b.Snapshots...))
	require.Len(t, got, 2)
	require.Equal(t, b.ID, got[0].ID)
	require.Equal(t, a.ID, got[1].ID)
	require.Equal(t, "events/a", got[0].Snapshots[0].Key(), "snapshots sorted by member")
}
