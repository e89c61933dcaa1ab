package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// PendingCommandsInput names the backup stores to look in, and how the
// operator names them, so the message can give exact command lines.
type PendingCommandsInput struct {
	Cluster    string                `json:"cluster"`
	StateStore string                `json:"stateStore,omitempty"`
	Stores     []PendingCommandStore `json:"stores"`
}

// PendingCommandStore is one etcd cluster's backup store.
type PendingCommandStore struct {
	EtcdCluster string `json:"etcdCluster"` // main or events
	Store       string `json:"store"`       // the backup store URL
	// Override is true when the store was given directly rather than
	// derived from the state store; the withdraw line then names it.
	Override bool `json:"override,omitempty"`
}

// PendingCommandsResult lists the restore commands still queued.
type PendingCommandsResult struct {
	Commands []PendingCommand `json:"commands"`
	// Message is for a failure message: every queued command, who wrote it
	// and the exact command that withdraws it; "" when none is queued.
	Message string `json:"message"`
}

// PendingCommand is one queued restore command.
type PendingCommand struct {
	EtcdCluster string    `json:"etcdCluster"`
	Store       string    `json:"store"`
	Folder      string    `json:"folder"` // control/<UTC time>-000000
	Backup      string    `json:"backup"`
	QueuedAt    time.Time `json:"queuedAt"`
	ByKopsdr    bool      `json:"byKopsdr"`
	WorkflowID  string    `json:"workflowId,omitempty"` // when kopsdr wrote it
	// Withdraw is the command line that removes it: kopsdr restore withdraw
	// for kopsdr's, etcd-manager-ctl delete-command for anyone else's.
	Withdraw string `json:"withdraw"`
}

// PendingCommands reports the restore commands still queued in the given
// stores; it changes nothing. A failed or timed-out restore calls it so its
// message says that a command is queued (the next etcd-manager start
// performs it) and how to withdraw it.
func (a *Restore) PendingCommands(ctx context.Context, in PendingCommandsInput) (PendingCommandsResult, error) {
	res := PendingCommandsResult{Commands: []PendingCommand{}}
	var msgs []string
	for _, st := range in.Stores {
		store, err := openStore(ctx, st.Store)
		if err != nil {
			return res, err
		}
		pending, err := etcdmanager.ListPending(ctx, store)
		if err != nil {
			return res, storeErr(st.Store, err)
		}
		loc := etcdmanager.Location{Cluster: in.Cluster, StateStore: in.StateStore, Etcd: st.EtcdCluster}
		if st.Override || in.StateStore == "" {
			loc.BackupStore = st.Store
		}
		for _, p := range pending {
			pc := PendingCommand{
				EtcdCluster: st.EtcdCluster, Store: st.Store, Folder: etcdmanager.ControlDir + "/" + p.Name,
				Backup: p.Backup(), QueuedAt: time.Unix(0, p.Timestamp).UTC(), ByKopsdr: p.ByKopsdr(),
				Withdraw: etcdmanager.DeleteCommandHint(st.Store, p.Command),
			}
			if p.ByKopsdr() {
				pc.WorkflowID, pc.Withdraw = p.Marker.WorkflowID, loc.WithdrawCommand()
			}
			res.Commands = append(res.Commands, pc)
		}
		if m := etcdmanager.DescribePending(st.Store, loc, pending); m != "" {
			msgs = append(msgs, m)
		}
	}
	for i, m := range msgs {
		if i > 0 {
			res.Message += "\n"
		}
		res.Message += m
	}
	return res, nil
}

// commandMarker is the marker of a command this activity's workflow writes.
func commandMarker(ctx context.Context) etcdmanager.Marker {
	m := etcdmanager.Marker{WrittenAt: time.Now().UTC()}
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		m.WorkflowID, m.RunID = info.WorkflowExecution.ID, info.WorkflowExecution.RunID
	}
	return m
}

// ensureMarked marks a command an earlier attempt of this workflow wrote
// when its marker is missing (a crash between the two writes cannot leave
// that, but a command written by kopsdr before markers can).
func ensureMarked(ctx context.Context, store backupstore.Store, c etcdmanager.Command) error {
	pending, err := etcdmanager.ListPending(ctx, store)
	if err != nil {
		return err
	}
	for _, p := range pending {
		if p.Name == c.Name && p.ByKopsdr() {
			return nil
		}
	}
	return etcdmanager.MarkCommand(ctx, store, c, commandMarker(ctx))
}
