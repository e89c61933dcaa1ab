package ebs

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kopsdr/kopsdr/internal/kops"
)

// The tags protokube and kops put on an etcd volume (docs/formats.md, "EBS
// volumes"), defined once in package kops. protokube mounts the volume that
// carries KubernetesCluster, the master role and k8s.io/etcd/<main|events>
// in its master's zone.
const (
	TagKubernetesCluster = kops.TagKubernetesCluster
	TagName              = kops.TagName
	TagRoleMaster        = kops.TagRoleMaster
	TagRoleControlPlane  = kops.TagRoleControlPlane
	TagEtcdPrefix        = kops.TagEtcdPrefix
	TagClusterPrefix     = kops.TagClusterPrefix
)

// kopsdr's own tags. Everything under kopsdr.io/ is bookkeeping that neither
// kops nor protokube reads.
const (
	TagPrefix = "kopsdr.io/"
	// On snapshots: which cluster, set, etcd cluster and member, where and
	// by which workflow, and the volume it was taken of.
	TagCluster     = "kopsdr.io/cluster"
	TagSet         = "kopsdr.io/snapshot-set"
	TagSetSize     = "kopsdr.io/set-size" // how many snapshots the set has when whole
	TagWorkflowID  = "kopsdr.io/workflow-id"
	TagEtcdCluster = "kopsdr.io/etcd-cluster"
	TagMember      = "kopsdr.io/member"
	TagZone        = "kopsdr.io/availability-zone"
	TagVolumeID    = "kopsdr.io/volume-id"
	TagVolumeSpec  = "kopsdr.io/volume-spec" // type/size/iops/throughput, e.g. gp3/20/3000/125
	// TagCopyPrefix prefixes a copy of another resource's tag: on a snapshot
	// the tags its volume had, on a replaced volume the kops tags it lost.
	// A prefixed key is invisible to protokube, which matches exact keys.
	TagCopyPrefix = "kopsdr.io/tag/"
	// On volumes a restore touched.
	TagReplacedBy      = "kopsdr.io/replaced-by"
	TagReplaces        = "kopsdr.io/replaces"
	TagRestoredFrom    = "kopsdr.io/restored-from"
	TagRestoreWorkflow = "kopsdr.io/restore-workflow"
	TagClientToken     = "kopsdr.io/client-token"
	TagRolledBack      = "kopsdr.io/rolled-back"
)

// EC2's tag limits.
const (
	MaxTags        = 50
	MaxTagKeyLen   = 128
	MaxTagValueLen = 256
)

// IsKopsTag reports whether a tag is one kops or protokube put on an etcd
// volume: these move from the old volume to the new one in a restore.
func IsKopsTag(key string) bool { return kops.IsKopsTag(key) }

// IsUserTag reports whether a tag is neither AWS's, kops's nor kopsdr's: an
// operator's own (cost centre, team). A restored volume gets a copy.
func IsUserTag(key string) bool {
	return !IsKopsTag(key) && !strings.HasPrefix(key, "aws:") && !strings.HasPrefix(key, TagPrefix)
}

// KopsTags is the subset of tags that kops and protokube own.
func KopsTags(tags map[string]string) map[string]string {
	return filter(tags, IsKopsTag)
}

// UserTags is the subset of tags that belong to the operator.
func UserTags(tags map[string]string) map[string]string {
	return filter(tags, IsUserTag)
}

func filter(tags map[string]string, keep func(string) bool) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if keep(k) {
			out[k] = v
		}
	}
	return out
}

// Copied prefixes every key with TagCopyPrefix, leaving out those that would
// exceed EC2's key length (a very long kubernetes.io/cluster/<name>): such a
// tag cannot be recorded and is derived again from the cluster name.
func Copied(tags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if len(TagCopyPrefix)+len(k) <= MaxTagKeyLen {
			out[TagCopyPrefix+k] = v
		}
	}
	return out
}

// Uncopied returns the tags recorded with TagCopyPrefix, unprefixed.
func Uncopied(tags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if orig, ok := strings.CutPrefix(k, TagCopyPrefix); ok {
			out[orig] = v
		}
	}
	return out
}

// EtcdTag is the value of k8s.io/etcd/<cluster>: this member and all members.
type EtcdTag struct {
	Member  string
	Members []string
}

// ParseEtcdTag reads "<member>/<member,member,...>", e.g. "a/a,b,c".
func ParseEtcdTag(v string) (EtcdTag, error) {
	member, all, ok := strings.Cut(v, "/")
	if !ok || member == "" || all == "" {
		return EtcdTag{}, fmt.Errorf("etcd tag value %q is not <member>/<all members>", v)
	}
	members := strings.Split(all, ",")
	if !slices.Contains(members, member) || slices.Contains(members, "") {
		return EtcdTag{}, fmt.Errorf("etcd tag value %q: member %q is not among %q", v, member, all)
	}
	return EtcdTag{Member: member, Members: members}, nil
}

func (t EtcdTag) String() string { return t.Member + "/" + strings.Join(t.Members, ",") }

// VolumeName is the Name protokube and kops give an etcd volume:
// <member>.etcd-<main|events>.<cluster>.
func VolumeName(member, etcdCluster, cluster string) string {
	return member + ".etcd-" + etcdCluster + "." + cluster
}

// ProtokubeTags is the tag set a restored etcd volume must carry: the kops
// tags the replaced volume had (kubernetes.io/cluster/<name>,
// k8s.io/role/control-plane, ...), with the four protokube matches on set to
// exactly what protokube looks for.
func ProtokubeTags(cluster, etcdCluster string, etcd EtcdTag, had map[string]string) map[string]string {
	out := KopsTags(had)
	out[TagKubernetesCluster] = cluster
	if out[TagName] == "" {
		out[TagName] = VolumeName(etcd.Member, etcdCluster, cluster)
	}
	out[TagEtcdPrefix+etcdCluster] = etcd.String()
	out[TagRoleMaster] = kops.RoleValue
	return out
}

// SortedKeys lists a map's keys in order, for stable requests and output.
func SortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
