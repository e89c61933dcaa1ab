// Package api is kopsdr's contract: every type an operator types or reads
// (workflow inputs, results, status queries), the names of workflows,
// queries, updates and signals, workflow ids, error types, and the one
// validation of each input. The CLI checks input with it before it starts
// anything; the workflows check it again.
//
// It imports only the standard library and kopsdr's own leaf packages, so
// naming a type here links none of the worker's Docker, EC2 or etcd code.
package api

import (
	"fmt"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// TaskQueue is the one task queue every kopsdr workflow and activity uses.
const TaskQueue = "kopsdr"

// Workflow type names, as `temporal workflow start --type` takes them.
const (
	WorkflowEtcdBackup         = "EtcdBackup"
	WorkflowClusterBackup      = "ClusterBackup"
	WorkflowEtcdManagerRestore = "EtcdManagerRestore"
	WorkflowVolumeSnapshot     = "VolumeSnapshot"
	WorkflowVolumeRestore      = "VolumeRestore"
)

// QueryStatus is the query every kopsdr workflow answers.
const QueryStatus = "status"

// Approval updates and signals: the same names and payload (Approval) for
// every gated workflow. An update answers at once whether it was taken; a
// signal (what the Web UI and `temporal workflow signal` send) is the same
// decision without the answer.
const (
	UpdateApprove = "approve"
	UpdateReject  = "reject"
	SignalApprove = UpdateApprove
	SignalReject  = UpdateReject
)

// Error types a kopsdr workflow can end with (Temporal ApplicationError
// types). They are stable: scripts and alerts may match on them.
const (
	ErrTypeInvalidInput      = inputerr.Type // the input is wrong; nothing was changed
	ErrTypeAccessDenied      = "AccessDenied"
	ErrTypeCorruptBackup     = "CorruptBackup"
	ErrTypeBackupNameTaken   = "BackupNameTaken" // another backup holds this backup's name; this one was not finalized
	ErrTypeEtcdUnreachable   = "EtcdUnreachable"
	ErrTypePreflight         = "PreflightFailed" // a restore's pre-flight refused; nothing was changed
	ErrTypeRestoreTimeout    = "RestoreTimeout"
	ErrTypeMasterUnreachable = "MasterUnreachable"
	ErrTypeRestoreRejected   = "RestoreRejected"
	ErrTypeApprovalTimedOut  = "ApprovalTimedOut"
	ErrTypeRestoreFailed     = "RestoreFailed"    // a step failed after approval; see rolledBack
	ErrTypeMemberLeftBehind  = "MemberLeftBehind" // a member stayed on the old cluster after the restore

	// The legacy volume path.
	ErrTypePreflightRefused   = "PreflightRefused" // the volume restore's pre-flight refused; nothing was changed
	ErrTypeSnapshotFailed     = "SnapshotFailed"
	ErrTypeVolumeFailed       = "VolumeFailed"
	ErrTypeEncryptionMismatch = "EncryptionMismatch"
	ErrTypeAlreadyReplaced    = "AlreadyReplaced"
	ErrTypeEC2Refused         = "EC2Refused"
)

// RestoreWorkflowID is the one id a restore of a cluster runs under, both
// the etcd-manager and the volume restore, so a second restore of the same
// cluster is refused while one runs.
func RestoreWorkflowID(cluster string) string { return "restore/" + cluster }

// BackupWorkflowID is the id of a one-off backup of one etcd cluster
// started at t.
func BackupWorkflowID(cluster, etcdCluster string, t time.Time) string {
	return fmt.Sprintf("backup/%s/%s/%s", cluster, etcdCluster, t.UTC().Format("20060102T150405Z"))
}

// BackupScheduleID is the id of a cluster's backup schedule; its runs are
// ClusterBackup workflows with ids that start with it.
func BackupScheduleID(cluster string) string { return "backup/" + cluster }

// VolumeSnapshotWorkflowID is the id of a cluster's volume snapshot run
// (and of its schedule): one at a time per cluster.
func VolumeSnapshotWorkflowID(cluster string) string { return "volume-snapshots/" + cluster }

// SafetyBackupWorkflowID is the child backup a restore takes of one etcd
// cluster before it changes anything.
func SafetyBackupWorkflowID(restoreID, etcdCluster string) string {
	return restoreID + "/safety-backup/" + etcdCluster
}

// EtcdClusters are the two etcd clusters of every kops cluster.
var EtcdClusters = []string{"main", "events"}
