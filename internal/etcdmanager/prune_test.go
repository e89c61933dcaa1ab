package etcdmanager_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

func TestDefaultRetention(t *testing.T) {
	assert.Equal(t, etcdmanager.RetentionPolicy{
		KeepAllFor: time.Hour, HourlyFor: 7 * 24 * time.Hour, DailyFor: 90 * 24 * time.Hour,
	}, etcdmanager.DefaultRetention())
}

func TestPlanPrune(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 30, 0, 0, time.UTC)
	// ago names the backup taken d before now, sequence 1.
	ago := func(d time.Duration) string { return etcdmanager.BackupName(now.Add(-d), 1) }
	at := func(s string) string { return s + "-000001" }
	const day = 24 * time.Hour

	for _, tc := range []struct {
		name         string
		names        []string
		policy       etcdmanager.RetentionPolicy // zero: DefaultRetention
		keep, remove []string
	}{
		{
			name: "empty store",
		},
		{
			name:  "everything younger than an hour is kept",
			names: []string{ago(59 * time.Minute), ago(30 * time.Minute), ago(15 * time.Minute), ago(time.Second), ago(0)},
			keep:  []string{ago(59 * time.Minute), ago(30 * time.Minute), ago(15 * time.Minute), ago(time.Second), ago(0)},
		},
		{
			name: "first backup of each hour, hour boundaries in UTC",
			names: []string{
				at("2026-11-21T09:00:00Z"), at("2026-11-21T09:15:00Z"), at("2026-11-21T09:59:59Z"), // one hour
				at("2026-11-21T10:00:00Z"), at("2026-11-21T10:45:00Z"), // next hour starts exactly at :00
				at("2026-11-21T11:29:59Z"), // age 1h0m1s: hourly, its hour's only backup
				at("2026-11-21T11:30:00Z"), // age exactly 1h: no longer "younger than 1h"
				at("2026-11-21T11:30:01Z"), // younger than 1h: kept
			},
			keep: []string{
				at("2026-11-21T09:00:00Z"), at("2026-11-21T10:00:00Z"), at("2026-11-21T11:29:59Z"), at("2026-11-21T11:30:01Z"),
			},
			remove: []string{
				at("2026-11-21T09:15:00Z"), at("2026-11-21T09:59:59Z"), at("2026-11-21T10:45:00Z"), at("2026-11-21T11:30:00Z"),
			},
		},
		{
			name: "first backup of each UTC day after 7 days",
			names: []string{
				at("2026-11-10T00:00:00Z"), at("2026-11-10T13:00:00Z"), at("2026-11-10T23:59:59Z"),
				at("2026-11-11T05:00:00Z"), at("2026-11-11T06:00:00Z"), ago(time.Minute),
			},
			keep:   []string{at("2026-11-10T00:00:00Z"), at("2026-11-11T05:00:00Z"), ago(time.Minute)},
			remove: []string{at("2026-11-10T13:00:00Z"), at("2026-11-10T23:59:59Z"), at("2026-11-11T06:00:00Z")},
		},
		{
			name: "hourly up to exactly 7 days, daily from then on",
			// now-7d = 2026-11-14T12:30:00Z.
			names: []string{
				ago(7*day - time.Second),                  // 12:30:01, hourly: first of its hour
				ago(7*day - time.Second - 10*time.Minute), // 12:40:01, hourly, same hour
				ago(7 * day),                // 12:30:00, exactly 7d old: daily
				ago(7*day + 20*time.Minute), // 12:10:00, daily: first of its day
				ago(time.Minute),
			},
			keep:   []string{ago(7*day + 20*time.Minute), ago(7*day - time.Second), ago(time.Minute)},
			remove: []string{ago(7 * day), ago(7*day - time.Second - 10*time.Minute)},
		},
		{
			name: "older than the daily retention is removed",
			names: []string{
				ago(90*day + time.Second), ago(91 * day), ago(89 * day), ago(2 * time.Minute),
			},
			keep:   []string{ago(89 * day), ago(2 * time.Minute)},
			remove: []string{ago(91 * day), ago(90*day + time.Second)},
		},
		{
			name:   "the newest backup is kept whatever its age",
			names:  []string{ago(200 * day), ago(120 * day), ago(100 * day)},
			keep:   []string{ago(100 * day)},
			remove: []string{ago(200 * day), ago(120 * day)},
		},
		{
			name: "names that do not parse are never removed",
			names: []string{
				"manual-before-upgrade", "2026-01-01T00:00:00Z-manual", "2026-01-01T00:00:00Z",
				"2026-01-01T00:00:00.5Z-000001", "2026-01-01T01:00:00+01:00-000001",
				ago(100 * day), ago(time.Minute),
			},
			keep: []string{
				"2026-01-01T00:00:00.5Z-000001", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z-manual",
				"2026-01-01T01:00:00+01:00-000001", ago(time.Minute), "manual-before-upgrade",
			},
			remove: []string{ago(100 * day)},
		},
		{
			name: "same second: like etcd-manager, the last in sorted order is the one kept",
			names: []string{
				"2026-11-21T09:00:00Z-000002", "2026-11-21T09:00:00Z-000001", "2026-11-21T09:10:00Z-000003", ago(time.Minute),
			},
			keep:   []string{"2026-11-21T09:00:00Z-000002", ago(time.Minute)},
			remove: []string{"2026-11-21T09:00:00Z-000001", "2026-11-21T09:10:00Z-000003"},
		},
		{
			name:   "like etcd-manager, a day bucket and its 00:00 hour bucket are one",
			policy: etcdmanager.RetentionPolicy{KeepAllFor: time.Hour, HourlyFor: 12*time.Hour + 10*time.Minute, DailyFor: 90 * day},
			// A HourlyFor that ends at 2026-11-21T00:20Z: 00:10 is daily-aged
			// (day key 2026-11-21T00:00), 00:40 hourly-aged (hour key
			// 2026-11-21T00:00): the same key, so only the earlier survives.
			names:  []string{at("2026-11-21T00:10:00Z"), at("2026-11-21T00:40:00Z"), at("2026-11-21T01:40:00Z")},
			keep:   []string{at("2026-11-21T00:10:00Z"), at("2026-11-21T01:40:00Z")},
			remove: []string{at("2026-11-21T00:40:00Z")},
		},
		{
			name:  "future timestamps (clock skew) are kept",
			names: []string{ago(-time.Hour), ago(-48 * time.Hour)},
			keep:  []string{ago(-time.Hour), ago(-48 * time.Hour)},
		},
		{
			name:   "input order does not matter; output is sorted",
			names:  []string{ago(30 * time.Minute), ago(3 * day), ago(3*day + time.Minute)},
			keep:   []string{ago(3*day + time.Minute), ago(30 * time.Minute)},
			remove: []string{ago(3 * day)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.policy
			if p == (etcdmanager.RetentionPolicy{}) {
				p = etcdmanager.DefaultRetention()
			}
			input := append([]string(nil), tc.names...)
			keep, remove := etcdmanager.PlanPrune(tc.names, now, p)
			assert.Equal(t, tc.keep, keep, "keep")
			assert.Equal(t, tc.remove, remove, "remove")
			assert.Equal(t, input, tc.names, "the input slice is not modified")
		})
	}
}
