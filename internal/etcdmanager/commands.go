package etcdmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Objects in the store's control folder.
const (
	ControlDir      = "control"
	ClusterSpecKey  = ControlDir + "/etcd-cluster-spec"
	CommandFile     = "_command.json"
	commandSequence = "000000" // etcd-manager always uses this sequence for commands
)

var (
	// ErrNoClusterSpec: control/etcd-cluster-spec is missing. kops writes it
	// at cluster creation; etcd-manager-ctl restore-backup refuses without it.
	ErrNoClusterSpec = errors.New("cluster spec was not found")
	// ErrCommandExists: a command folder with that name already exists.
	// Folders are named to the second, so a second write would replace it.
	ErrCommandExists = errors.New("a command already exists in that folder")
)

// ReadClusterSpec reads control/etcd-cluster-spec.
func ReadClusterSpec(ctx context.Context, s backupstore.Store) (ClusterSpec, error) {
	data, err := ReadSmall(ctx, s, ClusterSpecKey)
	if errors.Is(err, backupstore.ErrNotFound) {
		return ClusterSpec{}, fmt.Errorf("%w in %s (kops writes %s when it creates the cluster): %w",
			ErrNoClusterSpec, s.URL(), ClusterSpecKey, err)
	}
	if err != nil {
		return ClusterSpec{}, err
	}
	spec, err := ParseClusterSpec(data)
	if err != nil {
		return ClusterSpec{}, fmt.Errorf("%s/%s: %w", s.URL(), ClusterSpecKey, err)
	}
	return spec, nil
}

// WriteClusterSpec writes control/etcd-cluster-spec, as kops does at
// cluster creation. For tests and development setups.
func WriteClusterSpec(ctx context.Context, s backupstore.Store, spec ClusterSpec) error {
	return putSmall(ctx, s, ClusterSpecKey, MarshalClusterSpec(spec), backupstore.PutOptions{})
}

// RestoreBackupCommand is etcd-manager's RestoreBackupCommand message.
type RestoreBackupCommand struct {
	ClusterSpec *ClusterSpec
	Backup      string
}

// Command is etcd-manager's Command message plus where it is stored.
type Command struct {
	Name          string // folder under control/, e.g. 2026-11-21T22:10:00Z-000000; not serialized
	Timestamp     int64  // unix nanoseconds
	RestoreBackup *RestoreBackupCommand
}

// MarshalCommand gives exactly
// {"timestamp": "1795301699486996173", "restoreBackup": {"clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}, "backup": "2026-11-20T10:00:00Z-000042"}}
func MarshalCommand(c Command) []byte {
	var w jsonWriter
	w.int64("timestamp", c.Timestamp)
	if rb := c.RestoreBackup; rb != nil {
		var r jsonWriter
		if rb.ClusterSpec != nil {
			r.raw("clusterSpec", MarshalClusterSpec(*rb.ClusterSpec))
		}
		r.str("backup", rb.Backup)
		w.raw("restoreBackup", r.bytes())
	}
	return w.bytes()
}

// ParseCommand reads a _command.json as strictly as etcd-manager does.
func ParseCommand(data []byte) (Command, error) {
	var c Command
	err := decodeStrict("command", data,
		field{"timestamp", "timestamp", setInt64(&c.Timestamp)},
		field{"restoreBackup", "restore_backup", func(raw json.RawMessage) error {
			rb := &RestoreBackupCommand{}
			c.RestoreBackup = rb
			return decodeStrict("restoreBackup", raw,
				field{"clusterSpec", "cluster_spec", setClusterSpec(&rb.ClusterSpec)},
				field{"backup", "backup", setString(&rb.Backup)},
			)
		}},
	)
	if err != nil {
		return Command{}, err
	}
	return c, nil
}

// CommandFolder is where etcd-manager-ctl would put a command issued at t:
// control/<UTC RFC 3339, to the second>-000000.
func CommandFolder(t time.Time) string {
	return ControlDir + "/" + commandName(t)
}

func commandName(t time.Time) string {
	return t.UTC().Format(time.RFC3339) + "-" + commandSequence
}

// WriteRestoreCommand queues a restore of backup, as etcd-manager-ctl
// restore-backup does: control/<t>-000000/_command.json with timestamp
// t in nanoseconds and spec copied from the cluster spec. It refuses a
// backup without a meta (etcd-manager would stop etcd and then fail on it
// every 10 s) and an occupied folder (the write would replace that command).
// etcd-manager reads commands only when it starts or gains leadership.
func WriteRestoreCommand(ctx context.Context, s backupstore.Store, t time.Time, spec ClusterSpec, backup string) (Command, error) {
	return writeRestoreCommand(ctx, s, t, spec, backup, nil)
}

func writeRestoreCommand(ctx context.Context, s backupstore.Store, t time.Time, spec ClusterSpec, backup string, m *Marker) (Command, error) {
	if err := checkFolderName("backup", backup); err != nil {
		return Command{}, err
	}
	if spec.MemberCount <= 0 || spec.EtcdVersion == "" {
		return Command{}, fmt.Errorf("restore command needs a cluster spec with memberCount and etcdVersion, got %s", MarshalClusterSpec(spec))
	}
	if _, err := s.Stat(ctx, backup+"/"+MetaFile); errors.Is(err, backupstore.ErrNotFound) {
		return Command{}, inputerr.Wrap(err, "backup", backup,
			"name a backup listed in "+s.URL()+" (etcd-manager-ctl list-backups)")
	} else if err != nil {
		return Command{}, err
	}
	cmd := Command{
		Name:          commandName(t),
		Timestamp:     t.UnixNano(),
		RestoreBackup: &RestoreBackupCommand{ClusterSpec: &spec, Backup: backup},
	}
	key := CommandFolder(t) + "/" + CommandFile
	if _, err := s.Stat(ctx, key); err == nil {
		return Command{}, fmt.Errorf("%w: %s/%s; wait a second and try again", ErrCommandExists, s.URL(), key)
	} else if !errors.Is(err, backupstore.ErrNotFound) {
		return Command{}, err
	}
	if m != nil {
		mk := *m
		mk.WrittenBy, mk.Backup, mk.Timestamp = WrittenByKopsdr, backup, cmd.Timestamp
		if mk.WrittenAt.IsZero() {
			mk.WrittenAt = t.UTC()
		}
		if err := putMarker(ctx, s, cmd.Name, mk); err != nil {
			return Command{}, err
		}
	}
	if err := putSmall(ctx, s, key, MarshalCommand(cmd), backupstore.PutOptions{}); err != nil {
		return Command{}, err
	}
	return cmd, nil
}

// ListCommands reads every control/**/_command.json, oldest first (by
// timestamp, as etcd-manager orders them). One unreadable command fails the
// listing, as it fails etcd-manager.
func ListCommands(ctx context.Context, s backupstore.Store) ([]Command, error) {
	objs, err := s.List(ctx, ControlDir+"/")
	if err != nil {
		return nil, fmt.Errorf("listing commands in %s: %w", s.URL(), err)
	}
	var cmds []Command
	for _, o := range objs {
		if path.Base(o.Key) != CommandFile {
			continue
		}
		data, err := ReadSmall(ctx, s, o.Key)
		if errors.Is(err, backupstore.ErrNotFound) {
			continue // executed and deleted since we listed
		}
		if err != nil {
			return nil, err
		}
		cmd, err := ParseCommand(data)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", s.URL(), o.Key, err)
		}
		cmd.Name = strings.TrimSuffix(strings.TrimPrefix(o.Key, ControlDir+"/"), "/"+CommandFile)
		cmds = append(cmds, cmd)
	}
	sort.SliceStable(cmds, func(i, j int) bool {
		if cmds[i].Timestamp != cmds[j].Timestamp {
			return cmds[i].Timestamp < cmds[j].Timestamp
		}
		return cmds[i].Name < cmds[j].Name
	})
	return cmds, nil
}

// DeleteCommand removes control/<name>/_command.json, the one command in
// that folder. The folder itself may stay, as it does after etcd-manager runs
// a command.
//
// This is not what etcd-manager-ctl delete-command does: that takes the name
// of the BACKUP a command restores (delete-command <backup name>) and removes
// every pending restore command naming that backup. Given a folder name it
// finds no command restoring such a backup, deletes nothing and still exits
// 0. DeleteCommandHint gives the etcd-manager-ctl form for a command.
func DeleteCommand(ctx context.Context, s backupstore.Store, name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return inputerr.New("command", name, "use a command name from the list of pending commands, e.g. 2026-11-21T22:10:00Z-000000")
	}
	return s.Delete(ctx, ControlDir+"/"+name+"/"+CommandFile)
}

// checkFolderName refuses names that are not one path segment, as
// etcd-manager does for backup names.
func checkFolderName(field, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") {
		return inputerr.New(field, name, "use a backup name as listed, e.g. 2026-11-21T22:52:16Z-000001")
	}
	return nil
}

// DeleteCommandHint is the etcd-manager-ctl command line that withdraws c
// from the store at storeURL. etcd-manager-ctl delete-command takes the
// backup the command restores, not its folder, and removes every pending
// command restoring that backup.
func DeleteCommandHint(storeURL string, c Command) string {
	backup := "<backup it restores>"
	if c.RestoreBackup != nil && c.RestoreBackup.Backup != "" {
		backup = c.RestoreBackup.Backup
	}
	return "etcd-manager-ctl --backup-store=" + storeURL + " delete-command " + backup
}
