package containerdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// PodSpec is one static pod with one container, as the kubelet runs
// etcd-manager on a kops master.
type PodSpec struct {
	Node      string // the node; Pause and Resume act on all its pods
	Name      string // pod name, e.g. etcd-manager-main-<node>
	Namespace string // default kube-system
	Container string // container name, e.g. etcd-manager
	Image     Image
	Args      []string // after the image's entrypoint
	Env       []string
	Mounts    []Mount
}

// Pod is a pod the Kubelet runs. Its fields other than Spec and UID are
// the Kubelet's; read them through the Kubelet.
type Pod struct {
	Spec PodSpec
	UID  string

	// work serializes what the Kubelet does to this pod, one pod at a
	// time, so that pods are worked on in parallel (see Kubelet).
	work sync.Mutex

	// Guarded by Kubelet.mu.
	attempt      int      // of the current container
	current      string   // current container's ID
	ids          []string // every container's ID, oldest first
	paused       bool     // Pause: no replacement until Resume
	stoppedSince time.Time
}

// Kubelet stands in for the kubelet and the CRI plugin: it creates each
// pod's container in namespace k8s.io with the labels and CRI metadata
// the CRI plugin gives it, and when the container's task exits, however
// it exits, it deletes the task (as the CRI plugin does on a task exit
// event) and after Delay creates a NEW container, attempt+1, and starts
// it (as the kubelet does for a pod with restartPolicy Always). Dead
// containers are kept; the daemon's cleanup removes them.
//
// Every master has its own kubelet, with a worker per pod, so pods are
// checked and started in parallel here too: one loop starting them in
// turn spreads the restart of six etcd-managers over many seconds on a
// loaded machine, and the last to come back may find the restore over
// without it (test/masters' kubelet did exactly that).
type Kubelet struct {
	d      *Daemon
	delay  time.Duration
	logDir string // as /var/log/pods

	mu       sync.Mutex
	pods     []*Pod
	timeline []string
	stopping bool

	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	workers sync.WaitGroup // checks under way
}

// NewKubelet starts a Kubelet on d that replaces dead containers after
// delay (the real one takes about a second: its PLEG relists every
// second). It stops when t ends, before the daemon does.
func (d *Daemon) NewKubelet(t testing.TB, delay time.Duration) *Kubelet {
	t.Helper()
	k := &Kubelet{d: d, delay: delay, logDir: filepath.Join(d.Dir, "pods"), wake: make(chan struct{}, 1), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	subscribed := make(chan struct{})
	go k.run(ctx, subscribed)
	<-subscribed
	t.Cleanup(k.Stop)
	return k
}

// Run creates and starts the pod's first container (attempt 0).
func (k *Kubelet) Run(spec PodSpec) (*Pod, error) {
	if spec.Namespace == "" {
		spec.Namespace = "kube-system"
	}
	p := &Pod{Spec: spec, UID: newUID(), attempt: -1}
	p.work.Lock()
	defer p.work.Unlock()
	k.mu.Lock()
	k.pods = append(k.pods, p)
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return p, k.startNext(ctx, p)
}

// Stop ends the Kubelet: it replaces nothing afterwards.
func (k *Kubelet) Stop() {
	k.mu.Lock()
	k.stopping = true
	k.mu.Unlock()
	k.cancel()
	<-k.done
	k.workers.Wait()
}

// Pause makes the Kubelet of node stop replacing containers (a dead
// kubelet, or a master that is down); Resume undoes it.
func (k *Kubelet) Pause(node string)  { k.setPaused(node, true) }
func (k *Kubelet) Resume(node string) { k.setPaused(node, false) }

func (k *Kubelet) setPaused(node string, paused bool) {
	k.mu.Lock()
	pods := append([]*Pod(nil), k.pods...)
	k.mu.Unlock()
	for _, p := range pods {
		if p.Spec.Node == node {
			// After any check under way: once paused, nothing is started.
			p.work.Lock()
			k.mu.Lock()
			p.paused = paused
			k.mu.Unlock()
			p.work.Unlock()
		}
	}
	k.kick()
	k.Notef("node %s: kubelet %s", node, map[bool]string{true: "paused", false: "resumed"}[paused])
}

// run follows task events for the timeline and checks the pods after
// every exit and every second, which also catches what the event stream
// missed.
func (k *Kubelet) run(ctx context.Context, subscribed chan<- struct{}) {
	defer close(k.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	envelopes := make(chan *eventtypes.TaskExit, 64)
	go k.follow(ctx, envelopes, subscribed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-envelopes:
			time.AfterFunc(k.delay, k.kick)
		case <-k.wake:
		case <-tick.C:
		}
		k.checkAll(ctx)
	}
}

func (k *Kubelet) kick() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// syncTopic is where the Kubelet publishes an event to itself: once it
// arrives, its subscription is in place (containerd sends no response
// header on a subscription before its first event).
const syncTopic = "/kopsdr-containerdtest/subscribed"

// follow subscribes to task start and exit events in k8s.io, records
// them and passes exits on; it subscribes again if the stream breaks.
func (k *Kubelet) follow(ctx context.Context, exits chan<- *eventtypes.TaskExit, subscribed chan<- struct{}) {
	got := make(chan struct{})
	once := sync.OnceFunc(func() { close(got); close(subscribed) })
	defer once()
	for ctx.Err() == nil {
		in := `,namespace=="` + Namespace + `"`
		stream, err := k.d.Events().Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: []string{
			`topic=="/tasks/exit"` + in, `topic=="/tasks/start"` + in, `topic=="` + syncTopic + `"` + in,
		}})
		if err == nil {
			go k.publishSync(ctx, got)
		}
		for err == nil {
			var env *eventsapi.Envelope
			if env, err = stream.Recv(); err == nil {
				if env.GetTopic() == syncTopic {
					once()
					continue
				}
				k.record(env, exits)
			}
		}
		if ctx.Err() == nil {
			k.Notef("kubelet: event stream broke: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// publishSync publishes to syncTopic until the subscription has had one
// (got closed), for at most 10 s.
func (k *Kubelet) publishSync(ctx context.Context, got <-chan struct{}) {
	ev, _ := anypb.New(&eventtypes.TaskOOM{})
	for range 100 {
		_, _ = k.d.Events().Publish(NS(ctx), &eventsapi.PublishRequest{Topic: syncTopic, Event: ev})
		select {
		case <-got:
			return
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// record adds a task event to the timeline.
func (k *Kubelet) record(env *eventsapi.Envelope, exits chan<- *eventtypes.TaskExit) {
	at := env.GetTimestamp().AsTime()
	switch env.GetTopic() {
	case "/tasks/exit":
		e := &eventtypes.TaskExit{}
		if proto.Unmarshal(env.GetEvent().GetValue(), e) != nil || e.GetID() != e.GetContainerID() {
			return // not a container's init process
		}
		k.note(at, "exit  %s (status %d)", k.describe(e.GetContainerID()), e.GetExitStatus())
		select {
		case exits <- e:
		default:
		}
	case "/tasks/start":
		e := &eventtypes.TaskStart{}
		if proto.Unmarshal(env.GetEvent().GetValue(), e) == nil {
			k.note(at, "start %s (pid %d)", k.describe(e.GetContainerID()), e.GetPid())
		}
	}
}

// checkAll replaces every pod's container whose task has been dead for
// the delay, each pod on a worker of its own, unless one is at it already
// (the next tick looks again): a slow start holds no other pod back.
func (k *Kubelet) checkAll(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pods {
		if k.stopping || ctx.Err() != nil {
			return
		}
		if !p.work.TryLock() {
			continue
		}
		k.workers.Add(1)
		go func() {
			defer k.workers.Done()
			defer p.work.Unlock()
			k.check(ctx, p)
		}()
	}
}

// check looks at p's current container. Hold p.work, not k.mu.
func (k *Kubelet) check(ctx context.Context, p *Pod) {
	cctx, cancel := context.WithTimeout(NS(ctx), 30*time.Second)
	defer cancel()
	k.mu.Lock()
	current, name := p.current, k.name(p, p.current)
	k.mu.Unlock()
	got, err := k.d.Tasks().Get(cctx, &tasksapi.GetRequest{ContainerID: current})
	switch {
	case err == nil && got.GetProcess().GetStatus() != task.Status_STOPPED:
		k.mu.Lock()
		p.stoppedSince = time.Time{}
		k.mu.Unlock()
		return
	case err == nil:
		// The CRI plugin deletes a container's task once it has exited.
		if _, err := k.d.Tasks().Delete(cctx, &tasksapi.DeleteTaskRequest{ContainerID: current}); err != nil && !isNotFound(err) {
			k.Notef("kubelet: delete task of %s: %v", name, err)
		}
	case !isNotFound(err):
		k.Notef("kubelet: task of %s: %v", name, err)
		return
	}
	k.mu.Lock()
	if p.stoppedSince.IsZero() {
		p.stoppedSince = time.Now()
	}
	wait := p.paused || time.Since(p.stoppedSince) < k.delay
	k.mu.Unlock()
	if wait {
		return
	}
	if err := k.startNext(ctx, p); err != nil {
		k.Notef("kubelet: ERROR %v", err)
	}
}

// Notef adds a line to the timeline (e.g. what a test did).
func (k *Kubelet) Notef(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.notef(format, args...)
}

func (k *Kubelet) notef(format string, args ...any) { k.noteLocked(time.Now(), format, args...) }

func (k *Kubelet) note(at time.Time, format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.noteLocked(at, format, args...)
}

func (k *Kubelet) noteLocked(at time.Time, format string, args ...any) {
	k.timeline = append(k.timeline, at.UTC().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

// Timeline lists container starts, exits, replacements and notes with
// times, for failure messages.
func (k *Kubelet) Timeline() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.timeline, "\n") + "\n"
}

// describe names a container ID for the timeline.
func (k *Kubelet) describe(id string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pods {
		for _, c := range p.ids {
			if c == id {
				return k.name(p, id)
			}
		}
	}
	return shortID(id) + " (not the kubelet's)"
}

// name is the CRI plugin's name for a container of p, with its short ID.
func (k *Kubelet) name(p *Pod, id string) string {
	for i, c := range p.ids {
		if c == id {
			return fmt.Sprintf("%s [%s]", criName(p, i), shortID(id))
		}
	}
	return shortID(id)
}

func newUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// ensure the log folder of a container exists.
func mkdirFor(file string) error { return os.MkdirAll(filepath.Dir(file), 0o755) }
