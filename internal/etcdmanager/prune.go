package etcdmanager

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// RetentionPolicy is etcd-manager's backup retention (backupcontroller
// cleanup): everything younger than KeepAllFor, then the first backup of each
// hour younger than HourlyFor, then the first of each day younger than
// DailyFor. etcd-manager reads the last two from
// ETCD_MANAGER_HOURLY_BACKUPS_RETENTION and ETCD_MANAGER_DAILY_BACKUPS_RETENTION.
type RetentionPolicy struct {
	KeepAllFor time.Duration
	HourlyFor  time.Duration
	DailyFor   time.Duration
}

// DefaultRetention is what etcd-manager runs with under kops: 1 h, 7 days,
// and kops's 90-day daily retention.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{KeepAllFor: time.Hour, HourlyFor: 7 * 24 * time.Hour, DailyFor: 90 * 24 * time.Hour}
}

// PlanPrune splits backup names into those etcd-manager's policy keeps and
// those it removes, both sorted. It follows etcd-manager's cleanup exactly,
// quirks included, so that kopsdr and etcd-manager, pruning the same store,
// never each keep a different one of two backups and so lose both:
//   - hours and days are UTC (time.Truncate), and hourly and daily buckets
//     share one map: near the HourlyFor boundary the day's bucket and its
//     00:00 hour's bucket are one, keeping only the earliest;
//   - of backups in the same second, the last in sorted order counts.
//
// Two differences only ever keep more: names ParseBackupName rejects are
// never removed (etcd-manager's own parser is looser), and the newest
// backup is never removed whatever its age.
func PlanPrune(names []string, now time.Time, p RetentionPolicy) (keep, remove []string) {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)

	byTime := map[time.Time]string{}     // timestamp -> backup (last in sorted order wins)
	buckets := map[time.Time]time.Time{} // hour or day start -> earliest timestamp in it
	retain := map[string]bool{}
	var newest string
	var newestT time.Time
	for _, name := range sorted {
		t, _, ok := ParseBackupName(name)
		if !ok {
			retain[name] = true
			continue
		}
		if newest == "" || !t.Before(newestT) {
			newest, newestT = name, t
		}
		byTime[t] = name
		age := now.Sub(t)
		var bucket time.Time
		switch {
		case age < p.KeepAllFor:
			retain[name] = true
			continue
		case age < p.HourlyFor:
			bucket = t.Truncate(time.Hour)
		case age < p.DailyFor:
			bucket = t.Truncate(24 * time.Hour)
		default:
			continue
		}
		if first, ok := buckets[bucket]; !ok || first.After(t) {
			buckets[bucket] = t
		}
	}
	for _, t := range buckets {
		retain[byTime[t]] = true
	}
	if newest != "" {
		retain[newest] = true
	}
	for _, name := range sorted {
		if retain[name] {
			keep = append(keep, name)
		} else {
			remove = append(remove, name)
		}
	}
	return keep, remove
}

// PruneBackups applies PlanPrune to the store and returns the backups it
// removed (or, with dryRun, would remove). Backups named by a pending restore
// command are kept whatever their age: removing one would make etcd-manager
// stop etcd and then fail the restore. Each backup goes meta first, so a
// half-deleted backup is never listed, then every other object in its folder.
func PruneBackups(ctx context.Context, s backupstore.Store, now time.Time, p RetentionPolicy, dryRun bool) (removed []string, err error) {
	names, err := ListBackups(ctx, s)
	if err != nil {
		return nil, err
	}
	cmds, err := ListCommands(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("not pruning: cannot tell which backups pending commands need: %w", err)
	}
	pending := map[string]bool{}
	for _, c := range cmds {
		if c.RestoreBackup != nil {
			pending[c.RestoreBackup.Backup] = true
		}
	}
	_, plan := PlanPrune(names, now, p)
	var remove []string
	for _, name := range plan {
		if !pending[name] {
			remove = append(remove, name)
		}
	}
	if dryRun {
		return remove, nil
	}
	for _, name := range remove {
		if err := removeBackup(ctx, s, name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	return removed, nil
}

func removeBackup(ctx context.Context, s backupstore.Store, name string) error {
	objs, err := s.List(ctx, name+"/")
	if err != nil {
		return fmt.Errorf("pruning backup %s: %w", name, err)
	}
	if err := s.Delete(ctx, name+"/"+MetaFile); err != nil {
		return fmt.Errorf("pruning backup %s: %w", name, err)
	}
	var rest []string
	for _, o := range objs {
		if o.Key != name+"/"+MetaFile {
			rest = append(rest, o.Key)
		}
	}
	if err := s.Delete(ctx, rest...); err != nil {
		return fmt.Errorf("pruning backup %s (meta already removed): %w", name, err)
	}
	return nil
}
