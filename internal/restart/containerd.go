package restart

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// The kubelet's CRI containers live in containerd namespace k8s.io and
// carry these labels (set by containerd's CRI plugin from the pod spec).
const (
	criNamespace     = "k8s.io"
	labelPodName     = "io.kubernetes.pod.name"
	labelPodNS       = "io.kubernetes.pod.namespace"
	labelPodUID      = "io.kubernetes.pod.uid"
	labelContainer   = "io.kubernetes.container.name"
	etcdManagerName  = "etcd-manager"
	staticPodNS      = "kube-system"
	defaultCtrdGrace = 90 * time.Second
)

// ContainerdOptions configure NewContainerd.
type ContainerdOptions struct {
	// Dial opens a connection to the target's containerd socket; nil dials
	// t.Endpoint on the worker, or over SSH when t.SSH is set (DialContainerd).
	Dial func(ctx context.Context, t Target) (net.Conn, error)
	// Grace is how long Replace waits for the kubelet to start a new
	// container after the kill (default 90 s: its restart back-off after
	// repeated crashes reaches tens of seconds).
	Grace time.Duration
	Poll  time.Duration // default DefaultPoll
}

// NewContainerd returns a Restarter for kops masters whose kubelet runs
// containers on containerd (Kubernetes 1.24 and later). etcd-manager runs
// there as the static pods etcd-manager-<cluster>-<node>; the restarter
// finds their containers by CRI labels and kills their tasks (SIGKILL, all
// processes). Containerd's CRI plugin sees the task exit and marks the
// container exited; the kubelet, whose static pods have restartPolicy
// Always, then creates a NEW container (new ID, attempt + 1). That new ID
// is the proof. Unlike the Docker restarter it never creates or starts a
// container itself: CRI containers belong to the kubelet.
func NewContainerd(o ContainerdOptions) Restarter {
	if o.Dial == nil {
		o.Dial = DialContainerd
	}
	if o.Grace <= 0 {
		o.Grace = defaultCtrdGrace
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	return &containerdRestarter{o: o}
}

// DialContainerd connects to a containerd target's socket: over SSH (the
// master's own socket, through the sudo relay unless the login is root)
// when t.SSH is set, else on the worker.
func DialContainerd(ctx context.Context, t Target) (net.Conn, error) {
	path := strings.TrimPrefix(cmpOr(t.Endpoint, DefaultContainerdSocket), "unix://")
	if t.SSH != nil {
		return sshdial.DialSocket(ctx, *t.SSH, path)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type containerdRestarter struct{ o ContainerdOptions }

// ctrdSession is one gRPC connection to one master's containerd.
type ctrdSession struct {
	t          Target
	mu         sync.Mutex
	first      net.Conn // dialled by open, handed to gRPC's first dial
	conn       *grpc.ClientConn
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
}

func (r *containerdRestarter) open(ctx context.Context, t Target, etcdCluster string) (*ctrdSession, error) {
	if err := checkNames(etcdCluster, t.Master); err != nil {
		return nil, err
	}
	// The first connection is dialled here, not by gRPC: gRPC would turn
	// an SSH host-key or login error into a plain "unavailable" text, and
	// those are the operator's to fix, not worth a retry.
	first, err := r.o.Dial(ctx, t)
	if err != nil {
		return nil, dialErr(t, err)
	}
	s := &ctrdSession{t: t, first: first}
	conn, err := grpc.NewClient("passthrough:///containerd",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			if c := s.takeFirst(); c != nil {
				return c, nil
			}
			return r.o.Dial(ctx, t)
		}),
		// containerd's gRPC server wants an :authority it can parse as a host.
		grpc.WithAuthority("localhost"))
	if err != nil {
		_ = first.Close()
		return nil, &UnreachableError{Master: t.Master, Endpoint: t.Endpoint, Runtime: RuntimeContainerd, Err: err}
	}
	s.conn, s.containers, s.tasks = conn, containersapi.NewContainersClient(conn), tasksapi.NewTasksClient(conn)
	return s, nil
}

// dialErr keeps SSH's typed errors (masterErr tells final from retryable)
// and makes anything else an unreachable runtime.
func dialErr(t Target, err error) error {
	var hk *sshdial.HostKeyError
	var ae *sshdial.AuthError
	var se *sshdial.SocketError
	var ue *sshdial.UnreachableError
	if errors.As(err, &hk) || errors.As(err, &ae) || errors.As(err, &se) || errors.As(err, &ue) {
		return err
	}
	return &UnreachableError{Master: t.Master, Endpoint: t.Endpoint, Runtime: RuntimeContainerd, Err: err}
}

func (s *ctrdSession) takeFirst() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.first
	s.first = nil
	return c
}

func (s *ctrdSession) close() {
	_ = s.conn.Close()
	if c := s.takeFirst(); c != nil {
		_ = c.Close()
	}
}

// ns puts the CRI namespace on every call.
func ns(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", criNamespace)
}

// wrap names the master; a lost connection is UnreachableError (worth
// retrying).
func (s *ctrdSession) wrap(err error, what string) error {
	if status.Code(err) == codes.Unavailable {
		return &UnreachableError{Master: s.t.Master, Endpoint: s.t.Endpoint, Runtime: RuntimeContainerd, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %s on containerd at %s: %w", masterName(s.t.Master), what, s.t.Endpoint, err)
}

// podPrefix is the static pod name (master set) or its prefix (any node).
func podPrefix(etcdCluster, master string) (string, bool) {
	if master == "" {
		return "etcd-manager-" + etcdCluster + "-", false
	}
	return "etcd-manager-" + etcdCluster + "-" + master, true
}

// etcdManagers lists every etcd-manager container of kube-system with its
// task state, running first, then newest first.
func (s *ctrdSession) etcdManagers(ctx context.Context) ([]Container, map[string]string, error) {
	resp, err := s.containers.List(ns(ctx), &containersapi.ListContainersRequest{Filters: []string{
		fmt.Sprintf(`labels."%s"==%s,labels."%s"==%s`, labelContainer, etcdManagerName, labelPodNS, staticPodNS),
	}})
	if err != nil {
		return nil, nil, s.wrap(err, "list containers")
	}
	var out []Container
	pods := map[string]string{} // container ID -> pod name
	for _, c := range resp.Containers {
		state, running := "no task", false
		tr, err := s.tasks.Get(ns(ctx), &tasksapi.GetRequest{ContainerID: c.ID})
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return nil, nil, s.wrap(err, "get task of "+shortID(c.ID))
		default:
			state = strings.ToLower(tr.Process.Status.String())
			running = tr.Process.Status == task.Status_RUNNING
		}
		created := c.CreatedAt.AsTime()
		pod := c.Labels[labelPodName]
		pods[c.ID] = pod
		// containerd keeps no start time: CreatedAt stands in, and the
		// kubelet's new container per attempt (a new ID) is the proof.
		out = append(out, Container{ID: c.ID, Name: pod + "/" + etcdManagerName + "@" + shortID(c.ID), State: state,
			Running: running, Created: created, StartedAt: created})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Running != out[j].Running {
			return out[i].Running
		}
		return out[i].Created.After(out[j].Created)
	})
	return out, pods, nil
}

// find lists the containers of one etcd cluster's pod on the target.
func (s *ctrdSession) find(ctx context.Context, etcdCluster string) ([]Container, []string, error) {
	all, pods, err := s.etcdManagers(ctx)
	if err != nil {
		return nil, nil, err
	}
	want, exact := podPrefix(etcdCluster, s.t.Master)
	var mine []Container
	var others []string
	for _, c := range all {
		p := pods[c.ID]
		if (exact && p == want) || (!exact && strings.HasPrefix(p, want)) {
			mine = append(mine, c)
		} else if !slices.Contains(others, p) {
			others = append(others, p)
		}
	}
	return mine, others, nil
}

func (s *ctrdSession) notFound(etcdCluster string, others []string) error {
	want, _ := podPrefix(etcdCluster, s.t.Master)
	return &NotFoundError{Master: s.t.Master, Endpoint: s.t.Endpoint, Runtime: RuntimeContainerd, Prefix: want, Others: others}
}

// Find returns the pod's containers, running first, then newest first.
func (r *containerdRestarter) Find(ctx context.Context, t Target, etcdCluster string) ([]Container, error) {
	s, err := r.open(ctx, t, etcdCluster)
	if err != nil {
		return nil, err
	}
	defer s.close()
	cs, others, err := s.find(ctx, etcdCluster)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, s.notFound(etcdCluster, others)
	}
	return cs, nil
}

// Restart is Replace against what runs now: containerd targets are newer
// than the clock-based path, so no history asks for it.
func (r *containerdRestarter) Restart(ctx context.Context, t Target, etcdCluster string, _ time.Time) (Restarted, error) {
	cs, err := r.Find(ctx, t, etcdCluster)
	if err != nil {
		return Restarted{}, err
	}
	return r.Replace(ctx, t, etcdCluster, cs)
}

// Replace kills the pod's running task unless a container the baseline
// did not have already runs, then waits for the kubelet's new container.
// A retry proves again: a replacement an earlier attempt caused is found
// and nothing is killed twice.
func (r *containerdRestarter) Replace(ctx context.Context, t Target, etcdCluster string, baseline []Container) (Restarted, error) {
	arrive, waitGate := gateOf(ctx)
	defer arrive()
	res := Restarted{Master: t.Master, EtcdCluster: etcdCluster, Before: baselineBefore(baseline)}
	s, err := r.open(ctx, t, etcdCluster)
	if err != nil {
		return res, err
	}
	defer s.close()
	cs, others, err := s.find(ctx, etcdCluster)
	if err != nil {
		return res, err
	}
	if len(cs) == 0 {
		return res, s.notFound(etcdCluster, others)
	}
	if running := runningOf(cs); len(running) == 1 {
		if proof, ok := Proven(running[0], baseline); ok {
			res.After, res.Action, res.Proof = running[0], ActionAlreadyRestarted, proof
			return res, nil
		}
	}
	if err := waitGate(); err != nil {
		return res, err
	}
	return r.awaitReplaced(ctx, s, etcdCluster, res, baseline, cs)
}

func runningOf(cs []Container) []Container {
	return slices.DeleteFunc(slices.Clone(cs), func(c Container) bool { return !c.Running })
}

// awaitReplaced kills whatever unproven task runs until a proven container
// runs alone, or the grace period ends.
func (r *containerdRestarter) awaitReplaced(ctx context.Context, s *ctrdSession, etcdCluster string, res Restarted, baseline, cs []Container) (Restarted, error) {
	wctx, cancel := context.WithTimeout(ctx, r.o.Grace)
	defer cancel()
	var (
		lastKill   time.Time
		lastKilled string
		lastErr    error
	)
	for {
		running := runningOf(cs)
		switch {
		case len(running) == 1:
			c := running[0]
			if proof, ok := Proven(c, baseline); ok {
				res.After, res.Proof, res.Action = c, proof, ActionAlreadyRestarted
				if res.Killed != "" {
					res.Action = ActionKilled
				}
				return res, nil
			}
			if c.ID != lastKilled || time.Since(lastKill) >= killResend {
				lastKill, lastKilled = time.Now(), c.ID
				_, err := s.tasks.Kill(ns(wctx), &tasksapi.KillRequest{ContainerID: c.ID, Signal: 9, All: true})
				switch {
				case err == nil, status.Code(err) == codes.NotFound, status.Code(err) == codes.FailedPrecondition:
					// Not found / not running: it ended by itself meanwhile.
					res.Killed = c.ID
				default:
					lastErr = s.wrap(err, "kill "+c.Name)
				}
			}
		case len(running) > 1:
			lastErr = fmt.Errorf("%d containers running (%s)", len(running), describeContainers(running))
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			pod, _ := podPrefix(etcdCluster, s.t.Master)
			msg := fmt.Sprintf("%s: the kubelet started no new %s container within %s after its task was killed (baseline: %s; now: %s); "+
				"kopsdr never starts CRI containers itself. On the master check: sudo systemctl status kubelet; sudo journalctl -u kubelet | grep %s; sudo crictl ps -a --name etcd-manager",
				masterName(s.t.Master), pod, r.o.Grace, describeContainers(baseline), describeContainers(cs), pod)
			if lastErr != nil {
				return res, fmt.Errorf("%s: %w", msg, lastErr)
			}
			return res, errors.New(msg)
		case <-time.After(r.o.Poll):
		}
		found, _, err := s.find(wctx, etcdCluster)
		if err != nil {
			lastErr = err // the connection may be re-dialled on the next look
			continue
		}
		cs = found
	}
}

// LogTail cannot read logs through containerd: the kubelet writes them to
// files on the master. It says where they are.
func (r *containerdRestarter) LogTail(ctx context.Context, t Target, etcdCluster string, lines int) (string, error) {
	pod, _ := podPrefix(etcdCluster, t.Master)
	return "", fmt.Errorf("%s: the kubelet keeps etcd-manager's log on the master, not in containerd: sudo crictl logs --tail %d $(sudo crictl ps -q --name etcd-manager --label io.kubernetes.pod.name=%s), or /var/log/pods/kube-system_%s_*/etcd-manager/",
		masterName(t.Master), max(lines, 1), pod, pod)
}
