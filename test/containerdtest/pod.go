package containerdtest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/protobuf/types/known/anypb"
)

// Labels the kubelet gives every container (pkg/kubelet/kuberuntime/
// labels.go, newContainerLabels) and the one the CRI plugin adds.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
	LabelCRIKind       = "io.cri-containerd.kind" // "container", or "sandbox" for the pause container
)

// criMetadataExtension is the container extension in which the CRI plugin
// keeps its metadata (pkg/cri/store/container, registered with typeurl
// under this URL); the value is JSON.
const (
	criMetadataExtension = "io.cri-containerd.container.metadata"
	criMetadataTypeURL   = "github.com/containerd/cri/pkg/store/container/Metadata"
)

// criName is the CRI plugin's container name (makeContainerName):
// <container>_<pod>_<namespace>_<pod uid>_<attempt>.
func criName(p *Pod, attempt int) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", p.Spec.Container, p.Spec.Name, p.Spec.Namespace, p.UID, attempt)
}

// logPath is where the kubelet has the CRI plugin write a container's
// log: <pods log dir>/<namespace>_<pod>_<uid>/<container>/<attempt>.log.
func (k *Kubelet) logPath(p *Pod, attempt int) string {
	return filepath.Join(k.logDir, p.Spec.Namespace+"_"+p.Spec.Name+"_"+p.UID, p.Spec.Container, strconv.Itoa(attempt)+".log")
}

// criMetadata is the part of the CRI plugin's metadata JSON that tools
// read: name, attempt, log path, and the kubelet's restart count
// annotation.
func criMetadata(id, name string, p *Pod, attempt int, logPath string) (*anypb.Any, error) {
	b, err := json.Marshal(map[string]any{
		"Version": "v1",
		"Metadata": map[string]any{
			"ID":   id,
			"Name": name,
			"Config": map[string]any{
				"metadata": map[string]any{"name": p.Spec.Container, "attempt": attempt},
				"labels":   criLabels(p),
				"annotations": map[string]string{
					"io.kubernetes.container.restartCount": strconv.Itoa(attempt),
				},
				"log_path": filepath.Join(p.Spec.Container, strconv.Itoa(attempt)+".log"),
			},
			"ImageRef": p.Spec.Image.Name,
			"LogPath":  logPath,
		},
	})
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: criMetadataTypeURL, Value: b}, nil
}

func criLabels(p *Pod) map[string]string {
	return map[string]string{
		LabelPodName:       p.Spec.Name,
		LabelPodNamespace:  p.Spec.Namespace,
		LabelPodUID:        p.UID,
		LabelContainerName: p.Spec.Container,
		LabelCRIKind:       "container",
	}
}

// startNext creates the pod's next container (a new ID, attempt+1) from
// its image's snapshot and starts its task, its output going to the
// attempt's log file. Hold p.work, not k.mu.
func (k *Kubelet) startNext(ctx context.Context, p *Pod) error {
	ctx = NS(ctx)
	k.mu.Lock()
	attempt := p.attempt + 1
	k.mu.Unlock()
	id := randomHex(32) // like the CRI plugin's IDs
	name := criName(p, attempt)
	logPath := k.logPath(p, attempt)
	if err := mkdirFor(logPath); err != nil {
		return err
	}
	spec, err := k.d.runtimeSpec(id, append(append([]string(nil), p.Spec.Image.Entrypoint...), p.Spec.Args...), p.Spec.Env, p.Spec.Mounts)
	if err != nil {
		return err
	}
	meta, err := criMetadata(id, name, p, attempt, logPath)
	if err != nil {
		return err
	}
	prep, err := k.d.Snapshots().Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: Snapshotter, Key: id, Parent: p.Spec.Image.ChainID})
	if err != nil {
		return fmt.Errorf("prepare snapshot for %s: %w", name, err)
	}
	_, err = k.d.Containers().Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID:          id,
		Labels:      criLabels(p),
		Image:       p.Spec.Image.Name,
		Runtime:     &containersapi.Container_Runtime{Name: "io.containerd.runc.v2"},
		Spec:        spec,
		Snapshotter: Snapshotter,
		SnapshotKey: id,
		Extensions:  map[string]*anypb.Any{criMetadataExtension: meta},
	}})
	if err != nil {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	k.mu.Lock()
	p.attempt, p.current, p.ids, p.stoppedSince = attempt, id, append(p.ids, id), time.Time{}
	k.mu.Unlock()
	out := "file://" + logPath
	if _, err := k.d.Tasks().Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Rootfs: prep.GetMounts(), Stdout: out, Stderr: out}); err != nil {
		return fmt.Errorf("create task of %s: %w", name, err)
	}
	if _, err := k.d.Tasks().Start(ctx, &tasksapi.StartRequest{ContainerID: id}); err != nil {
		return fmt.Errorf("start task of %s: %w", name, err)
	}
	return nil
}

// PodView is a copy of a pod's state.
type PodView struct {
	Node, Name, UID string
	Current         string   // current container's ID
	Attempt         int      // current container's attempt
	IDs             []string // every container's ID, oldest first
	LogPath         string   // current container's log file
}

// Pods returns every pod's state, in the order they were Run.
func (k *Kubelet) Pods() []PodView {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]PodView, 0, len(k.pods))
	for _, p := range k.pods {
		out = append(out, PodView{
			Node: p.Spec.Node, Name: p.Spec.Name, UID: p.UID, Current: p.current, Attempt: p.attempt,
			IDs: append([]string(nil), p.ids...), LogPath: k.logPath(p, max(p.attempt, 0)),
		})
	}
	return out
}

// Pod returns the state of the pod named name.
func (k *Kubelet) Pod(name string) (PodView, bool) {
	for _, v := range k.Pods() {
		if v.Name == name {
			return v, true
		}
	}
	return PodView{}, false
}
