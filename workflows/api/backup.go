package api

import (
	"fmt"
	"time"
)

// EtcdBackupInput backs up one etcd cluster (main or events) of one kops
// cluster. Only file paths on the worker travel here, never key material.
type EtcdBackupInput struct {
	Cluster     string   `json:"cluster"`
	EtcdCluster string   `json:"etcdCluster"`           // main | events
	StateStore  string   `json:"stateStore,omitempty"`  // kops state store; the backup store is <stateStore>/<cluster>/backups/etcd/<etcdCluster>
	BackupStore string   `json:"backupStore,omitempty"` // or the backup store itself (not both)
	Endpoints   []string `json:"endpoints"`
	BackupOptions
}

// BackupOptions are the settings a backup of main and one of events share.
// Embedded, their fields stay at the top level of the JSON input.
type BackupOptions struct {
	CACert      string     `json:"cacert,omitempty"`
	Cert        string     `json:"cert,omitempty"`
	Key         string     `json:"key,omitempty"`
	SSEKMSKeyID string     `json:"sseKmsKeyId,omitempty"`
	Retention   *Retention `json:"retention,omitempty"`
	NoPrune     bool       `json:"noPrune,omitempty"`
	PruneDryRun bool       `json:"pruneDryRun,omitempty"`
	// MaxAttempts bounds how often an unreachable etcd or store is retried
	// (with exponential backoff from 2 s) before the backup fails. Default 8.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// CompressionLevel is the gzip level of etcd.backup.gz, 1 (fastest) to
	// 9 (smallest); 0 means the default, chosen by measurement (see the
	// README's performance section). Every level is plain gzip that
	// etcd-manager restores.
	CompressionLevel int `json:"compressionLevel,omitempty"`
}

// DefaultCompressionLevel is the gzip level of a backup whose input sets
// none, chosen from `make bench` (see the README's performance section).
const DefaultCompressionLevel = 1

// Retention is etcd-manager's pruning policy, as Go durations ("1h", "168h").
type Retention struct {
	KeepAllFor string `json:"keepAllFor,omitempty"` // default 1h
	HourlyFor  string `json:"hourlyFor,omitempty"`  // default 168h (7 days)
	DailyFor   string `json:"dailyFor,omitempty"`   // default 2160h (90 days)
}

// Retention defaults: etcd-manager's own.
const (
	DefaultKeepAllFor = time.Hour
	DefaultHourlyFor  = 7 * 24 * time.Hour
	DefaultDailyFor   = 90 * 24 * time.Hour
)

// EtcdBackupResult describes the backup that was written.
type EtcdBackupResult struct {
	Cluster     string   `json:"cluster"`
	EtcdCluster string   `json:"etcdCluster"`
	Store       string   `json:"store"`
	Backup      string   `json:"backup"`
	Bytes       int64    `json:"bytes"`  // size of etcd.backup.gz
	SHA256      string   `json:"sha256"` // of etcd.backup.gz
	RawBytes    int64    `json:"rawBytes"`
	RawSHA256   string   `json:"rawSha256"`
	Revision    int64    `json:"revision"`
	EtcdVersion string   `json:"etcdVersion"`
	Endpoint    string   `json:"endpoint"`
	Pruned      []string `json:"pruned"`
	// Abandoned are the folders without a meta that backups left a day or
	// more ago and that no open run reserved: removed by the prune (with
	// PruneDryRun, would be). docs/formats.md, "Abandoned folders".
	Abandoned   []string `json:"abandoned,omitempty"`
	PruneDryRun bool     `json:"pruneDryRun,omitempty"`
	// RetentionRule says where the daily retention of the prune came from:
	// the input, the kops cluster spec, or kops's default.
	RetentionRule string `json:"retentionRule,omitempty"`
}

// BackupStatus is what the "status" query of both backup workflows returns.
type BackupStatus struct {
	Step      string `json:"step"`
	Backup    string `json:"backup,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// ClusterBackupInput backs up main and events of one kops cluster. It is the
// input the backup schedule uses.
type ClusterBackupInput struct {
	Cluster    string     `json:"cluster"`
	StateStore string     `json:"stateStore,omitempty"`
	Main       EtcdTarget `json:"main"`
	Events     EtcdTarget `json:"events"`
	BackupOptions
}

// EtcdTarget is where one etcd cluster answers and, optionally, its store.
type EtcdTarget struct {
	Endpoints   []string `json:"endpoints"`
	BackupStore string   `json:"backupStore,omitempty"`
}

// ClusterBackupResult has one result per etcd cluster.
type ClusterBackupResult struct {
	Main   *EtcdBackupResult `json:"main"`
	Events *EtcdBackupResult `json:"events"`
}

// Validate checks everything that can be checked without the network: the
// CLI calls it before starting the workflow, the workflow again.
func (in EtcdBackupInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	if err := CheckEtcdCluster("etcdCluster", in.EtcdCluster); err != nil {
		return err
	}
	if err := CheckEndpoints("endpoints", in.EtcdCluster, in.Endpoints); err != nil {
		return err
	}
	if _, err := in.Store(); err != nil {
		return err
	}
	return in.BackupOptions.Validate()
}

// Store is the backup store this input names.
func (in EtcdBackupInput) Store() (string, error) {
	return BackupStoreFor(in.StateStore, in.BackupStore, in.Cluster, in.EtcdCluster, "backupStore")
}

// Validate checks the options both etcd clusters share.
func (o BackupOptions) Validate() error {
	if (o.Cert == "") != (o.Key == "") {
		field, val := "key", o.Key
		if o.Cert == "" {
			field, val = "cert", o.Cert
		}
		return invalid(field, val, "give both the etcd client certificate (cert) and its key (key), or neither")
	}
	if o.NoPrune && o.PruneDryRun {
		return invalid("pruneDryRun", "true", "noPrune skips pruning altogether: drop one of noPrune and pruneDryRun")
	}
	if o.NoPrune && o.Retention != nil {
		return invalid("retention", "set", "noPrune skips pruning, so a retention would be ignored: drop one of them")
	}
	if _, _, _, err := o.Retention.Durations(); err != nil {
		return err
	}
	if o.CompressionLevel < 0 || o.CompressionLevel > 9 {
		return invalid("compressionLevel", fmt.Sprint(o.CompressionLevel),
			"give a gzip level from 1 (fastest) to 9 (smallest), or leave it out for the default")
	}
	return checkAttempts("maxAttempts", o.MaxAttempts)
}

// Durations are the retention's periods with etcd-manager's defaults
// filled in.
func (r *Retention) Durations() (keepAll, hourly, daily time.Duration, err error) {
	keepAll, hourly, daily = DefaultKeepAllFor, DefaultHourlyFor, DefaultDailyFor
	if r == nil {
		return keepAll, hourly, daily, nil
	}
	if keepAll, err = Duration("retention.keepAllFor", r.KeepAllFor, keepAll); err != nil {
		return
	}
	if hourly, err = Duration("retention.hourlyFor", r.HourlyFor, hourly); err != nil {
		return
	}
	daily, err = Duration("retention.dailyFor", r.DailyFor, daily)
	return
}

// ForEtcd is the child input for one etcd cluster.
func (in ClusterBackupInput) ForEtcd(etcdCluster string) EtcdBackupInput {
	t := in.Main
	if etcdCluster == "events" {
		t = in.Events
	}
	return EtcdBackupInput{
		Cluster: in.Cluster, EtcdCluster: etcdCluster, StateStore: in.StateStore, BackupStore: t.BackupStore,
		Endpoints: t.Endpoints, BackupOptions: in.BackupOptions,
	}
}

// Validate checks both halves, naming fields as this input spells them
// ("main.endpoints").
func (in ClusterBackupInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	for _, ec := range EtcdClusters {
		child := in.ForEtcd(ec)
		if err := CheckEndpoints(ec+".endpoints", ec, child.Endpoints); err != nil {
			return err
		}
		if _, err := BackupStoreFor(child.StateStore, child.BackupStore, in.Cluster, ec, ec+".backupStore"); err != nil {
			return err
		}
	}
	return in.BackupOptions.Validate()
}
