package restart

import (
	"fmt"
	"strings"
)

// UnreachableError means a master's container runtime did not answer. It is
// worth retrying (a daemon restarting, a network blip); when retries run
// out, callers report the master by name.
type UnreachableError struct {
	Master   string
	Endpoint string
	Runtime  string // RuntimeContainerd, RuntimeReboot, or RuntimeDocker (also when empty)
	Err      error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s: %s at %s unreachable: %v", masterName(e.Master), daemonName(e.Runtime), e.Endpoint, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// NotFoundError means no container matched. Others lists the etcd-manager
// containers the runtime does have, which shows a wrong node name or a
// master that runs containerd (no k8s_ names under Docker) at a glance.
type NotFoundError struct {
	Master   string
	Endpoint string
	// Prefix is what was looked for: a Docker container name prefix, or
	// under containerd the pod name (a prefix of pod names when Master
	// is "").
	Prefix  string
	Others  []string
	Runtime string // RuntimeContainerd, or RuntimeDocker (also when empty)
}

func (e *NotFoundError) Error() string {
	switch e.Runtime {
	case RuntimeContainerd:
		return e.containerdMessage()
	case RuntimeReboot:
		return fmt.Sprintf("%s: no EC2 instance %s in %s", masterName(e.Master), e.Prefix, strings.TrimPrefix(e.Endpoint, "EC2 "))
	}
	msg := fmt.Sprintf("%s: no container named %s* on Docker at %s", masterName(e.Master), e.Prefix, e.Endpoint)
	if len(e.Others) > 0 {
		return msg + "; etcd-manager containers there: " + strings.Join(e.Others, ", ")
	}
	return msg + "; there is no etcd-manager container at all (is this a kops master, and does its kubelet use Docker rather than containerd?)"
}

func masterName(m string) string {
	if m == "" {
		return "master (any node)"
	}
	return "master " + m
}

// containerdMessage says which pod had no etcd-manager container in the
// kubelet's containerd namespace, and which etcd-manager pods are there.
func (e *NotFoundError) containerdMessage() string {
	what := "pod " + e.Prefix
	if e.Master == "" {
		what = "pod " + e.Prefix + "*"
	}
	msg := fmt.Sprintf("%s: no etcd-manager container of %s in containerd namespace %s at %s", masterName(e.Master), what, CRINamespace, e.Endpoint)
	if len(e.Others) > 0 {
		return msg + "; etcd-manager pods there: " + strings.Join(e.Others, ", ")
	}
	return msg + "; there is no etcd-manager container at all (is this a kops master, and does its kubelet use containerd rather than Docker?)"
}

// daemonName is how messages name a runtime's daemon.
func daemonName(runtime string) string {
	switch runtime {
	case RuntimeContainerd:
		return "containerd"
	case RuntimeReboot:
		return "EC2"
	}
	return "Docker daemon"
}
