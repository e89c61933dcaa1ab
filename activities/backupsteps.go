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

// PrepareBackupAndReadSpec is PrepareBackup then ReadClusterSpec of the same
// store. Both only read (the name is reserved by the workflow's time, not
// by a write), so retrying them together is as safe as retrying either.
func (a *Backup) PrepareBackupAndReadSpec(ctx context.Context, in PrepareInput) (PreparedBackup, error) {
	prep, err := a.PrepareBackup(ctx, in)
	if err != nil {
		return PreparedBackup{}, err
	}
	spec, err := a.ReadClusterSpec(ctx, SpecInput{Store: in.Store})
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
}

// RetainAndPrune is ReadDailyRetention (when asked) then PruneBackups with
// the retention it read.
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
	pruned, err := a.PruneBackups(ctx, in.PruneInput)
	if err != nil {
		return res, err
	}
	res.Pruned = pruned
	return res, nil
}
