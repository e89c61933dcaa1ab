package restart

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
)

// Labels the kubelet puts on every container it has the CRI plugin create
// (pkg/kubelet/kuberuntime/labels.go, newContainerLabels). The attempt is
// not among them: it is the CRI metadata's.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	labelCRIKind       = "io.cri-containerd.kind" // "container"; "sandbox" for pause containers
)

// criMetadataExtension is the container extension where containerd's CRI
// plugin keeps its metadata, as JSON (pkg/cri/store/container/metadata.go):
// the CRI name <container>_<pod>_<namespace>_<uid>_<attempt>, the
// kubelet's container config (metadata.attempt) and the log file.
const criMetadataExtension = "io.cri-containerd.container.metadata"

// criMetadata is what kopsdr reads of it. Attempt 0 is omitted in the
// JSON (omitempty), so absent means 0.
type criMetadata struct {
	Version  string
	Metadata struct {
		Name    string
		LogPath string
		Config  *struct {
			Metadata *struct {
				Attempt int `json:"attempt"`
			} `json:"metadata"`
		}
	}
}

// ctrdFound is a Container plus what the restarter needs internally.
type ctrdFound struct {
	Container
	pod, uid, logPath string
}

func (r *containerdRestarter) Find(ctx context.Context, t Target, etcdCluster string) ([]Container, error) {
	s, pod, err := r.open(ctx, t, etcdCluster)
	if err != nil {
		return nil, err
	}
	defer s.close()
	fs, _, err := s.find(ctx, pod)
	if err != nil {
		return nil, err
	}
	out := make([]Container, len(fs))
	for i, f := range fs {
		out[i] = f.Container
	}
	return out, nil
}

// find lists the etcd-manager containers of pod (every pod with that
// prefix when the target has no master), running first, then newest
// first. It also returns every etcd-manager container in the namespace,
// for a NotFoundError. containerd filters the list by the kubelet's
// labels; the pod name is matched here.
func (s *ctrdSession) find(ctx context.Context, pod string) (matched, all []ctrdFound, err error) {
	list, err := s.containers.List(s.ns(ctx), &containersapi.ListContainersRequest{Filters: []string{
		fmt.Sprintf(`labels.%q==%q,labels.%q==%q`, labelContainerName, "etcd-manager", labelPodNamespace, "kube-system"),
	}})
	if err != nil {
		return nil, nil, s.wrap(err, "list containers in namespace "+CRINamespace)
	}
	tasks, err := s.tasks.List(s.ns(ctx), &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, nil, s.wrap(err, "list tasks in namespace "+CRINamespace)
	}
	procs := map[string]*task.Process{}
	for _, p := range tasks.GetTasks() {
		procs[p.GetID()] = p
	}
	for _, c := range list.GetContainers() {
		if c.GetLabels()[labelCRIKind] == "sandbox" {
			continue
		}
		f := toCtrdFound(c, procs[c.GetID()])
		all = append(all, f)
		if f.pod == pod || (s.t.Master == "" && strings.HasPrefix(f.pod, pod)) {
			matched = append(matched, f)
		}
	}
	sortCtrd(matched)
	sortCtrd(all)
	return matched, all, nil
}

// toCtrdFound maps a container and its task (nil: none) to a Container.
//
// containerd's API reports no start time for a task, only when it exited;
// the container's CreatedAt is when the kubelet created it, moments before
// starting it. So StartedAt stays zero, and Proven recognises a new
// process by its new container ID alone, which is sound under the kubelet:
// it never starts a CRI container twice, it creates a new one per attempt.
func toCtrdFound(c *containersapi.Container, p *task.Process) ctrdFound {
	labels := c.GetLabels()
	f := ctrdFound{pod: labels[labelPodName], uid: labels[labelPodUID]}
	f.ID = c.GetID()
	f.Created = c.GetCreatedAt().AsTime()
	var meta criMetadata
	if ext := c.GetExtensions()[criMetadataExtension]; ext != nil && json.Unmarshal(ext.GetValue(), &meta) == nil {
		f.Name, f.logPath = meta.Metadata.Name, meta.Metadata.LogPath
		if cfg := meta.Metadata.Config; cfg != nil && cfg.Metadata != nil {
			f.RestartCount = cfg.Metadata.Attempt
		}
	}
	if f.Name == "" { // not made by the CRI plugin: the labels, without attempt
		f.Name = strings.Join([]string{labels[labelContainerName], f.pod, labels[labelPodNamespace], f.uid}, "_")
	}
	f.State, f.Running = taskState(p)
	return f
}

// taskState names a task's status as Docker would where it can. A
// container without a task has exited (the CRI plugin deletes a task once
// it exits) or is not started yet.
func taskState(p *task.Process) (string, bool) {
	if p == nil {
		return "no-task", false
	}
	switch p.GetStatus() {
	case task.Status_RUNNING:
		return "running", true
	case task.Status_STOPPED:
		return "exited (" + strconv.Itoa(int(p.GetExitStatus())) + ")", false
	case task.Status_CREATED:
		return "created", false
	case task.Status_PAUSED, task.Status_PAUSING:
		return "paused", false
	}
	return "unknown", false
}

// sortCtrd orders running first, then newest (created, then attempt)
// first.
func sortCtrd(cs []ctrdFound) {
	slices.SortFunc(cs, func(a, b ctrdFound) int {
		if a.Running != b.Running {
			if a.Running {
				return -1
			}
			return 1
		}
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		if c := cmp.Compare(b.RestartCount, a.RestartCount); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// notFound builds the *NotFoundError from every etcd-manager container
// in the namespace, one entry per pod (its newest container's state).
func (s *ctrdSession) notFound(pod string, all []ctrdFound) error {
	nf := &NotFoundError{Master: s.t.Master, Endpoint: s.t.Endpoint, Prefix: pod, Runtime: RuntimeContainerd}
	seen := map[string]bool{}
	for _, c := range all { // newest first
		if !seen[c.pod] {
			seen[c.pod] = true
			nf.Others = append(nf.Others, fmt.Sprintf("%s (%s, attempt %d)", c.pod, c.State, c.RestartCount))
		}
	}
	return nf
}

// findSome is find that fails with a *NotFoundError when nothing matched.
func (s *ctrdSession) findSome(ctx context.Context, pod string) ([]ctrdFound, error) {
	cs, all, err := s.find(ctx, pod)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, s.notFound(pod, all)
	}
	return cs, nil
}
