package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/kopsspec"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/internal/storeurl"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// Backup holds the activities that take one etcd-manager-format backup. They
// keep no state between calls: everything they need is in their input or in
// the worker's environment (S3 credentials never travel through Temporal).
type Backup struct {
	// Runs tells which workflow runs are still open, for the clean-up of
	// abandoned folders; nil asks the activity's own Temporal client.
	Runs RunLookup
}

// PrepareInput names the store and the time of the backup.
type PrepareInput struct {
	Store string    `json:"store"`
	Now   time.Time `json:"now"` // workflow time, so a retried workflow picks the same second
	// Root is the store as the operator named it (state or backup store)
	// and RootField its input field: a file:// root whose parent folder is
	// missing is refused rather than created.
	Root      string `json:"root,omitempty"`
	RootField string `json:"rootField,omitempty"`
	// SSEKMSKeyID encrypts the name's reservation as the backup's objects
	// are: a bucket policy may refuse any put without it.
	SSEKMSKeyID string `json:"sseKmsKeyId,omitempty"`
}

// PrepareResult is the reserved backup name.
type PrepareResult struct {
	Name string `json:"name"`
}

// PrepareBackup checks the store is reachable and writable by us and reserves
// a backup name for this workflow run: the workflow's second plus the first
// sequence nothing is stored under yet (backupname.go).
func (a *Backup) PrepareBackup(ctx context.Context, in PrepareInput) (PrepareResult, error) {
	if in.Root != "" {
		if err := storeurl.CheckLocalParent(in.RootField, in.Root); err != nil {
			return PrepareResult{}, nonRetryable(err)
		}
	}
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return PrepareResult{}, err
	}
	name, err := reserveName(ctx, store, in.Now, in.SSEKMSKeyID)
	if err != nil {
		return PrepareResult{}, storeErr(in.Store, err)
	}
	return PrepareResult{Name: name}, nil
}

// DefaultCompressionLevel is the gzip level of a backup whose input sets
// none.
const DefaultCompressionLevel = api.DefaultCompressionLevel

// UploadInput says what to snapshot and where to put it.
type UploadInput struct {
	Store       string          `json:"store"`
	Name        string          `json:"name"`
	Etcd        etcdconn.Config `json:"etcd"`
	SSEKMSKeyID string          `json:"sseKmsKeyId,omitempty"`
	GzipLevel   int             `json:"gzipLevel,omitempty"` // 1..9; 0: DefaultCompressionLevel
}

// UploadResult is what the stream measured.
type UploadResult struct {
	snapshot.Result
	Endpoint    string `json:"endpoint"`
	MemberCount int32  `json:"memberCount"`
	// Counts are the live cluster's key counts around the snapshot, for a
	// drill to compare with; nil when they could not be recorded.
	Counts *drill.Recorded `json:"counts,omitempty"`
}

// UploadProgress is the heartbeat detail: bytes read from etcd and written.
type UploadProgress struct {
	RawBytes   int64 `json:"rawBytes"`
	GzipBytes  int64 `json:"gzipBytes"`
	TotalBytes int64 `json:"totalBytes,omitempty"` // the database's size as etcd reported it before the snapshot
}

// UploadSnapshot streams Maintenance.Snapshot through gzip straight into
// <name>/etcd.backup.gz: nothing is held in memory or staged on disk. A retry
// first aborts what an earlier, killed attempt left (multipart uploads, temp
// files) and then uploads the object again under the same name.
func (a *Backup) UploadSnapshot(ctx context.Context, in UploadInput) (UploadResult, error) {
	release, err := acquireBackupSlot(ctx) // a burst queues here, not in memory (limit.go)
	if err != nil {
		return UploadResult{}, err
	}
	defer release()
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return UploadResult{}, err
	}
	cli, err := etcdconn.New(ctx, in.Etcd)
	if err != nil {
		return UploadResult{}, etcdErr(in.Etcd, err)
	}
	defer cli.Close()
	if _, err := store.AbortIncompleteUploads(ctx, in.Name+"/"); err != nil {
		return UploadResult{}, storeErr(in.Store, err)
	}
	endpoint, err := healthyEndpoint(ctx, cli, in.Etcd.Endpoints)
	if err != nil {
		return UploadResult{}, err
	}

	// Heartbeat from a ticker, not from the data path, so a stall (etcd or the
	// store stops answering) shows up as a missed heartbeat and is retried.
	progress := &progressCounter{}
	if st, err := etcdconn.Status(ctx, cli, endpoint); err == nil {
		progress.total.Store(st.DbSize) // for the progress bar; the snapshot is about this size
	}
	stop := heartbeatEvery(ctx, 5*time.Second, func() any { return progress.load() })
	defer stop()

	rec, recErr := startCounts(ctx, in.Etcd, endpoint)
	if recErr == nil {
		defer rec.Stop()
	}

	pr, pw := io.Pipe()
	type putResult struct {
		n   int64
		err error
	}
	putDone := make(chan putResult, 1)
	go func() {
		n, err := store.Put(ctx, in.Name+"/"+etcdmanager.DataFile, pr, backupstore.PutOptions{
			SSEKMSKeyID: in.SSEKMSKeyID, ContentType: "application/gzip",
		})
		pr.CloseWithError(err) // unblock the writer if the upload failed first
		putDone <- putResult{n, err}
	}()
	level := in.GzipLevel
	if level == 0 { // the zero value means "not set", not "store uncompressed"
		level = DefaultCompressionLevel
	}
	res, streamErr := snapshot.Stream(ctx, cli, endpoint, pw, level, progress.store)
	pw.CloseWithError(streamErr)
	put := <-putDone
	if streamErr != nil {
		return UploadResult{}, fmt.Errorf("snapshot of etcd at %s: %w", endpoint, streamErr)
	}
	if put.err != nil {
		return UploadResult{}, storeErr(in.Store, put.err)
	}
	if put.n != res.GzipBytes {
		return UploadResult{}, fmt.Errorf("store took %d bytes of %d", put.n, res.GzipBytes)
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return UploadResult{}, etcdErr(in.Etcd, err)
	}
	out := UploadResult{Result: res, Endpoint: endpoint, MemberCount: int32(len(members.Members))}
	out.Counts = finishCounts(ctx, rec, recErr)
	return out, nil
}

// startCounts starts recording key counts on the member the snapshot comes
// from. A follower may lag the leader, and its snapshot then holds an older
// revision than the cluster's newest: counting through the same member,
// with linearizable reads that wait for it to catch up, keeps the counted
// revision at or below the snapshot's.
func startCounts(ctx context.Context, c etcdconn.Config, endpoint string) (*drill.Recorder, error) {
	c.Endpoints = []string{endpoint}
	cli, err := etcdconn.New(ctx, c)
	if err != nil {
		return nil, err
	}
	rec, err := drill.StartRecorder(ctx, cli)
	if err != nil {
		cli.Close()
		return nil, err
	}
	return rec.ClosingClient(), nil
}

// finishCounts ends the recording of key counts. Counts only serve a later
// drill, so failing to record them never fails the backup: the drill then
// reports counts instead of comparing them, as for etcd-manager's backups.
func finishCounts(ctx context.Context, rec *drill.Recorder, startErr error) *drill.Recorded {
	err := startErr
	if err == nil {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var r drill.Recorded
		if r, err = rec.Finish(fctx); err == nil {
			return &r
		}
	}
	logger(ctx).Warn("backup: key counts not recorded; a drill will report them without comparing", "error", err)
	return nil
}

// FinalizeInput carries what the upload measured, to be checked again.
type FinalizeInput struct {
	Store       string                   `json:"store"`
	Name        string                   `json:"name"`
	Upload      UploadResult             `json:"upload"`
	ClusterSpec *etcdmanager.ClusterSpec `json:"clusterSpec,omitempty"`
	MemberCount int32                    `json:"memberCount"`
	WorkflowID  string                   `json:"workflowId"`
	SSEKMSKeyID string                   `json:"sseKmsKeyId,omitempty"`
	Timestamp   time.Time                `json:"timestamp"`
	// PointInTime, for a backup made by replaying changes, says how.
	PointInTime *PointInTimeFacts `json:"pointInTime,omitempty"`
}

// Facts are kopsdr's own record of a backup, kept in kopsdr.json beside the
// meta: etcd-manager reads the meta strictly, so nothing of ours goes there.
type Facts struct {
	Backup       string    `json:"backup"`
	GzipBytes    int64     `json:"gzipBytes"`
	GzipSHA256   string    `json:"gzipSha256"`
	RawBytes     int64     `json:"rawBytes"`
	RawSHA256    string    `json:"rawSha256"`
	Revision     int64     `json:"revision"`
	EtcdVersion  string    `json:"etcdVersion"`
	Endpoint     string    `json:"endpoint"`
	WorkflowID   string    `json:"workflowId"`
	CreatedAt    time.Time `json:"createdAt"`
	KopsdrFormat int       `json:"kopsdrFormat"`
	// Counts are the keys per /registry/<resource>/ prefix around the
	// snapshot (drill.Recorded), which a drill compares with the restore.
	Counts *drill.Recorded `json:"counts,omitempty"`
	// PointInTime is set on a backup made by make-backup: Revision is then
	// exactly the snapshot's.
	PointInTime *PointInTimeFacts `json:"pointInTime,omitempty"`
}

// PointInTimeFacts say how a backup was made from a full backup and the
// changes captured after it.
type PointInTimeFacts struct {
	BaseBackup   string    `json:"baseBackup"`
	BaseRevision int64     `json:"baseRevision"`
	Chain        string    `json:"chain"`
	Revision     int64     `json:"revision"`
	Observed     time.Time `json:"observed,omitzero"` // when kopsdr observed Revision
	Txns         int       `json:"txns"`
	// LoweredTo: the database's storage and cluster versions were lowered
	// to this etcd version (the base's) after replay on kopsdr's etcd.
	LoweredTo string `json:"loweredTo,omitempty"`
}

// FinalizeBackup reads the uploaded object back, checks it (gzip, the
// snapshot's own sha256 trailer, our hashes and sizes) and only then writes
// kopsdr.json and, last, the meta that makes the backup visible. Running it
// again after success changes nothing.
func (a *Backup) FinalizeBackup(ctx context.Context, in FinalizeInput) (Facts, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return Facts{}, err
	}
	facts := Facts{
		Backup: in.Name, GzipBytes: in.Upload.GzipBytes, GzipSHA256: in.Upload.GzipSHA256,
		RawBytes: in.Upload.RawBytes, RawSHA256: in.Upload.RawSHA256, Revision: in.Upload.Revision,
		EtcdVersion: in.Upload.EtcdVersion, Endpoint: in.Upload.Endpoint, WorkflowID: in.WorkflowID,
		CreatedAt: in.Timestamp.UTC(), KopsdrFormat: 1, Counts: in.Upload.Counts,
		PointInTime: in.PointInTime,
	}
	if _, err := store.Stat(ctx, in.Name+"/"+etcdmanager.MetaFile); err == nil {
		// Finalized already: by an earlier attempt of this step, whose
		// kopsdr.json then records this very upload, or by another backup.
		return facts, finalizedAs(ctx, store, in.Store, in.Name, facts)
	}
	if holder, taken, err := reservedByAnother(ctx, store, in.Name); err != nil {
		return Facts{}, storeErr(in.Store, err)
	} else if taken {
		return Facts{}, nameTaken(in.Store, in.Name, holder.String())
	}
	if err := verifyObject(ctx, store, in.Name, in.Upload.Result); err != nil {
		return Facts{}, err
	}
	factsJSON, _ := json.MarshalIndent(facts, "", "  ")
	opts := backupstore.PutOptions{SSEKMSKeyID: in.SSEKMSKeyID, ContentType: "application/json"}
	if _, err := store.Put(ctx, in.Name+"/"+etcdmanager.KopsdrFile, bytes.NewReader(factsJSON), opts); err != nil {
		return Facts{}, storeErr(in.Store, err)
	}
	spec := in.ClusterSpec
	if spec == nil {
		spec = &etcdmanager.ClusterSpec{MemberCount: in.MemberCount, EtcdVersion: in.Upload.EtcdVersion}
	}
	meta := etcdmanager.MarshalBackupInfo(etcdmanager.BackupInfo{
		EtcdVersion: in.Upload.EtcdVersion, Timestamp: in.Timestamp.Unix(), ClusterSpec: spec,
	})
	if _, err := store.Put(ctx, in.Name+"/"+etcdmanager.MetaFile, bytes.NewReader(meta), opts); err != nil {
		return Facts{}, storeErr(in.Store, err)
	}
	return facts, nil
}

// finalizedAs checks that the finalized backup name is the one facts
// describe, rather than reporting another's as this one.
func finalizedAs(ctx context.Context, store backupstore.Store, storeURL, name string, facts Facts) error {
	data, err := etcdmanager.ReadSmall(ctx, store, name+"/"+etcdmanager.KopsdrFile)
	if errors.Is(err, backupstore.ErrNotFound) {
		return nameTaken(storeURL, name, "a backup kopsdr did not take (it has no "+etcdmanager.KopsdrFile+")")
	}
	if err != nil {
		return storeErr(storeURL, err)
	}
	var got Facts
	if err := json.Unmarshal(data, &got); err != nil {
		return storeErr(storeURL, fmt.Errorf("%s/%s: %w", name, etcdmanager.KopsdrFile, err))
	}
	if got.GzipSHA256 != facts.GzipSHA256 || got.GzipBytes != facts.GzipBytes {
		return nameTaken(storeURL, name, fmt.Sprintf("workflow %s (sha256 %s, %d bytes)", got.WorkflowID, got.GzipSHA256, got.GzipBytes))
	}
	return nil
}

// verifyObject streams the stored object back and compares it with what was
// uploaded. A mismatch is not retryable: the upload itself must be redone.
func verifyObject(ctx context.Context, store backupstore.Store, name string, want snapshot.Result) error {
	rc, err := store.Get(ctx, name+"/"+etcdmanager.DataFile)
	if err != nil {
		return storeErr(store.URL(), err)
	}
	defer rc.Close()
	got, err := snapshot.VerifyGzip(&heartbeatReader{ctx: ctx, r: rc})
	if err != nil {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("uploaded backup %s does not verify: %v", name, err), ErrTypeCorruptBackup, err)
	}
	if got.GzipSHA256 != want.GzipSHA256 || got.GzipBytes != want.GzipBytes || got.RawSHA256 != want.RawSHA256 {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("uploaded backup %s differs from what was sent (sha256 %s, %d bytes; sent %s, %d bytes)",
				name, got.GzipSHA256, got.GzipBytes, want.GzipSHA256, want.GzipBytes), ErrTypeCorruptBackup, nil)
	}
	return nil
}

// SpecInput names a store whose control/etcd-cluster-spec is wanted.
type SpecInput struct {
	Store string `json:"store"`
}

// ClusterSpecInfo is the cluster spec if kops wrote one, and the member count
// etcd reports, used when it did not.
type ClusterSpecInfo struct {
	Spec *etcdmanager.ClusterSpec `json:"spec,omitempty"`
}

// ReadClusterSpec returns control/etcd-cluster-spec, or nil when it is absent
// (a store kops did not create: the meta then records what etcd reports).
func (a *Backup) ReadClusterSpec(ctx context.Context, in SpecInput) (ClusterSpecInfo, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return ClusterSpecInfo{}, err
	}
	spec, err := etcdmanager.ReadClusterSpec(ctx, store)
	if errors.Is(err, etcdmanager.ErrNoClusterSpec) {
		return ClusterSpecInfo{}, nil
	}
	if err != nil {
		return ClusterSpecInfo{}, storeErr(in.Store, err)
	}
	return ClusterSpecInfo{Spec: &spec}, nil
}

// DiscardInput names a backup folder that never got its meta.
type DiscardInput struct {
	Store string `json:"store"`
	Name  string `json:"name"`
}

// DiscardIncomplete removes what a failed backup left in its folder. It
// leaves alone a folder whose meta exists (that is a real backup) and one
// that another workflow run reserved.
func (a *Backup) DiscardIncomplete(ctx context.Context, in DiscardInput) (int, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return 0, err
	}
	if _, taken, err := reservedByAnother(ctx, store, in.Name); err != nil {
		return 0, storeErr(in.Store, err)
	} else if taken {
		return 0, nil // another run's backup, still being taken
	}
	n, _, err := etcdmanager.RemoveIncomplete(ctx, store, in.Name)
	return n, storeErr(in.Store, err)
}

// PruneInput is the retention run after a successful backup.
type PruneInput struct {
	Store     string                      `json:"store"`
	Now       time.Time                   `json:"now"`
	Retention etcdmanager.RetentionPolicy `json:"retention"`
	DryRun    bool                        `json:"dryRun"`
}

// PruneBackups applies etcd-manager's retention policy. With DryRun it only
// lists what it would delete.
func (a *Backup) PruneBackups(ctx context.Context, in PruneInput) ([]string, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return nil, err
	}
	removed, err := etcdmanager.PruneBackups(ctx, store, in.Now, in.Retention, in.DryRun)
	return removed, storeErr(in.Store, err)
}

// RetentionInput locates the kops cluster spec: <stateStore>/<cluster>/config.
type RetentionInput struct {
	StateStore  string `json:"stateStore"`
	Cluster     string `json:"cluster"`
	EtcdCluster string `json:"etcdCluster"`
}

// RetentionResult is the daily retention the cluster spec sets for one etcd
// cluster, or kops's default when it sets none.
type RetentionResult struct {
	Days     int    `json:"days"`
	FromSpec bool   `json:"fromSpec"`
	Rule     string `json:"rule"` // for the result: which rule applied
}

// ReadDailyRetention reads etcdClusters[].manager.backupRetentionDays from
// the kops cluster spec, so kopsdr prunes as etcd-manager does on that
// cluster. A state store without the spec gives kops's default (90 days);
// a spec kopsdr cannot read is an error, and the backup then skips pruning
// rather than prune by a guess.
func (a *Backup) ReadDailyRetention(ctx context.Context, in RetentionInput) (RetentionResult, error) {
	store, err := openStore(ctx, in.StateStore)
	if err != nil {
		return RetentionResult{}, err
	}
	r, err := kopsspec.ReadDailyRetention(ctx, store, in.Cluster, in.EtcdCluster)
	if errors.Is(err, kopsspec.ErrBadSpec) {
		return RetentionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	}
	if err != nil {
		return RetentionResult{}, storeErr(in.StateStore, err)
	}
	return RetentionResult{Days: r.Days, FromSpec: r.Found, Rule: "daily retention " + r.Rule()}, nil
}
