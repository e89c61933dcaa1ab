package kops_test

import (
	"testing"

	"github.com/kopsdr/kopsdr/internal/kops"
)

// TestIsMaster is the rule both discovery and the volume path use: legacy
// and current kops masters are found, anything that only looks like one is
// not.
func TestIsMaster(t *testing.T) {
	const c = "k.example.com"
	for _, tc := range []struct {
		name string
		tags map[string]string
		want bool
	}{
		{"legacy kops", map[string]string{"KubernetesCluster": c, "k8s.io/role/master": "1"}, true},
		{"current kops", map[string]string{"KubernetesCluster": c, "kubernetes.io/cluster/" + c: "owned", "k8s.io/role/master": "1", "k8s.io/role/control-plane": "1"}, true},
		{"current kops, control-plane only", map[string]string{"kubernetes.io/cluster/" + c: "owned", "k8s.io/role/control-plane": "1"}, true},
		{"no cluster tag", map[string]string{"k8s.io/role/master": "1"}, false},
		{"another cluster", map[string]string{"KubernetesCluster": "other.example.com", "k8s.io/role/master": "1"}, false},
		{"shared, not owned", map[string]string{"kubernetes.io/cluster/" + c: "shared", "k8s.io/role/control-plane": "1"}, false},
		{"owned but legacy tag names another cluster", map[string]string{"KubernetesCluster": "other.example.com", "kubernetes.io/cluster/" + c: "owned", "k8s.io/role/control-plane": "1"}, false},
		{"legacy tag but shared", map[string]string{"KubernetesCluster": c, "kubernetes.io/cluster/" + c: "shared", "k8s.io/role/master": "1"}, false},
		{"role tag 0", map[string]string{"KubernetesCluster": c, "k8s.io/role/master": "0"}, false},
		{"role tag empty", map[string]string{"KubernetesCluster": c, "k8s.io/role/master": ""}, false},
		{"roles disagree", map[string]string{"KubernetesCluster": c, "k8s.io/role/master": "1", "k8s.io/role/control-plane": "0"}, false},
		{"node", map[string]string{"KubernetesCluster": c, "k8s.io/role/node": "1"}, false},
	} {
		if got := kops.IsMaster(tc.tags, c); got != tc.want {
			t.Errorf("%s: IsMaster(%v) = %v, want %v", tc.name, tc.tags, got, tc.want)
		}
	}
	if kops.IsMaster(map[string]string{"KubernetesCluster": "", "k8s.io/role/master": "1"}, "") {
		t.Error("an empty cluster name matched")
	}
}
