package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// Target is one etcd cluster of one kops cluster and its backup store.
type Target struct {
	Cluster string
	Etcd    string
	Store   string
}

// Refresher keeps kopsdr_backup_last_success_timestamp_seconds and the
// drill gauges right when this process has taken no backup or drill yet
// (after a restart, or when another worker or etcd-manager itself took the
// backup): it reads the newest backup's name in each store, which carries
// its time, and the drill results beside the newest backups.
type Refresher struct {
	Metrics *Metrics
	// Targets says what to look at; it runs before every refresh, so new
	// schedules are picked up (see ScheduleTargets).
	Targets func(ctx context.Context) ([]Target, error)
	Logger  *slog.Logger
	// Every is the pause between refreshes (default 5 minutes).
	Every time.Duration
	// StoreTimeout bounds one store's listing (default 1 minute), so one
	// slow bucket cannot hold the others back for long.
	StoreTimeout time.Duration
}

// maxTargets bounds one refresh: the stores are listed one after another.
const maxTargets = 200

// Run refreshes at once and then every r.Every until ctx is done. It never
// fails: an error is logged and the next round tries again.
func (r *Refresher) Run(ctx context.Context) {
	every := r.Every
	if every <= 0 {
		every = 5 * time.Minute
	}
	for {
		r.RefreshOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// RefreshOnce lists the targets and sets each one's last-success gauge.
func (r *Refresher) RefreshOnce(ctx context.Context) {
	targets, err := r.Targets(ctx)
	if err != nil {
		r.log().Warn("metrics: listing what to refresh the backup gauges for", "error", err)
	}
	if len(targets) > maxTargets {
		r.log().Warn("metrics: too many backup stores; refreshing the first ones only", "stores", len(targets), "max", maxTargets)
		targets = targets[:maxTargets]
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		r.Metrics.KnowBackup(t.Cluster, t.Etcd)
		if err := r.refresh(ctx, t); err != nil {
			r.log().Warn("metrics: reading the newest backups and drills", "cluster", t.Cluster, "etcd", t.Etcd, "store", t.Store, "error", err)
		}
	}
}

// drillsRead bounds how many of the newest backups a refresh looks at for
// drill results; a drill schedule drills the newest one.
const drillsRead = 5

// refresh sets one target's gauges from its store: the time in the name of
// the newest listed backup (one with its meta), and the newest drill
// result among the newest backups.
func (r *Refresher) refresh(ctx context.Context, t Target) error {
	timeout := r.StoreTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	store, err := backupstore.Open(ctx, t.Store, backupstore.Options{})
	if err != nil {
		return err
	}
	names, err := etcdmanager.ListBackups(ctx, store)
	if err != nil {
		return err
	}
	// Sorted as strings, and etcd-manager's names sort by time: the last
	// one that parses is the newest.
	for i := len(names) - 1; i >= 0; i-- {
		if at, _, ok := etcdmanager.ParseBackupName(names[i]); ok {
			r.Metrics.SetLastBackup(t.Cluster, t.Etcd, at)
			break
		}
	}
	for i := len(names) - 1; i >= max(0, len(names)-drillsRead); i-- {
		res, ok, err := drill.ReadResult(ctx, store, names[i])
		switch {
		case err != nil:
			return err
		case !ok:
		case res.Passed:
			r.Metrics.DrillSucceeded(t.Cluster, t.Etcd, res.At, time.Duration(res.Timings.RTOSeconds*float64(time.Second)))
		default:
			r.Metrics.DrillFailed(t.Cluster, t.Etcd, res.At)
		}
	}
	return nil
}

func (r *Refresher) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
