package restart

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Defaults for NewDocker; see the options.
const (
	DefaultTimeout = 60 * time.Second
	DefaultGrace   = 10 * time.Second
	DefaultPoll    = 500 * time.Millisecond
	// DefaultLogLines is what LogTail returns when lines <= 0.
	DefaultLogLines = 100
	// maxLogBytes bounds LogTail's memory whatever the line lengths.
	maxLogBytes = 1 << 20
)

// Option changes how a restarter waits.
type Option func(*waits)

// waits are the restarters' waiting times, set by Options.
type waits struct {
	timeout, grace, poll time.Duration
}

func newWaits(opts []Option) waits {
	w := waits{timeout: DefaultTimeout, grace: DefaultGrace, poll: DefaultPoll}
	for _, o := range opts {
		o(&w)
	}
	return w
}

// WithTimeout bounds how long Restart and Replace wait, after the kill,
// for a matching container to run again (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(w *waits) { w.timeout = d } }

// WithGrace is how long Restart leaves the kubelet to replace a killed
// container before starting it itself (default DefaultGrace). The kubelet
// normally replaces it within a second or two; only its crash-loop back-off
// (10 s and up) takes longer. The containerd restarter never starts a
// container itself and ignores it.
func WithGrace(d time.Duration) Option { return func(w *waits) { w.grace = d } }

// WithPoll is how often Restart looks at the containers while it waits
// (default DefaultPoll).
func WithPoll(d time.Duration) Option { return func(w *waits) { w.poll = d } }

// NewDocker returns a Restarter that talks to each Target's Docker daemon
// through the Docker Engine API, negotiating the API version (kops masters
// run Docker 19.03/20.10). It opens a client per call, as calls are few and
// targets many.
func NewDocker(opts ...Option) Restarter {
	return &dockerRestarter{waits: newWaits(opts)}
}

type dockerRestarter struct {
	waits
}

// session is one client for one Target.
type session struct {
	cli *client.Client
	t   Target
}

func (r *dockerRestarter) connect(t Target) (*session, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	opts := []client.Opt{client.WithHost(t.Endpoint), client.WithAPIVersionNegotiation()}
	if t.TLSCA != "" {
		opts = append(opts, client.WithTLSClientConfig(t.TLSCA, t.TLSCert, t.TLSKey))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		// The files were readable (Validate), so they do not make a valid
		// TLS setup, e.g. a key that does not belong to the cert.
		return nil, inputerr.Wrap(err, "dockerTLSKey", t.TLSKey,
			"give the PEM client cert and key that belong together and the CA that signed the daemon's cert")
	}
	return &session{cli: cli, t: t}, nil
}

func (s *session) close() { s.cli.Close() }

// open checks the names and connects to t's daemon for one etcd cluster's
// containers, returning the session and their name prefix.
func (r *dockerRestarter) open(t Target, etcdCluster string) (*session, string, error) {
	if err := checkNames(etcdCluster, t.Master); err != nil {
		return nil, "", err
	}
	s, err := r.connect(t)
	if err != nil {
		return nil, "", err
	}
	return s, NamePrefix(etcdCluster, t.Master), nil
}

// Validate checks a Target without contacting it, reading the TLS files, so
// bad input is reported as such (no retry fixes it) and not as an
// unreachable daemon. Errors are *inputerr.Error on dockerEndpoint,
// dockerTLSCA, dockerTLSCert or dockerTLSKey; for a RuntimeContainerd
// target, on containerdEndpoint (or dockerTLSCA: TLS settings do not
// apply).
func (t Target) Validate() error {
	if t.RuntimeOf() == RuntimeContainerd {
		return validateContainerd(t)
	}
	fix := "use unix:///var/run/docker.sock or tcp://<master IP>:2376"
	u, err := url.Parse(t.Endpoint)
	switch {
	case t.Endpoint == "":
		return inputerr.New("dockerEndpoint", "", fix)
	case err != nil:
		return inputerr.Wrap(err, "dockerEndpoint", t.Endpoint, fix)
	case u.Scheme == "unix" && u.Path == "":
		return inputerr.New("dockerEndpoint", t.Endpoint, "a unix endpoint needs the socket path: "+fix)
	case u.Scheme == "tcp" && (u.Hostname() == "" || u.Port() == ""):
		return inputerr.New("dockerEndpoint", t.Endpoint, "a tcp endpoint needs host and port: "+fix)
	case u.Scheme != "unix" && u.Scheme != "tcp":
		return inputerr.New("dockerEndpoint", t.Endpoint, fix)
	}
	if t.TLSCA == "" && t.TLSCert == "" && t.TLSKey == "" {
		return nil
	}
	if u.Scheme != "tcp" {
		return inputerr.New("dockerEndpoint", t.Endpoint, "TLS settings need a tcp:// endpoint; drop them for a unix socket")
	}
	if t.TLSCA == "" {
		return inputerr.New("dockerTLSCA", "", "give the PEM CA cert that signed the daemon's cert (Docker's ca.pem)")
	}
	if (t.TLSCert == "") != (t.TLSKey == "") {
		return inputerr.New("dockerTLSCert", t.TLSCert, "give both the client cert and its key (Docker's cert.pem and key.pem), or neither")
	}
	for _, f := range []struct{ field, path string }{{"dockerTLSCA", t.TLSCA}, {"dockerTLSCert", t.TLSCert}, {"dockerTLSKey", t.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return inputerr.Wrap(err, f.field, f.path, "give the path of a readable PEM file on the worker host")
		}
	}
	return nil
}

// wrap names the master and endpoint in every daemon error, and marks
// connection failures as *UnreachableError so callers can retry them.
func (s *session) wrap(err error, doing string) error {
	if client.IsErrConnectionFailed(err) {
		return &UnreachableError{Master: s.t.Master, Endpoint: s.t.Endpoint, Runtime: RuntimeDocker, Err: err}
	}
	return fmt.Errorf("%s: Docker at %s: %s: %w", masterName(s.t.Master), s.t.Endpoint, doing, err)
}

// found is a Container plus what the restarter needs internally.
type found struct {
	Container
	tty bool
}

func (r *dockerRestarter) Find(ctx context.Context, t Target, etcdCluster string) ([]Container, error) {
	s, prefix, err := r.open(t, etcdCluster)
	if err != nil {
		return nil, err
	}
	defer s.close()
	fs, err := s.find(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Container, len(fs))
	for i, f := range fs {
		out[i] = f.Container
	}
	return out, nil
}

// find lists the containers whose name starts with prefix, running first,
// then newest first. Docker's name filter is an unanchored regexp, so it
// only narrows the listing; the prefix check here decides.
func (s *session) find(ctx context.Context, prefix string) ([]found, error) {
	list, err := s.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("name", regexp.QuoteMeta(prefix))),
	})
	if err != nil {
		return nil, s.wrap(err, "list containers")
	}
	var out []found
	for _, c := range list {
		name, ok := nameWithPrefix(c.Names, prefix)
		if !ok {
			continue
		}
		in, err := s.cli.ContainerInspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed since the listing (the kubelet collects dead ones)
		}
		if err != nil {
			return nil, s.wrap(err, "inspect container "+name)
		}
		out = append(out, toFound(name, in))
	}
	slices.SortFunc(out, func(a, b found) int {
		if a.Running != b.Running {
			if a.Running {
				return -1
			}
			return 1
		}
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out, nil
}

func nameWithPrefix(names []string, prefix string) (string, bool) {
	for _, n := range names {
		n = strings.TrimPrefix(n, "/")
		if strings.HasPrefix(n, prefix) {
			return n, true
		}
	}
	return "", false
}

func toFound(name string, in container.InspectResponse) found {
	f := found{Container: Container{ID: in.ID, Name: name}}
	if in.ContainerJSONBase != nil {
		f.RestartCount = in.RestartCount
		f.Created = parseTime(in.Created)
		if st := in.State; st != nil {
			f.State = string(st.Status)
			// Docker reports a container it is restarting as running, but
			// no process runs in it yet.
			f.Running = st.Running && !st.Restarting
			f.StartedAt = parseTime(st.StartedAt)
		}
	}
	if in.Config != nil {
		f.tty = in.Config.Tty
	}
	return f
}

// parseTime reads Docker's RFC 3339 times; Docker writes
// 0001-01-01T00:00:00Z for "never", which parses to the zero time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// notFound builds the *NotFoundError, listing every etcd-manager container
// the daemon has.
func (s *session) notFound(ctx context.Context, prefix string) error {
	nf := &NotFoundError{Master: s.t.Master, Endpoint: s.t.Endpoint, Prefix: prefix}
	all, err := s.find(ctx, "k8s_etcd-manager_")
	if err != nil {
		return errors.Join(nf, err)
	}
	for _, c := range all {
		nf.Others = append(nf.Others, c.Name+" ("+c.State+")")
	}
	return nf
}

func (r *dockerRestarter) Restart(ctx context.Context, t Target, etcdCluster string, since time.Time) (Restarted, error) {
	s, prefix, err := r.open(t, etcdCluster)
	if err != nil {
		return Restarted{}, err
	}
	defer s.close()

	offset, uncertainty, err := s.clockOffset(ctx)
	if err != nil {
		return Restarted{}, err
	}
	// Late by the whole uncertainty of the offset: a container only counts
	// as restarted when it surely started after `since`. Wrongly taking the
	// old etcd-manager for a restarted one would leave it never restarted;
	// a busy daemon answering slowly made that happen.
	sinceThere := since.Add(offset).Add(uncertainty)

	cs, err := s.find(ctx, prefix)
	if err != nil {
		return Restarted{}, err
	}
	if len(cs) == 0 {
		return Restarted{}, s.notFound(ctx, prefix)
	}
	running := runningOf(cs)
	if len(running) > 1 {
		// One etcd-manager per cluster per master: more means the target
		// reaches several masters (Master "") or the kubelet is mid-change.
		// Killing them all could take down a quorum; refuse and let the
		// caller retry or narrow the target.
		return Restarted{}, fmt.Errorf("%s: %d %s* containers running on Docker at %s (%s); expected one: set the master's node name or retry",
			masterName(t.Master), len(running), prefix, t.Endpoint, names(running))
	}
	if len(running) == 1 && running[0].StartedAt.After(sinceThere) {
		c := running[0].Container
		return Restarted{Before: c, After: c, Action: ActionAlreadyRestarted}, nil
	}

	// Any container running with a StartedAt later than every existing one
	// is a fresh process: a new one from the kubelet, or the old one
	// restarted. Comparing the master's times with each other needs no
	// clock correction.
	var boundary time.Time
	for _, c := range cs {
		boundary = maxTime(boundary, c.StartedAt)
	}
	before, killed := cs[0], false
	if len(running) == 1 {
		before = running[0]
		err := s.cli.ContainerKill(ctx, before.ID, "KILL")
		if err != nil && !cerrdefs.IsConflict(err) { // conflict: it exited by itself meanwhile
			return Restarted{}, s.wrap(err, "kill "+before.Name)
		}
		killed = true
	}
	return r.awaitRunning(ctx, s, prefix, before, boundary, killed)
}

func (r *dockerRestarter) Replace(ctx context.Context, t Target, etcdCluster string, baseline []Container) (Restarted, error) {
	// Whatever happens, this call arrives at the kill gate once, so that
	// the other calls never wait for it in vain.
	arrive, waitGate := gateOf(ctx)
	defer arrive()
	s, prefix, err := r.open(t, etcdCluster)
	if err != nil {
		return Restarted{}, err
	}
	defer s.close()
	res := Restarted{Master: t.Master, EtcdCluster: etcdCluster, Before: baselineBefore(baseline)}

	cs, err := s.find(ctx, prefix)
	if err != nil {
		return res, err
	}
	if len(cs) == 0 {
		return res, s.notFound(ctx, prefix)
	}
	running := runningOf(cs)
	if len(running) > 1 {
		// See Restart: never two etcd-managers of one cluster on a master,
		// and killing both could take down a quorum.
		return res, fmt.Errorf("%s: %d %s* containers running on Docker at %s (%s); expected one: set the master's node name or retry",
			masterName(t.Master), len(running), prefix, t.Endpoint, names(running))
	}
	if len(running) == 1 {
		if proof, ok := Proven(running[0].Container, baseline); ok {
			res.After, res.Action, res.Proof = running[0].Container, ActionAlreadyRestarted, proof
			return res, nil
		}
	}
	if err := waitGate(); err != nil {
		return res, err
	}
	return r.awaitReplaced(ctx, s, prefix, res, baseline, cs)
}

// killResend is how long Replace waits for a killed container to die
// before it sends the kill again: a kill whose request was lost (a daemon
// restarting, a connection cut) must not leave the old process running.
const killResend = 3 * time.Second

// awaitReplaced kills whatever unproven container runs, until a proven one
// runs alone. After the grace period with nothing running it starts the
// newest stopped container itself (a start proves it, as its StartedAt
// moves), unless the kubelet has already created a replacement that is
// still starting: two etcd-managers of one cluster on a master must never
// run at once.
func (r *dockerRestarter) awaitReplaced(ctx context.Context, s *session, prefix string, res Restarted, baseline []Container, cs []found) (Restarted, error) {
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var (
		lastKill    time.Time
		lastKilled  string
		startedByUs string
		lastErr     error
		// idleSince is when this call first saw no container running: the
		// grace period counts from then, not from the call's start, so that
		// a kill late in the wait (a resent one) still leaves the kubelet
		// its whole grace before kopsdr starts a container itself.
		idleSince time.Time
	)
	for {
		running := runningOf(cs)
		if len(running) > 0 {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = time.Now()
		}
		switch {
		case len(running) == 1:
			c := running[0]
			if proof, ok := Proven(c.Container, baseline); ok {
				res.After, res.Proof = c.Container, proof
				switch {
				case startedByUs == c.ID:
					res.Action = ActionStartedByKopsdr
				case res.Killed != "":
					res.Action = ActionKilled
				default:
					res.Action = ActionAlreadyRestarted
				}
				return res, nil
			}
			// Not proven: the old process still runs. Kill it, and again
			// if it is still running a while after a kill.
			if c.ID != lastKilled || time.Since(lastKill) >= killResend {
				lastKill, lastKilled = time.Now(), c.ID
				err := s.cli.ContainerKill(wctx, c.ID, "KILL")
				switch {
				case err == nil, cerrdefs.IsConflict(err), cerrdefs.IsNotFound(err):
					// Conflict: it stopped by itself meanwhile; not found:
					// removed meanwhile. Either way the next look decides.
					res.Killed = c.ID
				default:
					lastErr = s.wrap(err, "kill "+c.Name) // retried on the next look
				}
			}
		case len(running) > 1:
			// The kubelet mid-change, or someone else started one: wait,
			// and fail at the timeout rather than guess which to keep.
			lastErr = fmt.Errorf("%d containers running (%s)", len(running), names(running))
		case startedByUs == "" && time.Since(idleSince) >= r.grace:
			if c, ok := toStart(cs, baseline); ok {
				if err := s.cli.ContainerStart(wctx, c.ID, container.StartOptions{}); err != nil {
					lastErr = s.wrap(err, "start "+c.Name)
				} else {
					startedByUs = c.ID
				}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			msg := fmt.Sprintf("%s: no %s* container proven replaced on Docker at %s after %s (baseline: %s; now: %s)",
				masterName(s.t.Master), prefix, s.t.Endpoint, r.timeout, describeContainers(baseline), describe(cs))
			if lastErr != nil {
				return res, fmt.Errorf("%s: %w", msg, lastErr)
			}
			return res, errors.New(msg)
		case <-time.After(r.poll):
		}
		found, err := s.find(wctx, prefix)
		if err != nil {
			lastErr = err // keep trying: the daemon may be briefly busy
			continue
		}
		cs = found
	}
}

// toStart picks the container kopsdr may start itself when none runs: the
// newest one (cs is sorted newest first). It refuses while a container the
// baseline did not have waits in "created" or "restarting": the kubelet is
// about to run it.
func toStart(cs []found, baseline []Container) (found, bool) {
	if len(cs) == 0 {
		return found{}, false
	}
	for _, c := range cs {
		if c.Running {
			return found{}, false
		}
		inBaseline := slices.ContainsFunc(baseline, func(b Container) bool { return b.ID == c.ID })
		if !inBaseline && (c.State == "created" || c.State == "restarting") {
			return found{}, false
		}
	}
	return cs[0], true
}

// baselineBefore is the container the baseline saw running, or its newest.
func baselineBefore(baseline []Container) Container {
	for _, b := range baseline {
		if b.Running {
			return b
		}
	}
	if len(baseline) > 0 {
		return baseline[0]
	}
	return Container{}
}

func describeContainers(cs []Container) string {
	if len(cs) == 0 {
		return "none"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s %s started %s", shortID(c.ID), c.Name, c.State, c.StartedAt.Format(time.RFC3339Nano))
	}
	return strings.Join(out, "; ")
}

// awaitRunning waits for a container started after boundary to run. After
// the grace period it starts `before` itself, unless the kubelet has
// already created a replacement that is still starting: two etcd-managers
// of one cluster on a master must never run at once.
func (r *dockerRestarter) awaitRunning(ctx context.Context, s *session, prefix string, before found, boundary time.Time, killed bool) (Restarted, error) {
	begin := time.Now()
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	startedByUs := false
	var cs []found
	var lastErr error
	for {
		var err error
		cs, err = s.find(wctx, prefix)
		if err != nil {
			lastErr = err // keep trying: the daemon may be briefly busy
		} else if c, ok := newestRunningAfter(cs, boundary); ok {
			action := ActionAlreadyRestarted
			switch {
			case startedByUs && c.ID == before.ID:
				action = ActionStartedByKopsdr
			case killed:
				action = ActionKilled
			}
			return Restarted{Before: before.Container, After: c.Container, Action: action}, nil
		} else if !startedByUs && time.Since(begin) >= r.grace && mayStart(cs, before, boundary) {
			if err := s.cli.ContainerStart(wctx, before.ID, container.StartOptions{}); err != nil {
				lastErr = s.wrap(err, "start "+before.Name)
			} else {
				startedByUs = true
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return Restarted{}, ctx.Err()
			}
			msg := fmt.Sprintf("%s: no %s* container running on Docker at %s %s after restarting %s (containers: %s)",
				masterName(s.t.Master), prefix, s.t.Endpoint, r.timeout, before.Name, describe(cs))
			if lastErr != nil {
				return Restarted{}, fmt.Errorf("%s: %w", msg, lastErr)
			}
			return Restarted{}, errors.New(msg)
		case <-time.After(r.poll):
		}
	}
}

func newestRunningAfter(cs []found, boundary time.Time) (found, bool) {
	for _, c := range cs { // running first, newest first
		if c.Running && c.StartedAt.After(boundary) {
			return c, true
		}
	}
	return found{}, false
}

// mayStart reports whether kopsdr may start `before` itself: it has
// stopped, and nobody created a newer container that is about to run.
func mayStart(cs []found, before found, boundary time.Time) bool {
	for _, c := range cs {
		if c.ID == before.ID && c.Running {
			return false
		}
		if c.ID != before.ID && c.Created.After(boundary) {
			return false
		}
	}
	return true
}

// clockOffset is the master's clock minus the worker's, so that `since`
// (worker clock) can be compared with StartedAt (master clock), and how far
// off that estimate can be (half the round trip of the call that read it).
// A skew of a few seconds matters: a container started just BEFORE the
// restore command was written must not pass for one started after it.
func (s *session) clockOffset(ctx context.Context) (offset, uncertainty time.Duration, err error) {
	t0 := time.Now()
	info, err := s.cli.Info(ctx)
	if err != nil {
		return 0, 0, s.wrap(err, "read daemon info")
	}
	t1 := time.Now()
	uncertainty = t1.Sub(t0)/2 + time.Millisecond
	there, err := time.Parse(time.RFC3339Nano, info.SystemTime)
	if err != nil {
		return 0, uncertainty, nil // old daemon without SystemTime: assume synced clocks
	}
	here := t0.Add(t1.Sub(t0) / 2)
	return there.Sub(here), uncertainty, nil
}

func (r *dockerRestarter) LogTail(ctx context.Context, t Target, etcdCluster string, lines int) (string, error) {
	if lines <= 0 {
		lines = DefaultLogLines
	}
	s, prefix, err := r.open(t, etcdCluster)
	if err != nil {
		return "", err
	}
	defer s.close()
	cs, err := s.find(ctx, prefix)
	if err != nil {
		return "", err
	}
	if len(cs) == 0 {
		return "", s.notFound(ctx, prefix)
	}
	c := cs[0]
	rc, err := s.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "", s.wrap(err, "read logs of "+c.Name)
	}
	defer rc.Close()
	w := &tailBuffer{max: maxLogBytes}
	if c.tty {
		_, err = io.Copy(w, rc) // a TTY's output is one raw stream
	} else {
		_, err = stdcopy.StdCopy(w, w, rc) // same writer keeps the order
	}
	if err != nil {
		return "", s.wrap(err, "read logs of "+c.Name)
	}
	return w.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
	}
	if over := b.buf.Len() + len(p) - b.max; over > 0 {
		b.buf.Next(over)
	}
	b.buf.Write(p)
	return n, nil
}

func (b *tailBuffer) String() string { return b.buf.String() }

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// listed is a container as a runtime's listing found it: Container and
// what that runtime adds.
type listed interface{ base() Container }

func (c Container) base() Container { return c }

// names lists the containers' names.
func names[T listed](cs []T) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.base().Name
	}
	return strings.Join(out, ", ")
}

// runningOf keeps the running containers.
func runningOf[T listed](cs []T) []T {
	return slices.DeleteFunc(slices.Clone(cs), func(c T) bool { return !c.base().Running })
}

func describe(cs []found) string {
	if len(cs) == 0 {
		return "none"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s started %s", c.Name, c.State, c.StartedAt.Format(time.RFC3339))
	}
	return strings.Join(out, "; ")
}
