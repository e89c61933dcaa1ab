package activities

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// Drill holds the activities of a restore drill: choose backups, and
// restore each into a throwaway etcd on the worker.
type Drill struct {
	// TempDir holds the scratch dirs (default os.TempDir()); it needs about
	// twice the largest snapshot free.
	TempDir string
	// Metrics, when set, is told every drill's outcome.
	Metrics DrillRecorder
}

// DrillRecorder is what the drill reports to (internal/metrics.Metrics).
type DrillRecorder interface {
	DrillSucceeded(cluster, etcd string, at time.Time, rto time.Duration)
	DrillFailed(cluster, etcd string, at time.Time)
}

// ErrTypeDrillScratch: the worker's scratch dir cannot hold the drill.
const ErrTypeDrillScratch = "DrillScratchSpace"

// staleScratchAge is when a scratch dir of another, live process counts
// as abandoned: longer than any drill runs.
const staleScratchAge = 12 * time.Hour

// SelectDrillsInput resolves a drill's backup selector in one store.
type SelectDrillsInput struct {
	Store     string `json:"store"`
	Selection string `json:"selection"` // latest, a name, latest-before:<time>, undrilled
	Max       int    `json:"max,omitempty"`
}

// SelectDrills lists the backups to drill, oldest first except that
// undrilled takes the newest ones without a result.
func (a *Drill) SelectDrills(ctx context.Context, in SelectDrillsInput) ([]string, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return nil, err
	}
	names, err := etcdmanager.ListBackups(ctx, store)
	if err != nil {
		return nil, storeErr(in.Store, err)
	}
	if in.Selection != api.Undrilled {
		name, err := chooseBackup(names, in.Selection, "backup")
		if err != nil {
			return nil, nonRetryable(err)
		}
		return []string{name}, nil
	}
	limit := in.Max
	if limit <= 0 {
		limit = api.DefaultMaxDrills
	}
	var todo []string
	for i := len(names) - 1; i >= 0 && len(todo) < limit; i-- {
		_, drilled, err := drill.ReadResult(ctx, store, names[i])
		if err != nil {
			return nil, storeErr(in.Store, err)
		}
		if !drilled {
			todo = append(todo, names[i])
		}
	}
	return todo, nil
}

// RunDrillInput names one backup to drill.
type RunDrillInput struct {
	Cluster     string `json:"cluster"`
	EtcdCluster string `json:"etcdCluster"`
	Store       string `json:"store"`
	Backup      string `json:"backup"`
}

// DrillProgress is the heartbeat detail: the stage and its bytes.
type DrillProgress struct {
	Stage string `json:"stage"`
	Bytes int64  `json:"bytes"`
}

// RunDrill drills one backup and stores the result beside it
// (kopsdr-drill.json). A backup that fails a check is a result with
// Passed false, not an error: errors are the drill's own trouble (store,
// scratch space) and are retried where that can help. A retried attempt
// starts over in a fresh scratch dir; what a killed attempt left is
// removed first.
func (a *Drill) RunDrill(ctx context.Context, in RunDrillInput) (api.DrillOutcome, error) {
	tmp := scratchRoot(a.TempDir)
	if removed, err := drill.CleanStale(tmp, staleScratchAge); len(removed) > 0 || err != nil {
		logger(ctx).Info("drill: removed scratch dirs of earlier drills", "dirs", removed, "error", err)
	}
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return api.DrillOutcome{}, err
	}

	var stage atomic.Pointer[DrillProgress]
	stage.Store(&DrillProgress{Stage: "download"})
	stop := heartbeatEvery(ctx, 5*time.Second, func() any { return *stage.Load() })
	defer stop()
	res, err := drill.Run(ctx, store, in.Backup, drill.Options{
		TempDir:  tmp,
		Events:   in.EtcdCluster == "events",
		Progress: func(s string, n int64) { stage.Store(&DrillProgress{Stage: s, Bytes: n}) },
	})
	if err != nil {
		return api.DrillOutcome{}, drillErr(in, tmp, err)
	}
	if err := drill.WriteResult(ctx, store, in.Backup, res); err != nil {
		return api.DrillOutcome{}, storeErr(in.Store, err)
	}
	a.record(in, res)
	return outcome(res), nil
}

// drillErr sorts the errors of a drill that could not run.
func drillErr(in RunDrillInput, tmp string, err error) error {
	switch {
	case drill.IsScratch(err):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"%v (the worker's temp dir %s; set TMPDIR for kopsdr-worker to a larger disk)", err, tmp), ErrTypeDrillScratch, err)
	case errors.Is(err, backupstore.ErrNotFound):
		return nonRetryable(inputerr.Wrap(err, "backup", in.Backup,
			"the backup is gone from "+in.Store+" (pruned since it was chosen?): list them with kopsdr list-backups"))
	}
	return storeErr(in.Store, err)
}

func (a *Drill) record(in RunDrillInput, res drill.Result) {
	if a.Metrics == nil {
		return
	}
	if res.Passed {
		a.Metrics.DrillSucceeded(in.Cluster, in.EtcdCluster, res.At, time.Duration(res.Timings.RTOSeconds*float64(time.Second)))
	} else {
		a.Metrics.DrillFailed(in.Cluster, in.EtcdCluster, res.At)
	}
}

// outcome is the part of a drill's result a workflow shows.
func outcome(r drill.Result) api.DrillOutcome {
	o := api.DrillOutcome{
		Backup: r.Backup, Passed: r.Passed, Revision: r.Revision, Keys: r.Counts.Total,
		CountsCompared: r.CountsCompared, SnapshotBytes: r.SnapshotBytes, EtcdVersion: r.BackupEtcdVersion,
		DownloadSeconds: r.Timings.DownloadSeconds, RestoreSeconds: r.Timings.RestoreSeconds,
		StartSeconds: r.Timings.StartSeconds, RTOSeconds: r.Timings.RTOSeconds,
	}
	for _, f := range r.Failures {
		o.Failures = append(o.Failures, api.DrillFailure{Check: f.Check, Reason: f.Reason})
	}
	return o
}
