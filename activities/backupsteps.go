package activities

import (
	"context"
	"time"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// Each activity a backup runs costs its workflow six history events (three
// of the activity, three of the workflow task that follows), and a fleet's
// server stores and replays every one of them, every hour, for every
// cluster. The two activities below each do the work of two that always run
// back to back, keeping an EtcdBackup under 40 events.

// PreparedBackup is the reserved name and the cluster spec, if kops wrote one.
type PreparedBackup struct {
	Name string                   `json:"name"`
	Spec *etcdmanager.ClusterSpec `json:"spec,omitempty"`
}

// PrepareBackupAndReadSpec is ReadClusterSpec then PrepareBackup of the
// same store. The spec is read first because reserving the name writes
// (backupname.go), and a spec that cannot be read would otherwise leave
// that reservation behind with no name for the workflow to discard. A
// retry of both is as safe as a retry of either: the run gets the name it
// reserved before.
func (a *Backup) PrepareBackupAndReadSpec(ctx context.Context, in PrepareInput) (PreparedBackup, error) {
	spec, err := a.ReadClusterSpec(ctx, SpecInput{Store: in.Store})
	if err != nil {
		return PreparedBackup{}, err
	}
	prep, err := a.PrepareBackup(ctx, in)
	if err != nil {
		return PreparedBackup{}, err
	}
	return PreparedBackup{Name: prep.Name, Spec: spec.Spec}, nil
}

// RetainAndPruneInput is a prune, and where to read its daily retention
// from when the backup's input left it open.
type RetainAndPruneInput struct {
	PruneInput
	// ReadDaily, when set, replaces Retention.DailyFor with the daily
	// retention of the kops cluster spec (ReadDailyRetention).
	ReadDaily *RetentionInput `json:"readDaily,omitempty"`
}

// RetainAndPruneResult is what was pruned, and which daily rule applied
// when it was read from the cluster spec.
type RetainAndPruneResult struct {
	Pruned []string `json:"pruned"`
	Rule   string   `json:"rule,omitempty"`
	// Abandoned are the folders without a meta it removed (discardAbandoned).
	Abandoned []string `json:"abandoned,omitempty"`
}

// RetainAndPrune is ReadDailyRetention (when asked), then PruneBackups with
// the retention it read, then the removal of abandoned folders.
func (a *Backup) RetainAndPrune(ctx context.Context, in RetainAndPruneInput) (RetainAndPruneResult, error) {
	var res RetainAndPruneResult
	if in.ReadDaily != nil {
		r, err := a.ReadDailyRetention(ctx, *in.ReadDaily)
		if err != nil {
			return res, err
		}
		in.Retention.DailyFor = time.Duration(r.Days) * 24 * time.Hour
		res.Rule = r.Rule
	}
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return res, err
	}
	if res.Pruned, err = etcdmanager.PruneBackups(ctx, store, in.Now, in.Retention, in.DryRun); err != nil {
		return res, storeErr(in.Store, err)
	}
	res.Abandoned, err = a.discardAbandoned(ctx, store, in.Now, in.DryRun)
	return res, storeErr(in.Store, err)
}
