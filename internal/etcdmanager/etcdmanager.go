// Package etcdmanager speaks etcd-manager's backup store formats byte for
// byte (see docs/formats.md): backup folder names and their
// _etcd_backup.meta, the control folder's cluster spec and restore commands,
// and etcd-manager's pruning policy. Everything kopsdr writes here must be
// readable by etcd-manager and etcd-manager-ctl, which parse strictly.
package etcdmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// Object names inside one backup folder.
const (
	DataFile = "etcd.backup.gz"    // gzip of the etcd snapshot stream
	MetaFile = "_etcd_backup.meta" // BackupInfo; written last, it makes the backup visible
	// KopsdrFile holds kopsdr's own facts about a backup (checksums, who and
	// why). etcd-manager ignores extra objects in a folder, but would refuse a
	// meta file with extra fields, so these never go into MetaFile.
	KopsdrFile = "kopsdr.json"
	// ReservationFile is the first object of a kopsdr backup: it claims the
	// backup's name for one workflow run, stored only if absent, so that
	// two backups started in the same second never share a name.
	ReservationFile = "kopsdr-reservation.json"
)

// ClusterSpec is etcd-manager's ClusterSpec message.
type ClusterSpec struct {
	MemberCount int32  `json:"memberCount"`
	EtcdVersion string `json:"etcdVersion"`
}

// BackupInfo is etcd-manager's BackupInfo message, the _etcd_backup.meta.
type BackupInfo struct {
	EtcdVersion string
	Timestamp   int64 // unix seconds
	ClusterSpec *ClusterSpec
}

// MarshalClusterSpec gives {"memberCount": 3, "etcdVersion": "3.5.9"}.
func MarshalClusterSpec(c ClusterSpec) []byte {
	var w jsonWriter
	w.int32("memberCount", c.MemberCount)
	w.str("etcdVersion", c.EtcdVersion)
	return w.bytes()
}

// ParseClusterSpec reads a ClusterSpec as strictly as etcd-manager does.
func ParseClusterSpec(data []byte) (ClusterSpec, error) {
	var c ClusterSpec
	err := decodeStrict("cluster spec", data,
		field{"memberCount", "member_count", setInt32(&c.MemberCount)},
		field{"etcdVersion", "etcd_version", setString(&c.EtcdVersion)},
	)
	return c, err
}

func setClusterSpec(p **ClusterSpec) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		c, err := ParseClusterSpec(raw)
		*p = &c
		return err
	}
}

// MarshalBackupInfo gives exactly
// {"etcdVersion": "3.5.9", "timestamp": "1795301536", "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}}
// (proto3 JSON: zero values omitted, the int64 timestamp as a string).
func MarshalBackupInfo(b BackupInfo) []byte {
	var w jsonWriter
	w.str("etcdVersion", b.EtcdVersion)
	w.int64("timestamp", b.Timestamp)
	if b.ClusterSpec != nil {
		w.raw("clusterSpec", MarshalClusterSpec(*b.ClusterSpec))
	}
	return w.bytes()
}

// ParseBackupInfo reads a _etcd_backup.meta. Like etcd-manager it rejects
// unknown fields; etcdVersion is required because etcd-manager picks the
// restore binary by it.
func ParseBackupInfo(data []byte) (BackupInfo, error) {
	var b BackupInfo
	err := decodeStrict("backup info", data,
		field{"etcdVersion", "etcd_version", setString(&b.EtcdVersion)},
		field{"timestamp", "timestamp", setInt64(&b.Timestamp)},
		field{"clusterSpec", "cluster_spec", setClusterSpec(&b.ClusterSpec)},
	)
	if err != nil {
		return BackupInfo{}, err
	}
	if b.EtcdVersion == "" {
		return BackupInfo{}, errors.New("parsing backup info: etcdVersion is missing (etcd-manager needs it to pick the restore binary)")
	}
	return b, nil
}

// BackupName is etcd-manager's folder name for a backup taken at t:
// UTC RFC 3339 to the second, "-", a 6-digit sequence.
func BackupName(t time.Time, seq int) string {
	return t.UTC().Format(time.RFC3339) + "-" + fmt.Sprintf("%06d", seq)
}

// ParseBackupName parses names BackupName makes, and only those: anything
// else (fractional seconds, offsets, a non-numeric suffix) is not ok.
func ParseBackupName(name string) (time.Time, int, bool) {
	i := strings.Index(name, "Z-")
	if i < 0 {
		return time.Time{}, 0, false
	}
	ts, seqStr := name[:i+1], name[i+2:]
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.Format(time.RFC3339) != ts {
		return time.Time{}, 0, false
	}
	if len(seqStr) < 6 || strings.Trim(seqStr, "0123456789") != "" {
		return time.Time{}, 0, false
	}
	seq, err := strconv.Atoi(seqStr)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, seq, true
}

// ListBackups lists backups as etcd-manager-ctl list-backups does: the
// parent folder of every MetaFile under the store (recursively), sorted as
// strings, so the last one is the newest. A folder without its meta (a
// backup still being written, or half deleted) is not a backup.
func ListBackups(ctx context.Context, s backupstore.Store) ([]string, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing backups in %s: %w", s.URL(), err)
	}
	var names []string
	for _, o := range objs {
		parts := strings.Split(o.Key, "/")
		if len(parts) < 2 || parts[len(parts)-1] != MetaFile {
			continue
		}
		names = append(names, parts[len(parts)-2])
	}
	sort.Strings(names)
	return names, nil
}

// ReadBackupInfo reads and strictly parses one backup's meta.
func ReadBackupInfo(ctx context.Context, s backupstore.Store, backup string) (BackupInfo, error) {
	if err := checkFolderName("backup", backup); err != nil {
		return BackupInfo{}, err
	}
	data, err := ReadSmall(ctx, s, backup+"/"+MetaFile)
	if err != nil {
		return BackupInfo{}, err
	}
	info, err := ParseBackupInfo(data)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("%s/%s/%s: %w", s.URL(), backup, MetaFile, err)
	}
	return info, nil
}

// WriteBackupInfo writes a backup's meta. Write it after DataFile: its
// presence is what makes the backup listed.
func WriteBackupInfo(ctx context.Context, s backupstore.Store, backup string, info BackupInfo, o backupstore.PutOptions) error {
	if err := checkFolderName("backup", backup); err != nil {
		return err
	}
	return putSmall(ctx, s, backup+"/"+MetaFile, MarshalBackupInfo(info), o)
}

// maxSmallObject bounds what is read into memory for meta, spec and command
// objects, which are a few hundred bytes; a huge one is not ours.
const maxSmallObject = 1 << 20

// ReadSmall reads a small object (a meta, a spec, a command, kopsdr's own
// JSON records) and refuses one larger than 1 MiB rather than hold it.
func ReadSmall(ctx context.Context, s backupstore.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSmallObject+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", s.URL(), key, err)
	}
	if len(data) > maxSmallObject {
		return nil, fmt.Errorf("%s/%s is larger than %d bytes: not an etcd-manager object", s.URL(), key, maxSmallObject)
	}
	return data, nil
}

func putSmall(ctx context.Context, s backupstore.Store, key string, data []byte, o backupstore.PutOptions) error {
	_, err := s.Put(ctx, key, bytes.NewReader(data), o)
	return err
}
