package kopsspec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRuntime(t *testing.T) {
	for _, c := range []struct {
		runtime, version, want string
	}{
		{"containerd", "", "containerd"},
		{"docker", "1.30.1", "docker"},
		{"", "1.24.0", "containerd"},
		{"", "v1.29.4", "containerd"},
		{"", "1.23.17", "docker"},
		{"", "https://storage.googleapis.com/kubernetes-release/release/v1.27.3", "containerd"},
		{"", "https://example.com/k8s/v1.21.0/", "docker"},
	} {
		got, err := Spec{ContainerRuntime: c.runtime, KubernetesVersion: c.version}.Runtime()
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, got, "%+v", c)
	}
	_, err := Spec{}.Runtime()
	require.ErrorContains(t, err, "declares no containerRuntime")
	_, err = Spec{ContainerRuntime: "cri-o"}.Runtime()
	require.ErrorContains(t, err, `"cri-o"`)
}

func TestParseReadsRuntimeAndVersion(t *testing.T) {
	s, err := Parse([]byte("metadata: {name: c.example.com}\nspec:\n  kubernetesVersion: 1.28.3\n  containerRuntime: containerd\n  etcdClusters:\n  - name: main\n    etcdMembers: [{name: a}]\n"))
	require.NoError(t, err)
	require.Equal(t, "containerd", s.ContainerRuntime)
	require.Equal(t, "1.28.3", s.KubernetesVersion)
}
