package restart

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// CRINamespace is the containerd namespace in which the kubelet's
// containers live (the CRI plugin's), etcd-manager's among them.
const CRINamespace = "k8s.io"

// DialFunc opens a connection to t's containerd socket, t.Endpoint (the
// default socket when t gave none). The caller decides how: over SSH to
// the master, or on this host.
type DialFunc func(ctx context.Context, t Target) (net.Conn, error)

// NewContainerd returns a Restarter for masters whose kubelet runs its
// containers on containerd (kops with Kubernetes 1.24 and later). It talks
// to containerd's own gRPC API in namespace k8s.io, where the kubelet's CRI
// containers are, through a connection dial makes per call; a nil dial
// dials t.Endpoint's unix socket on this host.
//
// Unlike Docker, it never creates or starts a container: CRI containers
// belong to the kubelet, which replaces a container whose process died
// with a new one (a new ID). Replace kills and then waits for that.
// Options: WithTimeout (how long the kubelet gets to bring the
// replacement, default DefaultTimeout) and WithPoll; WithGrace does not
// apply.
func NewContainerd(dial DialFunc, opts ...Option) Restarter {
	if dial == nil {
		dial = dialLocal
	}
	return &containerdRestarter{waits: newWaits(opts), dial: dial}
}

type containerdRestarter struct {
	waits
	dial DialFunc
}

// DialContainerd is the worker's DialFunc: over SSH to the master's own
// socket (through the sudo relay unless the login is root) when t.SSH is
// set, else t's socket on this host.
func DialContainerd(ctx context.Context, t Target) (net.Conn, error) {
	if t.SSH == nil {
		return dialLocal(ctx, t)
	}
	path, err := containerdSocket(t.Endpoint)
	if err != nil {
		return nil, err
	}
	return sshdial.DialSocket(ctx, *t.SSH, path)
}

// dialLocal dials t's socket on this host.
func dialLocal(ctx context.Context, t Target) (net.Conn, error) {
	path, err := containerdSocket(t.Endpoint)
	if err != nil {
		return nil, err
	}
	return (&net.Dialer{}).DialContext(ctx, "unix", path)
}

// ctrdSession is one connection to one master's containerd.
type ctrdSession struct {
	t          Target // Endpoint set, to the default socket if it was empty
	mu         sync.Mutex
	first      net.Conn // dialled by open, handed to gRPC's first dial
	conn       *grpc.ClientConn
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
}

// open checks the names and the target and connects to t's containerd for
// etcdCluster's containers. It returns the pod name to match: exact, or a
// prefix when t.Master is "".
//
// The first connection is dialled here rather than by gRPC, which would
// turn an SSH host-key, login or socket error into an "unavailable" text:
// those are the operator's to fix, and must reach them typed and final.
// gRPC's later dials (after a dropped connection) dial again.
func (r *containerdRestarter) open(ctx context.Context, t Target, etcdCluster string) (*ctrdSession, string, error) {
	if err := checkNames(etcdCluster, t.Master); err != nil {
		return nil, "", err
	}
	if err := validateContainerd(t); err != nil {
		return nil, "", err
	}
	t.Endpoint = cmp.Or(t.Endpoint, DefaultContainerdSocket)
	first, err := r.dial(ctx, t)
	if err != nil {
		return nil, "", dialErr(t, err)
	}
	s := &ctrdSession{t: t, first: first}
	conn, err := grpc.NewClient("passthrough:///containerd",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			if c := s.takeFirst(); c != nil {
				return c, nil
			}
			return r.dial(ctx, t)
		}),
		// A dropped connection (an SSH forward cut) is dialled again soon,
		// not after gRPC's default back-off of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second,
		}, MinConnectTimeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		_ = first.Close()
		return nil, "", fmt.Errorf("%s: containerd at %s: %w", masterName(t.Master), t.Endpoint, err)
	}
	s.conn, s.containers, s.tasks = conn, containersapi.NewContainersClient(conn), tasksapi.NewTasksClient(conn)
	return s, podName(etcdCluster, t.Master), nil
}

// dialErr keeps SSH's typed errors (the activity tells final from
// retryable by them) and makes any other dial failure an unreachable
// containerd.
func dialErr(t Target, err error) error {
	var hk *sshdial.HostKeyError
	var ae *sshdial.AuthError
	var se *sshdial.SocketError
	var ue *sshdial.UnreachableError
	if errors.As(err, &hk) || errors.As(err, &ae) || errors.As(err, &se) || errors.As(err, &ue) {
		return err
	}
	if _, ok := inputerr.As(err); ok {
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
	s.conn.Close()
	if c := s.takeFirst(); c != nil {
		_ = c.Close()
	}
}

// ns puts the CRI namespace into ctx's gRPC metadata, where containerd
// reads it ("containerd-namespace").
func (s *ctrdSession) ns(ctx context.Context) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("containerd-namespace", CRINamespace))
}

// podName is the name of etcdCluster's etcd-manager static pod on master
// (the manifest's name plus "-" and the node name, as the kubelet names
// static pods), or with master "" the prefix of every node's.
func podName(etcdCluster, master string) string {
	if master == "" {
		return "etcd-manager-" + etcdCluster + "-"
	}
	return "etcd-manager-" + etcdCluster + "-" + master
}

// validateContainerd checks a containerd Target without contacting it.
func validateContainerd(t Target) error {
	if t.Runtime != "" && t.Runtime != RuntimeContainerd {
		return inputerr.New("runtime", t.Runtime, "the containerd restarter serves runtime "+RuntimeContainerd)
	}
	if t.TLSCA != "" || t.TLSCert != "" || t.TLSKey != "" {
		return inputerr.New("dockerTLSCA", t.TLSCA, "TLS settings are for Docker's tcp endpoint; containerd is reached through its unix socket (over SSH): drop them")
	}
	_, err := containerdSocket(t.Endpoint)
	return err
}

// containerdSocket is the socket path of a containerd endpoint:
// unix:///run/containerd/containerd.sock or a bare absolute path; ""
// means DefaultContainerdSocket.
func containerdSocket(endpoint string) (string, error) {
	endpoint = cmp.Or(endpoint, DefaultContainerdSocket)
	fix := "use " + DefaultContainerdSocket + " (the socket's path on the master)"
	if filepath.IsAbs(endpoint) {
		return endpoint, nil
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return "", inputerr.Wrap(err, "containerdEndpoint", endpoint, fix)
	case u.Scheme != "unix" || u.Host != "" || !filepath.IsAbs(u.Path):
		return "", inputerr.New("containerdEndpoint", endpoint, fix)
	}
	return u.Path, nil
}

// wrap names the master and endpoint in every containerd error, and marks
// an unanswered connection as *UnreachableError so callers can retry.
func (s *ctrdSession) wrap(err error, doing string) error {
	if status.Code(err) == codes.Unavailable {
		return &UnreachableError{Master: s.t.Master, Endpoint: s.t.Endpoint, Runtime: RuntimeContainerd, Err: err}
	}
	return fmt.Errorf("%s: containerd at %s: %s: %w", masterName(s.t.Master), s.t.Endpoint, doing, err)
}

// ErrLogsUnavailable is what LogTail returns under containerd: the
// kubelet's CRI plugin writes container logs to files on the master, and
// containerd's API does not serve them.
var ErrLogsUnavailable = errors.New("etcd-manager's log is not available through containerd's API")
