// Package kopsspec reads the one part of a kops cluster spec that kopsdr's
// volume restore must obey: per etcd member, whether its volume is encrypted
// and with which KMS key. kops keeps the spec in the state store at
// <state store>/<cluster name>/config as YAML; encryption can only be set
// when the cluster is created, so a restore must never lose it.
package kopsspec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// Errors Read wraps, so callers can tell a missing or bad spec (final) from
// a store that did not answer (worth retrying).
var (
	ErrNoSpec  = errors.New("cluster spec not found")
	ErrBadSpec = errors.New("cluster spec unusable")
)

// maxSpecBytes bounds what is read: a cluster spec is a few KiB.
const maxSpecBytes = 4 << 20

// Member is one etcd member as the cluster spec lists it.
type Member struct {
	Name            string `json:"name"`
	InstanceGroup   string `json:"instanceGroup,omitempty"`
	EncryptedVolume bool   `json:"encryptedVolume,omitempty"`
	KMSKeyID        string `json:"kmsKeyId,omitempty"`
	VolumeType      string `json:"volumeType,omitempty"`
}

// EtcdCluster is one etcd cluster (main, events) of the spec.
type EtcdCluster struct {
	Name    string   `json:"name"`
	Members []Member `json:"etcdMembers"`
	Manager *Manager `json:"manager,omitempty"`
}

// Manager is the part of an etcd cluster's manager settings kopsdr reads.
type Manager struct {
	// BackupRetentionDays is how many days etcd-manager keeps one backup a
	// day; kops's default, when unset, is 90.
	BackupRetentionDays *uint32 `json:"backupRetentionDays,omitempty"`
}

// Spec is the part of a kops Cluster kopsdr reads.
type Spec struct {
	ClusterName  string        `json:"clusterName,omitempty"` // metadata.name
	EtcdClusters []EtcdCluster `json:"etcdClusters"`
	// ContainerRuntime is "docker" or "containerd" when the spec says;
	// kops leaves it empty to mean its default for the Kubernetes version.
	ContainerRuntime  string `json:"containerRuntime,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
}

// document is the YAML kops writes: a Cluster object (apiVersion
// kops.k8s.io/v1alpha2, kind Cluster) whose spec holds etcdClusters. Very
// old state stores hold the spec alone, so etcdClusters is also looked for
// at the top.
type document struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec         *Spec         `json:"spec"`
	EtcdClusters []EtcdCluster `json:"etcdClusters"`
}

// Parse reads a cluster spec document.
func Parse(data []byte) (Spec, error) {
	var doc document
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Spec{}, fmt.Errorf("cluster spec is not valid YAML: %w", err)
	}
	spec := Spec{EtcdClusters: doc.EtcdClusters}
	if doc.Spec != nil {
		spec = *doc.Spec
	}
	spec.ClusterName = doc.Metadata.Name
	if len(spec.EtcdClusters) == 0 {
		return Spec{}, errors.New("cluster spec has no etcdClusters")
	}
	for _, ec := range spec.EtcdClusters {
		if ec.Name == "" {
			return Spec{}, errors.New("cluster spec has an etcd cluster without a name")
		}
		for _, m := range ec.Members {
			if m.Name == "" {
				return Spec{}, fmt.Errorf("cluster spec: etcd cluster %s has a member without a name", ec.Name)
			}
		}
	}
	return spec, nil
}

// Key is where kops keeps a cluster's spec, relative to the state store.
func Key(cluster string) string { return cluster + "/config" }

// Read reads and parses <state store>/<cluster>/config. A missing object is
// ErrNoSpec, a document kopsdr cannot use ErrBadSpec; store errors are
// returned as the store gave them.
func Read(ctx context.Context, store backupstore.Store, cluster string) (Spec, error) {
	rc, err := store.Get(ctx, Key(cluster))
	if errors.Is(err, backupstore.ErrNotFound) {
		return Spec{}, fmt.Errorf("%w at %s/%s", ErrNoSpec, store.URL(), Key(cluster))
	}
	if err != nil {
		return Spec{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSpecBytes+1))
	if err != nil {
		return Spec{}, err
	}
	if len(data) > maxSpecBytes {
		return Spec{}, fmt.Errorf("%w: %s/%s is larger than %d bytes", ErrBadSpec, store.URL(), Key(cluster), maxSpecBytes)
	}
	spec, err := Parse(data)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %s/%s: %w", ErrBadSpec, store.URL(), Key(cluster), err)
	}
	if spec.ClusterName != "" && spec.ClusterName != cluster {
		return Spec{}, fmt.Errorf("%w: %s/%s is the spec of cluster %s, not %s", ErrBadSpec, store.URL(), Key(cluster), spec.ClusterName, cluster)
	}
	return spec, nil
}

// Member returns one member of one etcd cluster.
func (s Spec) Member(etcdCluster, member string) (Member, bool) {
	for _, ec := range s.EtcdClusters {
		if ec.Name != etcdCluster {
			continue
		}
		for _, m := range ec.Members {
			if m.Name == member {
				return m, true
			}
		}
	}
	return Member{}, false
}

// DefaultBackupRetentionDays is kops's daily retention when the spec sets
// none (etcdClusters[].manager.backupRetentionDays).
const DefaultBackupRetentionDays = 90

// DailyRetention is how long etcd-manager keeps the first backup of each
// day for one etcd cluster, as the cluster spec configures it.
type DailyRetention struct {
	EtcdCluster string `json:"etcdCluster"`
	Days        int    `json:"days"`
	// Found is true when the spec sets backupRetentionDays for this etcd
	// cluster; false means Days is kops's default (90), including when the
	// etcd cluster is not in the spec at all.
	Found bool `json:"found"`
}

// Duration is Days as a duration.
func (r DailyRetention) Duration() time.Duration { return time.Duration(r.Days) * 24 * time.Hour }

// Rule says, for a plan, where Days came from.
func (r DailyRetention) Rule() string {
	if r.Found {
		return fmt.Sprintf("%d days from the cluster spec (etcdClusters[%s].manager.backupRetentionDays)", r.Days, r.EtcdCluster)
	}
	return fmt.Sprintf("%d days, kops's default (the cluster spec sets no backupRetentionDays for %s)", r.Days, r.EtcdCluster)
}

// DailyRetention returns the daily retention of one etcd cluster. A value
// of 0 is treated as unset: kops does not let etcd-manager keep no daily
// backups, and kopsdr refuses a zero retention.
func (s Spec) DailyRetention(etcdCluster string) DailyRetention {
	r := DailyRetention{EtcdCluster: etcdCluster, Days: DefaultBackupRetentionDays}
	for _, ec := range s.EtcdClusters {
		if ec.Name == etcdCluster && ec.Manager != nil && ec.Manager.BackupRetentionDays != nil && *ec.Manager.BackupRetentionDays > 0 {
			r.Days, r.Found = int(*ec.Manager.BackupRetentionDays), true
		}
	}
	return r
}

// DailyRetentions returns the daily retention of every etcd cluster of the
// spec, in the spec's order.
func (s Spec) DailyRetentions() []DailyRetention {
	out := make([]DailyRetention, 0, len(s.EtcdClusters))
	for _, ec := range s.EtcdClusters {
		out = append(out, s.DailyRetention(ec.Name))
	}
	return out
}

// ReadDailyRetention reads <state store>/<cluster>/config and returns the
// daily retention of etcdCluster. A state store without the spec is not an
// error: the result is kops's default with Found false. A spec that is there
// but unusable is (ErrBadSpec), as are store errors.
func ReadDailyRetention(ctx context.Context, store backupstore.Store, cluster, etcdCluster string) (DailyRetention, error) {
	spec, err := Read(ctx, store, cluster)
	if errors.Is(err, ErrNoSpec) {
		return Spec{}.DailyRetention(etcdCluster), nil
	}
	if err != nil {
		return DailyRetention{}, err
	}
	return spec.DailyRetention(etcdCluster), nil
}
