package api

import (
	"fmt"
	"strings"
	"time"
)

// Point-in-time restore: a ChangeCapture workflow per etcd cluster records
// every change between full backups into a change store; MakeBackup turns
// a full backup plus the changes after it into an ordinary etcd-manager
// backup at any revision or second the changes reach.
const (
	WorkflowChangeCapture = "ChangeCapture"
	WorkflowMakeBackup    = "MakeBackup"

	// ErrTypePointNotRestorable: the chosen time or revision is outside what
	// the change log reaches (a gap, before the window, in the future). The
	// error names the nearest restorable points.
	ErrTypePointNotRestorable = "PointNotRestorable"
	// ErrTypeNothingCaptured: the change store holds no changes at all.
	ErrTypeNothingCaptured = "NothingCaptured"
)

// Change capture defaults.
const (
	// DefaultChangeWindow is how long captured changes are kept: a restore
	// to any point in the last 7 days.
	DefaultChangeWindow = 7 * 24 * time.Hour
	// DefaultSegmentInterval bounds the data a crash can lose: changes are
	// durable in the store at most this long after etcd commits them.
	DefaultSegmentInterval = 5 * time.Second
)

// CaptureWorkflowID is the one capture of one etcd cluster: starting it
// twice is refused by Temporal, not run twice.
func CaptureWorkflowID(cluster, etcdCluster string) string {
	return "pitr/" + cluster + "/" + etcdCluster
}

// MakeBackupWorkflowID is a make-backup of one etcd cluster at a point.
func MakeBackupWorkflowID(cluster, etcdCluster, point string) string {
	return "make-backup/" + cluster + "/" + etcdCluster + "/" + point
}

// ChangeCaptureInput captures every change to one etcd cluster. It runs
// until cancelled (`kopsdr pitr disable`), continuing as new as it grows.
type ChangeCaptureInput struct {
	Cluster     string `json:"cluster"`
	EtcdCluster string `json:"etcdCluster,omitempty"` // main (default) | events
	StateStore  string `json:"stateStore,omitempty"`
	BackupStore string `json:"backupStore,omitempty"` // instead of stateStore
	// ChangeStore is where the changes go; default derived from the
	// backup store (ChangeStoreFor).
	ChangeStore string   `json:"changeStore,omitempty"`
	Endpoints   []string `json:"endpoints"`
	CACert      string   `json:"cacert,omitempty"`
	Cert        string   `json:"cert,omitempty"`
	Key         string   `json:"key,omitempty"`
	SSEKMSKeyID string   `json:"sseKmsKeyId,omitempty"`
	// Window is how long changes are kept ("168h"); Interval how often
	// pending changes are written ("5s", at most 60s).
	Window   string `json:"window,omitempty"`
	Interval string `json:"interval,omitempty"`
	// RetentionDryRun lists what retention would delete without deleting.
	RetentionDryRun bool `json:"retentionDryRun,omitempty"`
}

// CaptureStatus is the "status" query of ChangeCapture.
type CaptureStatus struct {
	Step        string    `json:"step"` // backup | capture | retention | stopped
	ChangeStore string    `json:"changeStore"`
	Chain       string    `json:"chain,omitempty"`
	Revision    int64     `json:"revision,omitempty"` // last durable revision
	Observed    time.Time `json:"observed,omitzero"`  // when kopsdr observed it
	Gaps        []Gap     `json:"gaps,omitempty"`     // seen by this run
	LastError   string    `json:"lastError,omitempty"`
}

// Gap is a stretch of revisions no chain covers: where one chain ended and
// the next begins.
type Gap struct {
	After     string    `json:"after"` // the chain that ended
	Reason    string    `json:"reason"`
	FromRev   int64     `json:"fromRevision"` // first revision not covered
	ToRev     int64     `json:"toRevision"`   // last revision not covered (0 until the next chain starts)
	FromTime  time.Time `json:"fromTime"`
	ToTime    time.Time `json:"toTime,omitzero"`
	NextChain string    `json:"nextChain,omitempty"`
}

// MakeBackupInput makes an etcd-manager backup of one etcd cluster at a
// point: At (RFC 3339: the last revision kopsdr had observed by then) or
// Revision, not both.
type MakeBackupInput struct {
	Cluster     string `json:"cluster"`
	EtcdCluster string `json:"etcdCluster,omitempty"` // main (default) | events
	StateStore  string `json:"stateStore,omitempty"`
	BackupStore string `json:"backupStore,omitempty"`
	ChangeStore string `json:"changeStore,omitempty"`
	At          string `json:"at,omitempty"`
	Revision    int64  `json:"revision,omitempty"`
	SSEKMSKeyID string `json:"sseKmsKeyId,omitempty"`
}

// PointPlan is how a point will be made: from which full backup, replaying
// which revisions of which chain.
type PointPlan struct {
	Chain    string    `json:"chain"`
	Revision int64     `json:"revision"`
	Observed time.Time `json:"observed"` // when kopsdr observed Revision
	// Bases are the full backups to start from, best first: the newest one
	// whose snapshot turns out to be at or below Revision is used.
	Bases       []PlannedBase `json:"bases"`
	ReplayFrom  int64         `json:"replayFrom"` // first revision replayed with the first base (its lower bound + 1)
	Description string        `json:"description"`
}

// PlannedBase is one candidate full backup with what is known of its
// revision before it is restored: at least Revision, at most UpTo (0 when
// unknown).
type PlannedBase struct {
	Backup   string `json:"backup"`
	Revision int64  `json:"revision"`
	UpTo     int64  `json:"upTo,omitempty"`
}

// MakeBackupResult is the backup made.
type MakeBackupResult struct {
	Cluster      string    `json:"cluster"`
	EtcdCluster  string    `json:"etcdCluster"`
	Store        string    `json:"store"`
	Backup       string    `json:"backup"`
	Plan         PointPlan `json:"plan"`
	BaseBackup   string    `json:"baseBackup"`
	BaseRevision int64     `json:"baseRevision"`
	Revision     int64     `json:"revision"`
	Txns         int       `json:"txns"` // transactions replayed
	Bytes        int64     `json:"bytes"`
	Seconds      float64   `json:"seconds"`
}

// MakeBackupStatus is the "status" query of MakeBackup.
type MakeBackupStatus struct {
	Step      string     `json:"step"` // resolve | prepare | replay | verify | done | failed
	Plan      *PointPlan `json:"plan,omitempty"`
	Backup    string     `json:"backup,omitempty"`
	LastError string     `json:"lastError,omitempty"`
}

// Validate checks the input without the network.
func (in ChangeCaptureInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	ec := in.Etcd()
	if err := CheckEtcdCluster("etcdCluster", ec); err != nil {
		return err
	}
	if err := CheckEndpoints("endpoints", ec, in.Endpoints); err != nil {
		return err
	}
	if _, err := in.Stores(); err != nil {
		return err
	}
	if (in.Cert == "") != (in.Key == "") {
		return invalid("cert", in.Cert, "give both the etcd client certificate (cert) and its key (key), or neither")
	}
	if _, err := Duration("window", in.Window, DefaultChangeWindow); err != nil {
		return err
	}
	iv, err := Duration("interval", in.Interval, DefaultSegmentInterval)
	if err != nil {
		return err
	}
	if iv > time.Minute {
		return invalid("interval", in.Interval, "changes wait at most this long before they are durable; give at most 60s (default 5s)")
	}
	return nil
}

// Etcd is the etcd cluster, main by default.
func (in ChangeCaptureInput) Etcd() string { return orMain(in.EtcdCluster) }

// Stores are the backup store and the change store.
func (in ChangeCaptureInput) Stores() (PITRStores, error) {
	return pitrStores(in.StateStore, in.BackupStore, in.ChangeStore, in.Cluster, in.Etcd())
}

// Window and Interval with defaults (after Validate).
func (in ChangeCaptureInput) Durations() (window, interval time.Duration) {
	window, _ = Duration("window", in.Window, DefaultChangeWindow)
	interval, _ = Duration("interval", in.Interval, DefaultSegmentInterval)
	return window, interval
}

// Validate checks the input without the network; the point itself is
// checked against the change log by the workflow.
func (in MakeBackupInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	if err := CheckEtcdCluster("etcdCluster", in.Etcd()); err != nil {
		return err
	}
	if _, err := in.Stores(); err != nil {
		return err
	}
	_, err := CheckPoint("at", in.At, "revision", in.Revision)
	return err
}

// Etcd is the etcd cluster, main by default.
func (in MakeBackupInput) Etcd() string { return orMain(in.EtcdCluster) }

// Stores are the backup store and the change store.
func (in MakeBackupInput) Stores() (PITRStores, error) {
	return pitrStores(in.StateStore, in.BackupStore, in.ChangeStore, in.Cluster, in.Etcd())
}

// CheckPoint checks a point given as a time or a revision, exactly one.
func CheckPoint(atField, at, revField string, rev int64) (time.Time, error) {
	switch {
	case at != "" && rev != 0:
		return time.Time{}, invalid(revField, fmt.Sprint(rev), "give either "+atField+" (a time) or "+revField+", not both")
	case at == "" && rev == 0:
		return time.Time{}, invalid(atField, "", "give the point to restore to: "+atField+" (RFC 3339, e.g. 2026-11-30T07:15:00Z) or "+revField)
	case rev < 0:
		return time.Time{}, invalid(revField, fmt.Sprint(rev), "give a positive etcd revision")
	case at != "":
		return CheckTime(atField, at)
	}
	return time.Time{}, nil
}

// PITRStores are the two stores point-in-time restore works with.
type PITRStores struct {
	Backup string `json:"backup"`
	Change string `json:"change"`
}

func pitrStores(stateStore, backupStore, changeStore, cluster, etcdCluster string) (PITRStores, error) {
	b, err := BackupStoreFor(stateStore, backupStore, cluster, etcdCluster, "backupStore")
	if err != nil {
		return PITRStores{}, err
	}
	c, err := ChangeStoreFor(b, changeStore, "changeStore")
	return PITRStores{Backup: b, Change: c}, err
}

// ChangeStoreFor derives the change store from the backup store: kops's
// <…>/backups/etcd/<etcd cluster> becomes <…>/backups/kopsdr-changes/<etcd
// cluster>, a folder etcd-manager never lists, so its listing and pruning
// do not see the many small change segments. A backup store in another
// layout needs changeStore given.
func ChangeStoreFor(backupStore, changeStore, field string) (string, error) {
	if changeStore != "" {
		if err := checkStoreURL(field, changeStore); err != nil {
			return "", err
		}
		if strings.TrimRight(changeStore, "/") == strings.TrimRight(backupStore, "/") ||
			strings.HasPrefix(changeStore, strings.TrimRight(backupStore, "/")+"/") {
			return "", invalid(field, changeStore, "give a location outside the backup store "+backupStore+
				": etcd-manager lists everything under it, and would list every change segment")
		}
		return strings.TrimRight(changeStore, "/"), nil
	}
	b := strings.TrimRight(backupStore, "/")
	i := strings.LastIndex(b, "/backups/etcd/")
	if i < 0 || strings.Contains(b[i+len("/backups/etcd/"):], "/") {
		return "", invalid(field, "", "the backup store "+backupStore+" is not in kops's layout (<state store>/<cluster>/backups/etcd/<etcd cluster>): give changeStore, a location outside it")
	}
	return b[:i] + "/backups/kopsdr-changes/" + b[i+len("/backups/etcd/"):], nil
}

func orMain(ec string) string {
	if ec == "" {
		return "main"
	}
	return ec
}
