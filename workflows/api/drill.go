package api

import "strconv"

// RestoreDrillInput drills backups of one etcd cluster of one kops
// cluster: each is restored into a throwaway etcd on the worker and read
// back. Nothing touches the cluster the backups came from.
type RestoreDrillInput struct {
	Cluster     string `json:"cluster"`
	EtcdCluster string `json:"etcdCluster,omitempty"` // main (default) | events
	StateStore  string `json:"stateStore,omitempty"`
	BackupStore string `json:"backupStore,omitempty"` // instead of stateStore
	// Backup is "latest" (default), a backup name, "latest-before:<time>",
	// or "undrilled": every listed backup without a drill result, newest
	// first, at most MaxBackups.
	Backup     string `json:"backup,omitempty"`
	MaxBackups int    `json:"maxBackups,omitempty"` // with undrilled; default 10
}

// Undrilled selects the backups that have no drill result yet.
const Undrilled = "undrilled"

// DefaultMaxDrills bounds one run of "undrilled": each drill takes a full
// download and restore.
const DefaultMaxDrills = 10

// ClusterDrillInput drills main and events of one kops cluster, as children;
// it is what a drill schedule runs.
type ClusterDrillInput struct {
	Cluster    string `json:"cluster"`
	StateStore string `json:"stateStore,omitempty"`
	// MainBackupStore and EventsBackupStore replace the state store's
	// folders, as in ClusterBackupInput's main.backupStore.
	MainBackupStore   string `json:"mainBackupStore,omitempty"`
	EventsBackupStore string `json:"eventsBackupStore,omitempty"`
	Backup            string `json:"backup,omitempty"`
	MaxBackups        int    `json:"maxBackups,omitempty"`
}

// DrillOutcome is one drilled backup, as the workflow's result and status
// show it; the full record is <backup>/kopsdr-drill.json.
type DrillOutcome struct {
	Backup   string         `json:"backup"`
	Passed   bool           `json:"passed"`
	Failures []DrillFailure `json:"failures,omitempty"`
	Revision int64          `json:"revision,omitempty"`
	Keys     int64          `json:"keys"`
	// CountsCompared: the key counts matched (or not) those the backup
	// recorded; false for etcd-manager's own backups, which record none.
	CountsCompared  bool    `json:"countsCompared"`
	SnapshotBytes   int64   `json:"snapshotBytes"`
	EtcdVersion     string  `json:"etcdVersion,omitempty"`
	DownloadSeconds float64 `json:"downloadSeconds"`
	RestoreSeconds  float64 `json:"restoreSeconds"`
	StartSeconds    float64 `json:"startSeconds"`
	// RTOSeconds is download + restore + start: what restoring this backup
	// took here. 0 when it did not restore.
	RTOSeconds float64 `json:"rtoSeconds"`
}

// DrillFailure is one failed check: verify, restore, start, read, required
// or count.
type DrillFailure struct {
	Check  string `json:"check"`
	Reason string `json:"reason"`
}

// RestoreDrillResult lists the drilled backups. A run whose drills do not
// all pass fails with ErrTypeDrillFailed, carrying this as its details.
type RestoreDrillResult struct {
	Cluster     string         `json:"cluster"`
	EtcdCluster string         `json:"etcdCluster"`
	Store       string         `json:"store"`
	Drills      []DrillOutcome `json:"drills"`
}

// ClusterDrillResult has one result per etcd cluster.
type ClusterDrillResult struct {
	Main   *RestoreDrillResult `json:"main"`
	Events *RestoreDrillResult `json:"events"`
}

// DrillStatus is what the "status" query of both drill workflows returns.
type DrillStatus struct {
	Step   string         `json:"step"`             // validate, select, drill, done, failed
	Backup string         `json:"backup,omitempty"` // the one being drilled
	Done   []DrillOutcome `json:"done,omitempty"`
	// Pending are the backups still to drill in this run.
	Pending   []string `json:"pending,omitempty"`
	LastError string   `json:"lastError,omitempty"`
}

// ErrTypeDrillFailed ends a drill run in which a backup failed a check.
const ErrTypeDrillFailed = "DrillFailed"

// Validate checks the input without the network.
func (in RestoreDrillInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	if err := CheckEtcdCluster("etcdCluster", in.EtcdClusterOrDefault()); err != nil {
		return err
	}
	if _, err := in.Store(); err != nil {
		return err
	}
	return checkDrillSelection("backup", in.Backup, "maxBackups", in.MaxBackups)
}

// EtcdClusterOrDefault is main unless the input names events.
func (in RestoreDrillInput) EtcdClusterOrDefault() string {
	if in.EtcdCluster == "" {
		return "main"
	}
	return in.EtcdCluster
}

// Store is the backup store this input names.
func (in RestoreDrillInput) Store() (string, error) {
	return BackupStoreFor(in.StateStore, in.BackupStore, in.Cluster, in.EtcdClusterOrDefault(), "backupStore")
}

// Selection is the backup selector with its default.
func (in RestoreDrillInput) Selection() string {
	if in.Backup == "" {
		return "latest"
	}
	return in.Backup
}

// ForEtcd is the child input for one etcd cluster.
func (in ClusterDrillInput) ForEtcd(etcdCluster string) RestoreDrillInput {
	store := in.MainBackupStore
	if etcdCluster == "events" {
		store = in.EventsBackupStore
	}
	return RestoreDrillInput{
		Cluster: in.Cluster, EtcdCluster: etcdCluster, StateStore: in.StateStore, BackupStore: store,
		Backup: in.Backup, MaxBackups: in.MaxBackups,
	}
}

// Validate checks both halves, naming fields as this input spells them.
func (in ClusterDrillInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	for _, ec := range EtcdClusters {
		child := in.ForEtcd(ec)
		if _, err := BackupStoreFor(child.StateStore, child.BackupStore, in.Cluster, ec, ec+"BackupStore"); err != nil {
			return err
		}
	}
	if in.Backup != "" && in.Backup != "latest" && in.Backup != Undrilled {
		// One backup name cannot name a backup of main and one of events.
		return invalid("backup", in.Backup, `use "latest" or "undrilled" for both etcd clusters, or drill one with RestoreDrill`)
	}
	return checkDrillSelection("backup", in.Backup, "maxBackups", in.MaxBackups)
}

func checkDrillSelection(field, sel, maxField string, maxBackups int) error {
	if maxBackups < 0 || maxBackups > 100 {
		return invalid(maxField, strconv.Itoa(maxBackups), "give 1 to 100 (default 10): each drill downloads and restores a whole backup")
	}
	if maxBackups > 0 && sel != Undrilled {
		return invalid(maxField, strconv.Itoa(maxBackups), `maxBackups only bounds backup "undrilled"; drop it`)
	}
	if sel == "" || sel == Undrilled {
		return nil
	}
	if err := CheckBackupSelector(field, sel); err != nil {
		return invalid(field, sel, "use latest, undrilled, a backup name such as 2026-11-21T22:52:16Z-000001 (kopsdr list-backups), or latest-before:<RFC 3339 time>")
	}
	return nil
}
