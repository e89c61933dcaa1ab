package workflows

import "github.com/kopsdr/kopsdr/workflows/api"

// The contract lives in package api; these names let the workflow code
// read as the operator's JSON does. They are aliases, not copies.
type (
	EtcdBackupInput     = api.EtcdBackupInput
	BackupOptions       = api.BackupOptions
	Retention           = api.Retention
	EtcdBackupResult    = api.EtcdBackupResult
	BackupStatus        = api.BackupStatus
	ClusterBackupInput  = api.ClusterBackupInput
	EtcdTarget          = api.EtcdTarget
	ClusterBackupResult = api.ClusterBackupResult

	EtcdManagerRestoreInput  = api.EtcdManagerRestoreInput
	RestoreTarget            = api.RestoreTarget
	MasterInput              = api.MasterInput
	DiscoverInput            = api.DiscoverInput
	RestorePlan              = api.RestorePlan
	PlannedBackup            = api.PlannedBackup
	PlannedMaster            = api.PlannedMaster
	RestoreStatus            = api.RestoreStatus
	EtcdManagerRestoreResult = api.EtcdManagerRestoreResult
	Approval                 = api.Approval
	Decision                 = api.Decision
	StepTime                 = api.StepTime

	VolumeSnapshotInput  = api.VolumeSnapshotInput
	VolumeRetention      = api.VolumeRetention
	VolumeSnapshotResult = api.VolumeSnapshotResult
	VolumeSnapshotRef    = api.VolumeSnapshotRef
	VolumeSnapshotStatus = api.VolumeSnapshotStatus
	VolumeRestoreInput   = api.VolumeRestoreInput
	VolumeVerify         = api.VolumeVerify
	VolumeRestoreReport  = api.VolumeRestoreReport
	VolumeMemberStatus   = api.VolumeMemberStatus
)

// Names from the contract.
const (
	QueryStatus   = api.QueryStatus
	UpdateApprove = api.UpdateApprove
	UpdateReject  = api.UpdateReject
	SignalApprove = api.SignalApprove
	SignalReject  = api.SignalReject

	ErrTypeRestoreRejected  = api.ErrTypeRestoreRejected
	ErrTypeApprovalTimedOut = api.ErrTypeApprovalTimedOut
	ErrTypeRestoreFailed    = api.ErrTypeRestoreFailed
)

// EtcdClusters are the two etcd clusters of every kops cluster.
var EtcdClusters = api.EtcdClusters

// RestoreWorkflowID: see api.RestoreWorkflowID.
func RestoreWorkflowID(cluster string) string { return api.RestoreWorkflowID(cluster) }

// VolumeSnapshotWorkflowID: see api.VolumeSnapshotWorkflowID.
func VolumeSnapshotWorkflowID(cluster string) string { return api.VolumeSnapshotWorkflowID(cluster) }
