package activities

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// A backup's name is its workflow's second and a sequence. Two backups of
// one store started in the same second (a schedule's and an operator's)
// must not share it: the second's upload would replace the first's data,
// and a listing alone cannot tell them apart, as a name is listed only once
// its meta is written, long after the upload began. So PrepareBackup claims
// the name before anything is uploaded: it stores the ReservationFile with
// a put that succeeds only where nothing is stored yet (S3's conditional
// PutObject, a hard link on disk), and whoever loses takes the next
// sequence. FinalizeBackup and DiscardIncomplete then touch a folder only
// if its reservation is their run's.

// reservation says which workflow run a backup name is for.
type reservation struct {
	// Namespace, WorkflowID and RunID name the run that reserved the name:
	// the clean-up of abandoned folders asks Temporal whether it has ended.
	Namespace  string `json:"namespace,omitempty"`
	WorkflowID string `json:"workflowId,omitempty"`
	RunID      string `json:"runId,omitempty"`
	// Nonce stands for the run when the activity is called outside a
	// workflow (the tests' helpers): it tells this call's own put, seen
	// again after a retried request, from another's.
	Nonce      string    `json:"nonce,omitempty"`
	ReservedAt time.Time `json:"reservedAt"`
}

func (r reservation) sameOwner(o reservation) bool {
	return r.WorkflowID == o.WorkflowID && r.RunID == o.RunID && r.Nonce == o.Nonce
}

func (r reservation) String() string {
	if r.WorkflowID == "" {
		return "a backup outside any workflow"
	}
	return fmt.Sprintf("workflow %s (run %s)", r.WorkflowID, r.RunID)
}

// runOwner is the reservation ctx's workflow run makes; ok is false outside
// an activity, where no run can be named.
func runOwner(ctx context.Context) (r reservation, ok bool) {
	if !activity.IsActivity(ctx) {
		return reservation{}, false
	}
	info := activity.GetInfo(ctx)
	we := info.WorkflowExecution
	return reservation{Namespace: info.WorkflowNamespace, WorkflowID: we.ID, RunID: we.RunID}, true
}

// maxReserveTries bounds how often reserveName loses a race for a name
// before it gives up (retryably): each loss means another backup of the
// same store started in the same second.
const maxReserveTries = 20

// reserveName claims the first free name of now's second: one past every
// sequence that anything is stored under for that second (a backup,
// another's upload or reservation, a leftover), so neither etcd-manager's
// nor another kopsdr's backup is ever overwritten. A retried call of the
// same run gets the name it reserved before, unless that name was already
// finalized.
func reserveName(ctx context.Context, store backupstore.Store, now time.Time, sseKMSKeyID string) (string, error) {
	me, inRun := runOwner(ctx)
	if !inRun {
		var b [8]byte
		_, _ = rand.Read(b[:])
		me.Nonce = hex.EncodeToString(b[:])
	}
	return reserveNameFor(ctx, store, now, me, sseKMSKeyID)
}

// reserveNameFor is reserveName for the run (or call) me.
func reserveNameFor(ctx context.Context, store backupstore.Store, now time.Time, me reservation, sseKMSKeyID string) (string, error) {
	second := now.UTC().Truncate(time.Second)
	prefix := second.Format(time.RFC3339) + "-"
	for range maxReserveTries {
		objs, err := store.List(ctx, prefix)
		if err != nil {
			return "", err
		}
		seq := 1
		finalized := map[string]bool{}
		var reserved []string
		for _, o := range objs {
			folder, file, _ := strings.Cut(o.Key, "/")
			if _, s, ok := etcdmanager.ParseBackupName(folder); ok && s >= seq {
				seq = s + 1
			}
			switch file {
			case etcdmanager.MetaFile:
				finalized[folder] = true
			case etcdmanager.ReservationFile:
				reserved = append(reserved, folder)
			}
		}
		for _, name := range reserved {
			if r, err := readReservation(ctx, store, name); err == nil && r.sameOwner(me) && !finalized[name] {
				return name, nil // this run reserved it before its result was recorded
			}
		}
		name := etcdmanager.BackupName(second, seq)
		me.ReservedAt = time.Now().UTC()
		body, _ := json.Marshal(me)
		_, err = store.Put(ctx, name+"/"+etcdmanager.ReservationFile, bytes.NewReader(body),
			backupstore.PutOptions{IfAbsent: true, ContentType: "application/json", SSEKMSKeyID: sseKMSKeyID})
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, backupstore.ErrExists) {
			return "", err
		}
		// Taken: by another backup, or by this very put, whose first
		// request stored it before its answer was lost and the SDK sent
		// it again.
		if r, rerr := readReservation(ctx, store, name); rerr == nil && r.sameOwner(me) {
			return name, nil
		}
	}
	return "", fmt.Errorf("no free backup name for %s in %s after %d tries: other backups of this store took each one first",
		second.Format(time.RFC3339), store.URL(), maxReserveTries)
}

func readReservation(ctx context.Context, store backupstore.Store, name string) (reservation, error) {
	data, err := etcdmanager.ReadSmall(ctx, store, name+"/"+etcdmanager.ReservationFile)
	if err != nil {
		return reservation{}, err
	}
	var r reservation
	if err := json.Unmarshal(data, &r); err != nil {
		return reservation{}, fmt.Errorf("%s/%s/%s: %w", store.URL(), name, etcdmanager.ReservationFile, err)
	}
	return r, nil
}

// reservedByAnother returns the reservation of name when it is another
// run's. A folder without one (named before kopsdr reserved names, or by
// etcd-manager) is nobody's, and outside an activity no run can be told
// from another.
func reservedByAnother(ctx context.Context, store backupstore.Store, name string) (reservation, bool, error) {
	me, inRun := runOwner(ctx)
	if !inRun {
		return reservation{}, false, nil
	}
	r, err := readReservation(ctx, store, name)
	switch {
	case errors.Is(err, backupstore.ErrNotFound):
		return reservation{}, false, nil
	case err != nil:
		return reservation{}, false, err
	}
	return r, !r.sameOwner(me), nil
}

// nameTaken is the error of a backup whose name another holds: retrying
// the step cannot help, a new backup gets a new name.
func nameTaken(store, name, holder string) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("backup %s in %s belongs to %s, not to this backup, which was not finalized: start the backup again; it takes the next free name",
			name, store, holder), ErrTypeBackupNameTaken, nil)
}
