package api

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/storeurl"
)

// VolumeSnapshotInput snapshots every etcd volume (main and events, every
// member) of one kops cluster at once. Plain JSON; credentials never travel
// here: the worker's AWS environment provides them.
type VolumeSnapshotInput struct {
	Cluster      string           `json:"cluster"`
	Region       string           `json:"region"`
	EtcdClusters []string         `json:"etcdClusters,omitempty"` // default ["main", "events"]
	Retention    *VolumeRetention `json:"retention,omitempty"`
	NoPrune      bool             `json:"noPrune,omitempty"`
	PruneDryRun  bool             `json:"pruneDryRun,omitempty"`
	// WaitTimeout bounds how long the snapshots may take to complete
	// (a Go duration, default "6h").
	WaitTimeout string `json:"waitTimeout,omitempty"`
	// MaxAttempts bounds how often a failing EC2 step is retried. Default 10.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// DefaultSnapshotWait bounds how long a snapshot set may take.
const DefaultSnapshotWait = 6 * time.Hour

// VolumeRetention is the snapshot sets' retention, durations as Go
// durations. Unset fields take the defaults (keep the last 3 sets, the first
// of each hour for 168h, the first of each day for 2160h); "0s" turns the
// hourly or daily rule off, so that keepLast alone decides. The newest
// completed set is always kept.
type VolumeRetention struct {
	KeepLast  int    `json:"keepLast,omitempty"`
	HourlyFor string `json:"hourlyFor,omitempty"`
	DailyFor  string `json:"dailyFor,omitempty"`
}

// VolumeSnapshotResult is the set that was taken and what retention did.
type VolumeSnapshotResult struct {
	Cluster     string              `json:"cluster"`
	Region      string              `json:"region"`
	Set         string              `json:"set"`
	Snapshots   []VolumeSnapshotRef `json:"snapshots"`
	Retention   *SetRetention       `json:"retention,omitempty"`
	PruneDryRun bool                `json:"pruneDryRun,omitempty"`
}

// SetRetention lists every snapshot set once, kept or deleted, newest first.
type SetRetention struct {
	Keep   []SetDecision `json:"keep"`
	Delete []SetDecision `json:"delete"`
}

// SetDecision is what retention did with one snapshot set, and why.
type SetDecision struct {
	Set       string    `json:"set"`
	Time      time.Time `json:"time"`
	State     string    `json:"state"`
	Reason    string    `json:"reason"`
	Snapshots []string  `json:"snapshots"`
}

// VolumeSnapshotRef is one snapshot of the set.
type VolumeSnapshotRef struct {
	ID               string `json:"id"`
	VolumeID         string `json:"volumeId"`
	EtcdCluster      string `json:"etcdCluster"`
	Member           string `json:"member"`
	AvailabilityZone string `json:"availabilityZone"`
	State            string `json:"state"`
	Encrypted        bool   `json:"encrypted"`
	KMSKeyID         string `json:"kmsKeyId,omitempty"`
}

// VolumeSnapshotStatus is what the "status" query returns.
type VolumeSnapshotStatus struct {
	Step      string              `json:"step"`
	Set       string              `json:"set,omitempty"`
	Snapshots []VolumeSnapshotRef `json:"snapshots,omitempty"`
	LastError string              `json:"lastError,omitempty"`
}

// Validate checks the input without EC2: the CLI calls it before starting
// or scheduling, the workflow again.
func (in VolumeSnapshotInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	if err := CheckRegion("region", in.Region); err != nil {
		return err
	}
	if _, err := EtcdClusterList("etcdClusters", in.EtcdClusters); err != nil {
		return err
	}
	if in.NoPrune && in.PruneDryRun {
		return invalid("pruneDryRun", "true", "noPrune skips pruning altogether: drop one of noPrune and pruneDryRun")
	}
	if in.NoPrune && in.Retention != nil {
		return invalid("retention", "set", "noPrune skips pruning, so a retention would be ignored: drop one of them")
	}
	if r := in.Retention; r != nil {
		if r.KeepLast < 0 {
			return invalid("retention.keepLast", strconv.Itoa(r.KeepLast), "give how many of the newest sets to keep, e.g. 3")
		}
		if _, err := DurationOrOff("retention.hourlyFor", r.HourlyFor, time.Hour); err != nil {
			return err
		}
		if _, err := DurationOrOff("retention.dailyFor", r.DailyFor, time.Hour); err != nil {
			return err
		}
	}
	if _, err := Duration("waitTimeout", in.WaitTimeout, DefaultSnapshotWait); err != nil {
		return err
	}
	return checkAttempts("maxAttempts", in.MaxAttempts)
}

// VolumeRestoreInput restores etcd volumes of one kops cluster from EBS
// snapshots. Plain JSON with defaults; no credentials: the worker's AWS
// environment provides them.
type VolumeRestoreInput struct {
	Cluster    string `json:"cluster"`
	Region     string `json:"region"`
	StateStore string `json:"stateStore"` // kops state store: the cluster spec's encryption rules are read from <stateStore>/<cluster>/config
	// Which members: by default every member of main and events.
	EtcdClusters []string `json:"etcdClusters,omitempty"`
	Members      []string `json:"members,omitempty"`
	// Which snapshots: at most one of snapshotSet, snapshotIds and at; by
	// default the newest set with a completed snapshot of every member.
	SnapshotSet string   `json:"snapshotSet,omitempty"`
	SnapshotIDs []string `json:"snapshotIds,omitempty"`
	At          string   `json:"at,omitempty"` // RFC 3339: the newest complete set taken at or before
	// Again restores snapshots the current volumes already came from (a
	// restore done before); without it such a restore is refused.
	Again bool `json:"again,omitempty"`
	// AllowMixedTimes lets members of one etcd cluster hold data from
	// different times (snapshots of different sets, or only some members
	// restored); without it such a restore is refused.
	AllowMixedTimes bool   `json:"allowMixedTimes,omitempty"`
	OldVolumes      string `json:"oldVolumes,omitempty"` // untag (default) | delete (once detached)
	Restart         string `json:"restart,omitempty"`    // reboot (default) | stop-start | none
	DryRun          bool   `json:"dryRun,omitempty"`     // stop after the plan and return it
	Approve         bool   `json:"approve,omitempty"`    // approved up front: no waiting
	// ApprovalTimeout is how long to wait for approve or reject (Go
	// duration, default "24h"); then the restore ends having created nothing.
	ApprovalTimeout string `json:"approvalTimeout,omitempty"`
	// Verify, if set, is where etcd answers after the masters restarted: the
	// restore then waits until every member is back.
	Verify *VolumeVerify `json:"verify,omitempty"`
	// MaxAttempts bounds how often a failing EC2 step is retried. Default 10.
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// Volume restore choices.
const (
	RestartReboot    = "reboot"
	RestartStopStart = "stop-start"
	RestartNone      = "none"
	OldVolumesUntag  = "untag"
	OldVolumesDelete = "delete"
)

// DefaultVerifyTimeout bounds the wait for etcd after a volume restore.
const DefaultVerifyTimeout = 15 * time.Minute

// VolumeVerify says where the restored etcd clusters answer. Paths are on
// the worker.
type VolumeVerify struct {
	MainEndpoints   []string `json:"mainEndpoints,omitempty"`
	EventsEndpoints []string `json:"eventsEndpoints,omitempty"`
	CACert          string   `json:"cacert,omitempty"`
	Cert            string   `json:"cert,omitempty"`
	Key             string   `json:"key,omitempty"`
	Timeout         string   `json:"timeout,omitempty"` // default "15m"
}

// Endpoints are where one etcd cluster answers after the restore.
func (v *VolumeVerify) Endpoints(etcdCluster string) []string {
	if v == nil {
		return nil
	}
	if etcdCluster == "events" {
		return v.EventsEndpoints
	}
	return v.MainEndpoints
}

// RestartMode is the restart chosen, "reboot" by default.
func (in VolumeRestoreInput) RestartMode() string {
	if in.Restart == "" {
		return RestartReboot
	}
	return in.Restart
}

// OldVolumesMode is what becomes of the replaced volumes, "untag" by default.
func (in VolumeRestoreInput) OldVolumesMode() string {
	if in.OldVolumes == "" {
		return OldVolumesUntag
	}
	return in.OldVolumes
}

// Validate checks the input without EC2: the CLI calls it before starting,
// the workflow again.
func (in VolumeRestoreInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	if err := CheckRegion("region", in.Region); err != nil {
		return err
	}
	if in.StateStore == "" {
		return invalid("stateStore", "", "give the kops state store (as in KOPS_STATE_STORE, e.g. s3://my.clusters): the cluster spec says which volumes are encrypted")
	}
	if _, err := storeurl.Parse("stateStore", in.StateStore); err != nil {
		return err
	}
	ecs, err := EtcdClusterList("etcdClusters", in.EtcdClusters)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, m := range in.Members {
		if m == "" || strings.ContainsAny(m, "/, ") {
			return invalid("members", m, "give etcd member names as in the cluster spec, e.g. a or us-east-1a")
		}
		if seen[m] {
			return invalid("members", m, "name each member once")
		}
		seen[m] = true
	}
	if err := in.validateSelection(); err != nil {
		return err
	}
	if _, err := oneOf("restart", in.Restart, RestartReboot, RestartReboot, RestartStopStart, RestartNone); err != nil {
		return err
	}
	if _, err := oneOf("oldVolumes", in.OldVolumes, OldVolumesUntag, OldVolumesUntag, OldVolumesDelete); err != nil {
		return err
	}
	if in.DryRun && in.Approve {
		return invalid("approve", "true", "a dry run changes nothing and is never approved: drop approve, or dryRun to restore")
	}
	if _, err := Duration("approvalTimeout", in.ApprovalTimeout, DefaultApprovalTimeout); err != nil {
		return err
	}
	if err := checkAttempts("maxAttempts", in.MaxAttempts); err != nil {
		return err
	}
	return in.Verify.validate(ecs)
}

func (in VolumeRestoreInput) validateSelection() error {
	chosen := 0
	for _, set := range []bool{in.SnapshotSet != "", len(in.SnapshotIDs) > 0, in.At != ""} {
		if set {
			chosen++
		}
	}
	if chosen > 1 {
		return invalid("snapshotSet", in.SnapshotSet, "give at most one of snapshotSet, snapshotIds and at")
	}
	seen := map[string]bool{}
	for _, id := range in.SnapshotIDs {
		if !strings.HasPrefix(id, "snap-") || len(id) < len("snap-")+8 || strings.Trim(id[len("snap-"):], "0123456789abcdef") != "" {
			return invalid("snapshotIds", id, "give EBS snapshot ids such as snap-0123456789abcdef0")
		}
		if seen[id] {
			return invalid("snapshotIds", id, "list each snapshot once")
		}
		seen[id] = true
	}
	if in.At != "" {
		if _, err := CheckTime("at", in.At); err != nil {
			return err
		}
	}
	return nil
}

func (v *VolumeVerify) validate(ecs []string) error {
	if v == nil {
		return nil
	}
	if _, err := Duration("verify.timeout", v.Timeout, DefaultVerifyTimeout); err != nil {
		return err
	}
	if (v.Cert == "") != (v.Key == "") {
		return invalid("verify.key", v.Key, "give both the etcd client certificate and its key, or neither")
	}
	if len(v.EventsEndpoints) > 0 && !slices.Contains(ecs, "events") {
		return invalid("verify.eventsEndpoints", v.EventsEndpoints[0], "events is not restored: drop its endpoints or add events to etcdClusters")
	}
	if len(v.MainEndpoints) > 0 && !slices.Contains(ecs, "main") {
		return invalid("verify.mainEndpoints", v.MainEndpoints[0], "main is not restored: drop its endpoints or add main to etcdClusters")
	}
	any := false
	for _, ec := range ecs {
		eps := v.Endpoints(ec)
		if len(eps) == 0 {
			continue
		}
		any = true
		if err := CheckEndpoints("verify."+ec+"Endpoints", ec, eps); err != nil {
			return err
		}
	}
	if !any {
		return invalid("verify.mainEndpoints", "", "give the etcd client URLs to check after the restart (main :4001, events :4002), or leave verify out")
	}
	return nil
}

// VolumeRestoreReport is both the "status" query's answer and the result of
// a volume restore: the step, the plan, the decision, every member's state
// and what became of its old volume, with times.
type VolumeRestoreReport struct {
	Cluster          string               `json:"cluster"`
	WorkflowID       string               `json:"workflowId"`
	Step             string               `json:"step"`
	DryRun           bool                 `json:"dryRun,omitempty"`
	StartedAt        time.Time            `json:"startedAt"`
	UpdatedAt        time.Time            `json:"updatedAt"`
	FinishedAt       time.Time            `json:"finishedAt,omitzero"`
	Plan             *VolumePlan          `json:"plan,omitempty"`
	ApprovalDeadline time.Time            `json:"approvalDeadline,omitzero"`
	Approval         *Decision            `json:"approval,omitempty"`
	Members          []VolumeMemberStatus `json:"members"`
	Restarted        []string             `json:"restarted,omitempty"`
	EtcdMembers      map[string]int       `json:"etcdMembers,omitempty"` // members answering after the restart, per etcd cluster
	RolledBack       bool                 `json:"rolledBack,omitempty"`
	LastError        string               `json:"lastError,omitempty"`
}

// VolumePlan is what a volume restore will do, decided before it changes
// anything.
type VolumePlan struct {
	SnapshotSet string             `json:"snapshotSet,omitempty"`
	SetTime     time.Time          `json:"setTime,omitzero"`
	Restart     string             `json:"restart"`
	OldVolumes  string             `json:"oldVolumes"`
	Members     []VolumePlanMember `json:"members"`
	Instances   []string           `json:"instances"` // masters to restart
	Warnings    []string           `json:"warnings,omitempty"`
}

// VolumePlanMember is one member's restore.
type VolumePlanMember struct {
	EtcdCluster      string    `json:"etcdCluster"`
	Member           string    `json:"member"`
	AvailabilityZone string    `json:"availabilityZone"`
	Snapshot         string    `json:"snapshot"`
	SnapshotTime     time.Time `json:"snapshotTime"`
	OldVolume        string    `json:"oldVolume,omitempty"`
	Instance         string    `json:"instance,omitempty"`
	VolumeType       string    `json:"volumeType"`
	SizeGiB          int32     `json:"sizeGiB"`
	Encryption       string    `json:"encryption"` // why the new volume is (not) encrypted, and with which key
}

// VolumeMemberStatus is one member's progress.
type VolumeMemberStatus struct {
	EtcdCluster      string            `json:"etcdCluster"`
	Member           string            `json:"member"`
	AvailabilityZone string            `json:"availabilityZone"`
	Snapshot         string            `json:"snapshot"`
	OldVolume        string            `json:"oldVolume,omitempty"`
	NewVolume        string            `json:"newVolume,omitempty"`
	Instance         string            `json:"instance,omitempty"`
	State            string            `json:"state"` // planned, creating, waiting, tagging, tagged, restored, rolled-back, failed
	OldTags          map[string]string `json:"oldTags,omitempty"`
	OldVolumeOutcome string            `json:"oldVolumeOutcome,omitempty"` // untagged | deleted | kept: why
	Error            string            `json:"error,omitempty"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}
