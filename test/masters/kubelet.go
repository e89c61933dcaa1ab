package masters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/kopsdr/kopsdr/test/testenv"
)

// pod is one static etcd-manager pod; each container the kubelet runs for
// it is one attempt.
type pod struct {
	name   string // etcd-manager-main-<node>
	uid    string
	testID string

	alias         string // DNS name on the test network
	args          []string
	binds         []string
	containerPort string
	hostPort      string

	// work serializes what is done to this pod's containers (the
	// kubelet's check and start, StopMaster), one pod at a time, so that
	// pods are worked on in parallel, as each master's kubelet does.
	work sync.Mutex

	// Guarded by kubelet.mu.
	attempt int      // of the current container; -1 before the first
	current string   // current container's ID
	names   []string // every container's name, oldest first
	stopped bool     // StopMaster: no replacement until StartMaster
	starts  int      // "start" events seen for this pod's containers
}

// containerName is the kubelet's name for attempt: k8s_<container>_<pod>_<namespace>_<uid>_<attempt>.
func (p *pod) containerName(attempt int) string {
	return fmt.Sprintf("k8s_etcd-manager_%s_kube-system_%s_%d", p.name, p.uid, attempt)
}

// kubelet starts the pods' containers and, like the kubelet, a new one
// (attempt+1) when the current one has died, however it died: killed
// through the Docker API, stopped, or crashed. Dead containers are kept,
// as the kubelet keeps the last dead one (so `docker ps -a` shows exited
// etcd-manager containers next to the running one); cleanup removes them.
// A container that Docker itself restarts (ContainerRestart) is running
// again before the kubelet looks, so it is left alone.
//
// Every master has its own kubelet, and a kubelet has a worker per pod, so
// pods are checked and started in parallel here too. One loop doing them
// in turn spread a restart of all six over 23 s on a loaded machine (about
// 5 s per container start), and the last member to come back then found
// the restore over without it: a member left behind that a real cluster,
// whose masters restart independently, would not have had. Each create
// and start still takes one of the machine's few start slots
// (testenv.DockerStartSlots): here every master shares one Docker engine.
type kubelet struct {
	cli     *client.Client
	image   string
	network string
	delay   time.Duration

	mu       sync.Mutex
	pods     []*pod
	stopping bool
	events   []string // timeline of container starts and deaths

	wake    chan *pod
	cancel  context.CancelFunc
	done    chan struct{}
	workers sync.WaitGroup // checks under way
}

func newKubelet(cli *client.Client, image, network string, delay time.Duration) *kubelet {
	return &kubelet{cli: cli, image: image, network: network, delay: delay, wake: make(chan *pod, 64), done: make(chan struct{})}
}

// start watches Docker events for the pods' containers, then starts the
// first container of each pod.
func (k *kubelet) start(pods []*pod) error {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.mu.Lock()
	k.pods = pods
	for _, p := range pods {
		p.attempt = -1
	}
	k.mu.Unlock()
	// Events since now, so that none is missed while the stream connects.
	go k.run(ctx, time.Now())
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work.Lock()
			defer p.work.Unlock()
			errs[i] = k.startContainer(ctx, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stop ends the kubelet; it starts no container afterwards.
func (k *kubelet) stop() {
	k.mu.Lock()
	k.stopping = true
	k.mu.Unlock()
	if k.cancel != nil {
		k.cancel()
		<-k.done
		k.workers.Wait()
	}
}

// run follows Docker events: it counts starts and, a delay after a death,
// checks the pod. A periodic check catches anything the stream missed.
func (k *kubelet) run(ctx context.Context, since time.Time) {
	defer close(k.done)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", labelTest+"="+k.podsTestID()),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
	)
	subscribe := func() (<-chan events.Message, <-chan error) {
		return k.cli.Events(ctx, events.ListOptions{Filters: f, Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())})
	}
	msgs, errs := subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			since = time.Unix(0, m.TimeNano+1)
			if p := k.record(m); p != nil && m.Action == events.ActionDie {
				time.AfterFunc(k.delay, func() {
					select {
					case k.wake <- p:
					default: // the periodic check will do
					}
				})
			}
		case <-errs:
			if ctx.Err() != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
			msgs, errs = subscribe()
		case p := <-k.wake:
			k.sync(ctx, p)
		case <-tick.C:
			for _, p := range k.snapshotPods() {
				k.sync(ctx, p)
			}
		}
	}
}

func (k *kubelet) podsTestID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pods[0].testID
}

// record counts a start and adds the event to the timeline.
func (k *kubelet) record(m events.Message) *pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := m.Actor.Attributes["name"]
	var p *pod
	for _, q := range k.pods {
		if q.name == m.Actor.Attributes[labelPod] {
			p = q
		}
	}
	if p == nil {
		return nil
	}
	line := fmt.Sprintf("%s %-5s %s", time.Unix(0, m.TimeNano).UTC().Format("15:04:05.000"), m.Action, name)
	if m.Action == events.ActionDie {
		line += " (exit " + m.Actor.Attributes["exitCode"] + ")"
	}
	k.events = append(k.events, line)
	if m.Action == events.ActionStart {
		p.starts++
	}
	return p
}

// sync checks p on a worker of its own, unless one is at it already (the
// next tick looks again): a slow container start holds no other pod back.
func (k *kubelet) sync(ctx context.Context, p *pod) {
	if !p.work.TryLock() {
		return
	}
	k.workers.Add(1)
	go func() {
		defer k.workers.Done()
		defer p.work.Unlock()
		k.check(ctx, p)
	}()
}

// check starts a replacement when the pod's current container is dead and
// has been for the kubelet delay. Hold p.work.
func (k *kubelet) check(ctx context.Context, p *pod) {
	k.mu.Lock()
	current, skip := p.current, k.stopping || p.stopped || p.current == ""
	k.mu.Unlock()
	if skip {
		return
	}
	ins, err := k.cli.ContainerInspect(ctx, current)
	if err == nil && (ins.State.Running || ins.State.Restarting) {
		return
	}
	if err == nil {
		if finished, perr := time.Parse(time.RFC3339Nano, ins.State.FinishedAt); perr == nil && time.Since(finished) < k.delay {
			return // too fresh: a ContainerRestart may be under way; the next check decides
		}
	}
	if err := k.startContainer(ctx, p); err != nil {
		k.mu.Lock()
		k.events = append(k.events, fmt.Sprintf("%s ERROR %v", time.Now().UTC().Format("15:04:05.000"), err))
		k.mu.Unlock()
	}
}

// startContainer creates and starts the pod's next attempt. Hold p.work
// (not k.mu: Docker calls take seconds on a loaded machine).
func (k *kubelet) startContainer(ctx context.Context, p *pod) error {
	k.mu.Lock()
	attempt := p.attempt + 1
	k.mu.Unlock()
	name := p.containerName(attempt)
	port := nat.Port(p.containerPort + "/tcp")
	cfg := &container.Config{
		Image:        k.image,
		Cmd:          p.args,
		Env:          []string{"TMPDIR=/data"},
		User:         fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()), // files the test can clean up
		ExposedPorts: nat.PortSet{port: {}},
		Labels: map[string]string{
			"io.kubernetes.container.name":         "etcd-manager",
			"io.kubernetes.pod.name":               p.name,
			"io.kubernetes.pod.namespace":          "kube-system",
			"io.kubernetes.pod.uid":                p.uid,
			"io.kubernetes.container.restartCount": strconv.Itoa(attempt),
			labelTest:                              p.testID,
			labelPod:                               p.name,
		},
	}
	host := &container.HostConfig{
		Binds:         p.binds,
		PortBindings:  nat.PortMap{port: {{HostIP: "127.0.0.1", HostPort: p.hostPort}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled}, // the kubelet restarts, not Docker
		NetworkMode:   container.NetworkMode(k.network),
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{k.network: {Aliases: []string{p.alias}}}}
	// Created at once, as the kubelet does, so that kopsdr, which leaves a
	// replacement that is still starting alone, sees it well inside its
	// grace period however long the start slot below takes: one run, with
	// the slot taken before the create, had kopsdr start the old container
	// itself 10 s into a kubelet's 13-22 s replacement.
	created, err := k.cli.ContainerCreate(ctx, cfg, host, netCfg, nil, name)
	if err != nil {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	undo := func() {
		_ = k.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}
	// One of the machine's few start slots: every master here shares one
	// Docker engine, which real masters do not (see testenv.DockerStartSlots).
	release, err := testenv.DockerStartSlot(ctx)
	if err != nil {
		undo()
		return err
	}
	defer release()
	k.mu.Lock()
	current := p.current
	k.mu.Unlock()
	if current != "" {
		// Looked at again now that the slot is ours: the wait may have been
		// long enough for a ContainerRestart (or kopsdr) to bring it back.
		if ins, err := k.cli.ContainerInspect(ctx, current); err == nil && (ins.State.Running || ins.State.Restarting) {
			undo()
			return nil
		}
	}
	if err := k.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		// The dead container may have come back and hold the port: a
		// ContainerRestart whose start came later than the delay, as on a
		// loaded machine. Undo the attempt, so that the next check sees
		// the current container running and leaves it alone.
		undo()
		return fmt.Errorf("start container %s: %w", name, err)
	}
	k.mu.Lock()
	p.attempt, p.current, p.names = attempt, created.ID, append(p.names, name)
	k.mu.Unlock()
	return nil
}

func (k *kubelet) snapshotPods() []*pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*pod(nil), k.pods...)
}

// podView is a copy of a pod's state for readers outside the kubelet.
type podView struct {
	name, current, currentName string
	names                      []string
	starts                     int
}

func (k *kubelet) snapshot() []podView {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []podView
	for _, p := range k.pods {
		v := podView{name: p.name, current: p.current, names: append([]string(nil), p.names...), starts: p.starts}
		if len(p.names) > 0 {
			v.currentName = p.names[len(p.names)-1]
		}
		out = append(out, v)
	}
	return out
}

func (k *kubelet) timeline() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b bytes.Buffer
	for _, e := range k.events {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// findPod finds the pod of a container name (any attempt), of the name
// without its attempt, or of the pod name.
func (k *kubelet) findPod(name string) *pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pods {
		base := strings.TrimSuffix(p.containerName(0), "0") // k8s_..._<uid>_
		if name == p.name || name+"_" == base || strings.HasPrefix(name, base) {
			return p
		}
	}
	return nil
}
