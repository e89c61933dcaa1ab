package ebs

import (
	"strconv"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// RetentionPolicy says which snapshot sets to keep. A set is kept when any
// rule keeps it; the newest completed set is kept whatever the policy says,
// and so is any set still pending (its workflow may be running).
type RetentionPolicy struct {
	KeepLast  int           `json:"keepLast"`  // the newest N completed sets
	HourlyFor time.Duration `json:"hourlyFor"` // the first completed set of each hour, for this long
	DailyFor  time.Duration `json:"dailyFor"`  // the first completed set of each UTC day, for this long
}

// DefaultRetention keeps the last 3 sets, one per hour for a week and one
// per day for 90 days: kops's etcd-manager defaults, in sets.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{KeepLast: 3, HourlyFor: 7 * 24 * time.Hour, DailyFor: 90 * 24 * time.Hour}
}

// Decision is what retention does with one set, and why; RetentionPlan
// lists every set once, in Keep or in Delete, newest first. Both are the
// contract's types: the plan reaches the operator as it is.
type (
	Decision      = api.SetDecision
	RetentionPlan = api.SetRetention
)

// PlanRetention decides, as of now, which of sets (newest first, as Sets
// returns them) to keep. Sets that failed (a snapshot in error) are deleted
// once a newer set completed, since they cannot be restored as a whole.
func PlanRetention(sets []SnapshotSet, now time.Time, p RetentionPolicy) RetentionPlan {
	var plan RetentionPlan
	completed := 0
	hours, days := map[time.Time]string{}, map[time.Time]string{}
	// Walk oldest first so "the first set of each hour/day" is the oldest one.
	firstOfHour, firstOfDay := map[string]bool{}, map[string]bool{}
	for i := len(sets) - 1; i >= 0; i-- {
		s := sets[i]
		if s.State() != SnapshotCompleted {
			continue
		}
		h, d := s.Time.UTC().Truncate(time.Hour), s.Time.UTC().Truncate(24*time.Hour)
		if _, ok := hours[h]; !ok {
			hours[h], firstOfHour[s.ID] = s.ID, true
		}
		if _, ok := days[d]; !ok {
			days[d], firstOfDay[s.ID] = s.ID, true
		}
	}
	newerCompleted := false
	for _, s := range sets {
		d := Decision{Set: s.ID, Time: s.Time, State: s.State()}
		for _, sn := range s.Snapshots {
			d.Snapshots = append(d.Snapshots, sn.ID)
		}
		age := now.Sub(s.Time)
		switch {
		case d.State == SnapshotPending:
			d.Reason = "pending"
		case d.State != SnapshotCompleted && !newerCompleted:
			d.Reason = "failed, but no newer set completed"
		case d.State != SnapshotCompleted:
			d.Reason = "failed"
		case completed == 0:
			d.Reason = "newest completed set"
		case completed < p.KeepLast:
			d.Reason = "among the last " + strconv.Itoa(p.KeepLast)
		case firstOfHour[s.ID] && age < p.HourlyFor:
			d.Reason = "first of its hour"
		case firstOfDay[s.ID] && age < p.DailyFor:
			d.Reason = "first of its day"
		default:
			d.Reason = "expired"
		}
		if d.State == SnapshotCompleted {
			completed++
			newerCompleted = true
		}
		if d.Reason == "failed" || d.Reason == "expired" {
			plan.Delete = append(plan.Delete, d)
		} else {
			plan.Keep = append(plan.Keep, d)
		}
	}
	return plan
}
