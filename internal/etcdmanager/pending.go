package etcdmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// Marking the restore commands kopsdr writes.
//
// etcd-manager reads _command.json with protojson's default options, which
// refuse unknown fields, so kopsdr cannot note anything inside the command.
// It keeps a marker object beside it instead, control/<folder>/kopsdr.json:
// etcd-manager lists control/ recursively but only parses objects named
// _command.json, and when it has run a command it removes only that object.

// WrittenByKopsdr is the writtenBy value of every marker.
const WrittenByKopsdr = "kopsdr"

// Marker is control/<folder>/kopsdr.json: who queued the command beside it.
// It counts only while it names the same backup and timestamp as the
// command; a command someone else wrote over kopsdr's (folders are named to
// the second) is not kopsdr's.
type Marker struct {
	WrittenBy  string    `json:"writtenBy"`
	WorkflowID string    `json:"workflowId,omitempty"`
	RunID      string    `json:"runId,omitempty"`
	Backup     string    `json:"backup"`
	Timestamp  int64     `json:"timestamp"` // the command's, unix nanoseconds
	WrittenAt  time.Time `json:"writtenAt"`
}

// MarkerKey is where the marker of command folder name is kept.
func MarkerKey(name string) string { return ControlDir + "/" + name + "/" + KopsdrFile }

// WriteMarkedRestoreCommand is WriteRestoreCommand for kopsdr's own
// restores: after the same checks it writes the marker, then the command.
// In that order a command kopsdr wrote is never left unmarked; a marker left
// without its command (a crash in between) marks nothing, and the next
// attempt rewrites it.
func WriteMarkedRestoreCommand(ctx context.Context, s backupstore.Store, t time.Time, spec ClusterSpec, backup string, m Marker) (Command, error) {
	return writeRestoreCommand(ctx, s, t, spec, backup, &m)
}

// MarkCommand writes the marker of a command kopsdr wrote, for a command
// found already written by an earlier attempt whose marker is missing.
func MarkCommand(ctx context.Context, s backupstore.Store, c Command, m Marker) error {
	if c.RestoreBackup == nil {
		return fmt.Errorf("command control/%s restores nothing; not marking it", c.Name)
	}
	m.WrittenBy, m.Backup, m.Timestamp = WrittenByKopsdr, c.RestoreBackup.Backup, c.Timestamp
	return putMarker(ctx, s, c.Name, m)
}

func putMarker(ctx context.Context, s backupstore.Store, name string, m Marker) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return putSmall(ctx, s, MarkerKey(name), data, backupstore.PutOptions{})
}

// readMarker returns the marker of folder name, or nil when there is none
// or it is not kopsdr's JSON.
func readMarker(ctx context.Context, s backupstore.Store, name string) (*Marker, error) {
	data, err := ReadSmall(ctx, s, MarkerKey(name))
	if errors.Is(err, backupstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Marker
	if json.Unmarshal(data, &m) != nil || m.WrittenBy != WrittenByKopsdr {
		return nil, nil
	}
	return &m, nil
}

// Pending is a queued command and who wrote it.
type Pending struct {
	Command
	// Marker is kopsdr's marker when kopsdr wrote this very command (same
	// backup, same timestamp), nil when someone else did.
	Marker *Marker
}

// ByKopsdr says whether kopsdr wrote the command.
func (p Pending) ByKopsdr() bool { return p.Marker != nil }

// Backup is the backup the command restores ("" for a command that
// restores nothing).
func (p Pending) Backup() string {
	if p.RestoreBackup == nil {
		return ""
	}
	return p.RestoreBackup.Backup
}

// ListPending lists the pending commands, oldest first, with their
// markers. Like ListCommands it fails on a command etcd-manager could not
// parse.
func ListPending(ctx context.Context, s backupstore.Store) ([]Pending, error) {
	cmds, err := ListCommands(ctx, s)
	if err != nil {
		return nil, err
	}
	out := make([]Pending, 0, len(cmds))
	for _, c := range cmds {
		p := Pending{Command: c}
		m, err := readMarker(ctx, s, c.Name)
		if err != nil {
			return nil, err
		}
		if m != nil && c.RestoreBackup != nil && m.Backup == c.RestoreBackup.Backup && m.Timestamp == c.Timestamp {
			p.Marker = m
		}
		out = append(out, p)
	}
	return out, nil
}

// WithdrawResult says what a withdrawal removed (or, in a dry run, would
// remove) and which commands it left because kopsdr did not write them.
type WithdrawResult struct {
	Removed []Pending
	Kept    []Pending
}

// Withdraw removes the pending restore commands kopsdr wrote, and only
// those: a command without a matching marker is listed in Kept and not
// touched. With dryRun nothing is deleted. The command object goes first
// (that is what etcd-manager would act on), then its marker; a command that
// etcd-manager consumed meanwhile is no error.
func Withdraw(ctx context.Context, s backupstore.Store, dryRun bool) (WithdrawResult, error) {
	var res WithdrawResult
	pending, err := ListPending(ctx, s)
	if err != nil {
		return res, err
	}
	for _, p := range pending {
		if !p.ByKopsdr() {
			res.Kept = append(res.Kept, p)
			continue
		}
		if !dryRun {
			if err := DeleteCommand(ctx, s, p.Name); err != nil {
				return res, fmt.Errorf("withdrawing control/%s from %s: %w", p.Name, s.URL(), err)
			}
			if err := s.Delete(ctx, MarkerKey(p.Name)); err != nil {
				return res, fmt.Errorf("control/%s withdrawn, but its marker stays in %s: %w", p.Name, s.URL(), err)
			}
		}
		res.Removed = append(res.Removed, p)
	}
	return res, nil
}

// Location is how an operator names a backup store on kopsdr's command
// line: the state store, cluster and etcd cluster, or the store's URL.
type Location struct {
	Cluster     string
	StateStore  string
	Etcd        string // main or events
	BackupStore string // when set, used instead of StateStore
}

// WithdrawCommand is the kopsdr command line that withdraws kopsdr's
// pending commands from this store.
func (l Location) WithdrawCommand() string {
	args := []string{"kopsdr restore withdraw", "--cluster", orPlaceholder(l.Cluster, "<cluster>")}
	if l.BackupStore != "" {
		args = append(args, "--backup-store", l.BackupStore)
	} else {
		args = append(args, "--state-store", orPlaceholder(l.StateStore, "<state store>"))
	}
	if l.Etcd != "" {
		args = append(args, "--etcd", l.Etcd)
	}
	return strings.Join(append(args, "--yes"), " ")
}

func orPlaceholder(v, placeholder string) string {
	if v == "" {
		return placeholder
	}
	return v
}

// DescribePending says, for an operator, that commands are still queued in
// the store at storeURL, what each restores, who wrote it and the exact
// command that withdraws it. "" when nothing is pending.
func DescribePending(storeURL string, loc Location, pending []Pending) string {
	if len(pending) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d restore command(s) still queued in %s; the next etcd-manager start or leader change will perform them:\n", len(pending), storeURL)
	for _, p := range pending {
		backup := p.Backup()
		if backup == "" {
			backup = "(no backup)"
		}
		queued := time.Unix(0, p.Timestamp).UTC().Format(time.RFC3339)
		if p.ByKopsdr() {
			who := "kopsdr"
			if p.Marker.WorkflowID != "" {
				who += " (workflow " + p.Marker.WorkflowID + ")"
			}
			fmt.Fprintf(&b, "- control/%s restores %s, queued %s by %s; withdraw it with: %s\n",
				p.Name, backup, queued, who, loc.WithdrawCommand())
		} else {
			fmt.Fprintf(&b, "- control/%s restores %s, queued %s, not by kopsdr (kopsdr leaves it alone); if it must go: %s\n",
				p.Name, backup, queued, DeleteCommandHint(storeURL, p.Command))
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
