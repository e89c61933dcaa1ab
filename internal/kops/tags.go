// Package kops is kopsdr's one model of a kops cluster on EC2: the tags kops
// and protokube put on masters and etcd volumes, the rule that says which
// instances are a cluster's masters, the one EC2 master finder, and the EC2
// client every EC2 caller builds. It imports no Docker, etcd or Temporal code
// so that anything may use it.
package kops

import "strings"

// The tags kops and protokube put on a cluster's masters and etcd volumes
// (FORMATS.md, "EBS volumes"). Legacy kops: KubernetesCluster=<cluster> and
// k8s.io/role/master=1. Current kops keeps those and adds
// kubernetes.io/cluster/<cluster>=owned and k8s.io/role/control-plane=1.
const (
	TagKubernetesCluster = "KubernetesCluster"
	TagClusterPrefix     = "kubernetes.io/cluster/" // + <cluster>; value owned (or shared: not the cluster's)
	TagRoleMaster        = "k8s.io/role/master"
	TagRoleControlPlane  = "k8s.io/role/control-plane"
	TagEtcdPrefix        = "k8s.io/etcd/" // + main | events; value <member>/<all members>
	TagName              = "Name"

	// Owned is the value of kubernetes.io/cluster/<cluster> on what the
	// cluster owns; "shared" marks a resource the cluster only uses.
	Owned = "owned"
	// RoleValue is the value of both role tags.
	RoleValue = "1"
)

// ClusterTag is the current ownership tag key of cluster.
func ClusterTag(cluster string) string { return TagClusterPrefix + cluster }

// OwnedBy reports whether kops tagged a resource as cluster's. It must say
// so in one of the two styles (KubernetesCluster=<cluster>, or
// kubernetes.io/cluster/<cluster>=owned), and no ownership tag present may
// say otherwise: KubernetesCluster naming another cluster, or
// kubernetes.io/cluster/<cluster>=shared (a resource the cluster only uses,
// never one of its masters), disqualifies it. This finds legacy clusters,
// which carry only the first tag, and current ones, which carry both.
func OwnedBy(tags map[string]string, cluster string) bool {
	if cluster == "" {
		return false
	}
	legacy, hasLegacy := tags[TagKubernetesCluster]
	current, hasCurrent := tags[ClusterTag(cluster)]
	if (hasLegacy && legacy != cluster) || (hasCurrent && current != Owned) {
		return false
	}
	return hasLegacy || hasCurrent
}

// IsMaster reports whether kops tagged an instance as a master (control
// plane) of cluster: OwnedBy, and a role tag with the value kops writes. A
// role tag present with another value ("0", "") disqualifies it, like an
// ownership tag that disagrees: kops never writes one, so the instance is
// not what kopsdr may restart.
func IsMaster(tags map[string]string, cluster string) bool {
	if !OwnedBy(tags, cluster) {
		return false
	}
	m, hasM := tags[TagRoleMaster]
	cp, hasCP := tags[TagRoleControlPlane]
	if (hasM && m != RoleValue) || (hasCP && cp != RoleValue) {
		return false
	}
	return hasM || hasCP
}

// IsKopsTag reports whether a tag is one kops or protokube put on a
// resource (ownership, roles, etcd membership, Name).
func IsKopsTag(key string) bool {
	return key == TagKubernetesCluster || key == TagName ||
		strings.HasPrefix(key, "k8s.io/") || strings.HasPrefix(key, TagClusterPrefix)
}
