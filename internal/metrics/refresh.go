package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// Target is one etcd cluster of one kops cluster and its backup store.
type Target struct {
	Cluster string
	Etcd    string
	Store   string
}

// Refresher keeps kopsdr_backup_last_success_timestamp_seconds right when
// this process has taken no backup yet (after a restart, or when another
// worker or etcd-manager itself took it): it reads the newest backup's name
// in each store, which carries its time.
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
		at, ok, err := r.newest(ctx, t.Store)
		switch {
		case err != nil:
			r.log().Warn("metrics: reading the newest backup", "cluster", t.Cluster, "etcd", t.Etcd, "store", t.Store, "error", err)
		case ok:
			r.Metrics.SetLastBackup(t.Cluster, t.Etcd, at)
		}
	}
}

// newest is the time in the name of the store's newest listed backup (one
// with its meta), and false when the store holds none.
func (r *Refresher) newest(ctx context.Context, url string) (time.Time, bool, error) {
	timeout := r.StoreTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	store, err := backupstore.Open(ctx, url, backupstore.Options{})
	if err != nil {
		return time.Time{}, false, err
	}
	names, err := etcdmanager.ListBackups(ctx, store)
	if err != nil {
		return time.Time{}, false, err
	}
	// Sorted as strings, and etcd-manager's names sort by time: the last
	// one that parses is the newest.
	for i := len(names) - 1; i >= 0; i-- {
		if t, _, ok := etcdmanager.ParseBackupName(names[i]); ok {
			return t, true, nil
		}
	}
	return time.Time{}, false, nil
}

func (r *Refresher) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
