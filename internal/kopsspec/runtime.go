package kopsspec

import (
	"fmt"
	"regexp"
	"strconv"
)

// Container runtimes a kops cluster spec can declare.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
)

// kubeVersion matches kops's kubernetesVersion: "1.28.3", "v1.28.3", or a
// release URL ending in one.
var kubeVersion = regexp.MustCompile(`v?(\d+)\.(\d+)(\.\d+)?([-+][0-9A-Za-z.-]*)?/?$`)

// Runtime is the container runtime the masters run: the spec's
// containerRuntime when set, else kops's default for the Kubernetes
// version: containerd from 1.24 on (dockershim is gone), Docker before.
// A spec that says neither is an error: kopsdr does not guess which API
// to kill etcd-manager through.
func (s Spec) Runtime() (string, error) {
	switch s.ContainerRuntime {
	case RuntimeDocker, RuntimeContainerd:
		return s.ContainerRuntime, nil
	case "":
	default:
		return "", fmt.Errorf("cluster spec's containerRuntime %q is neither docker nor containerd", s.ContainerRuntime)
	}
	m := kubeVersion.FindStringSubmatch(s.KubernetesVersion)
	if m == nil {
		return "", fmt.Errorf("cluster spec declares no containerRuntime and its kubernetesVersion %q is not a version", s.KubernetesVersion)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major > 1 || minor >= 24 {
		return RuntimeContainerd, nil
	}
	return RuntimeDocker, nil
}
