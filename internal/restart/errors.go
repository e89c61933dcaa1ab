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
	Err      error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s: Docker daemon at %s unreachable: %v", masterName(e.Master), e.Endpoint, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// NotFoundError means no container matched. Others lists the etcd-manager
// containers the runtime does have, which shows a wrong node name or a
// master that runs containerd (no k8s_ names under Docker) at a glance.
type NotFoundError struct {
	Master   string
	Endpoint string
	Prefix   string
	Others   []string
}

func (e *NotFoundError) Error() string {
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
