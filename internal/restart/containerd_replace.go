package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Replace kills the baseline's etcd-manager process on t (unless a process
// proven new already runs) and waits for the kubelet to replace it with a
// new container, which it proves new by its ID. It never creates or
// starts a container: if none is proven within the timeout, it fails
// saying what to check on the master.
func (r *containerdRestarter) Replace(ctx context.Context, t Target, etcdCluster string, baseline []Container) (Restarted, error) {
	// Whatever happens, this call arrives at the kill gate once, so that
	// the other calls never wait for it in vain.
	arrive, waitGate := gateOf(ctx)
	defer arrive()
	s, pod, err := r.open(ctx, t, etcdCluster)
	if err != nil {
		return Restarted{}, err
	}
	defer s.close()
	res := Restarted{Master: t.Master, EtcdCluster: etcdCluster, Before: baselineBefore(baseline)}

	cs, err := s.findSome(ctx, pod)
	if err != nil {
		return res, err
	}
	running := runningOf(cs)
	if len(running) > 1 {
		// One etcd-manager per cluster per master: more means the target
		// reaches several masters (Master "") or the kubelet is mid-change.
		// Killing them all could take down a quorum.
		return res, fmt.Errorf("%s: %d etcd-manager containers of %s* running in containerd at %s (%s); expected one: set the master's node name or retry",
			masterName(t.Master), len(running), pod, s.t.Endpoint, names(running))
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
	return r.awaitReplaced(ctx, s, pod, res, baseline, cs)
}

// awaitReplaced kills whatever unproven container runs, again if it still
// runs killResend after a kill (a lost request), and waits until a proven
// one runs alone. A proven container is never killed.
func (r *containerdRestarter) awaitReplaced(ctx context.Context, s *ctrdSession, pod string, res Restarted, baseline []Container, cs []ctrdFound) (Restarted, error) {
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
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
			if proof, ok := Proven(c.Container, baseline); ok {
				res.After, res.Proof, res.Action = c.Container, proof, ActionAlreadyRestarted
				if res.Killed != "" {
					res.Action = ActionKilled
				}
				return res, nil
			}
			if c.ID != lastKilled || time.Since(lastKill) >= killResend {
				lastKill, lastKilled = time.Now(), c.ID
				if err := s.kill(wctx, c.ID); err != nil {
					lastErr = s.wrap(err, "kill "+c.Name) // resent on a later look
				} else {
					res.Killed = c.ID
				}
			}
		case len(running) > 1:
			// The kubelet mid-change, or someone else started one: wait,
			// and fail at the timeout rather than guess which to keep.
			lastErr = fmt.Errorf("%d containers running (%s)", len(running), names(running))
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, r.notReplaced(s, pod, baseline, cs, lastErr)
		case <-time.After(r.poll):
		}
		found, _, err := s.find(wctx, pod)
		if err != nil {
			lastErr = err // keep trying: containerd or the connection may be briefly busy
			continue
		}
		cs = found
	}
}

// kill sends SIGKILL to every process of the container's task. A task
// that is gone or has exited meanwhile counts as killed: the next look
// decides.
func (s *ctrdSession) kill(ctx context.Context, id string) error {
	_, err := s.tasks.Kill(s.ns(ctx), &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true})
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.FailedPrecondition:
		return nil
	}
	return err
}

// notReplaced is the error when the kubelet brought no proven container:
// kopsdr cannot start one, so it says where to look on the master.
func (r *containerdRestarter) notReplaced(s *ctrdSession, pod string, baseline []Container, cs []ctrdFound, lastErr error) error {
	what := "pod " + pod
	if s.t.Master == "" {
		what = "pods " + pod + "*"
	}
	on := "the master"
	if s.t.Master != "" {
		on = s.t.Master
	}
	msg := fmt.Sprintf("%s: the kubelet brought no new etcd-manager container of %s within %s (containerd at %s; baseline: %s; now: %s). "+
		"kopsdr never starts a CRI container itself: the kubelet must. On %s check `systemctl status kubelet`, `journalctl -u kubelet --since -15min` "+
		"and `crictl ps -a --name etcd-manager` (a crash-loop back-off delays the kubelet's restarts, up to 5 minutes)",
		masterName(s.t.Master), what, r.timeout, s.t.Endpoint, describeCtrdBaseline(baseline), describeCtrd(cs), on)
	if lastErr != nil {
		return fmt.Errorf("%s: %w", msg, lastErr)
	}
	return errors.New(msg)
}

// Restart is not supported under containerd: it recognises a restarted
// process by its start time, which containerd's API does not report.
// kopsdr restarts containerd masters with Replace, against a baseline;
// Restart only serves restores recorded before baselines existed, which
// predate containerd support.
func (r *containerdRestarter) Restart(ctx context.Context, t Target, etcdCluster string, since time.Time) (Restarted, error) {
	if err := checkNames(etcdCluster, t.Master); err != nil {
		return Restarted{}, err
	}
	return Restarted{}, fmt.Errorf("%s: restarting etcd-manager-%s by time: %w under containerd, which reports no start times; Replace restarts it",
		masterName(t.Master), etcdCluster, errors.ErrUnsupported)
}

// LogTail cannot read the log: the kubelet's CRI plugin writes it to a
// file on the master, which containerd's API does not serve. It names the
// newest container and where its log is.
func (r *containerdRestarter) LogTail(ctx context.Context, t Target, etcdCluster string, lines int) (string, error) {
	if lines <= 0 {
		lines = DefaultLogLines
	}
	s, pod, err := r.open(ctx, t, etcdCluster)
	if err != nil {
		return "", err
	}
	defer s.close()
	cs, err := s.findSome(ctx, pod)
	if err != nil {
		return "", err
	}
	c := cs[0]
	where := c.logPath
	if where == "" {
		where = fmt.Sprintf("/var/log/pods/kube-system_%s_%s/etcd-manager/<attempt>.log", c.pod, c.uid)
	}
	return "", fmt.Errorf("%s: %w (the kubelet writes it to the master's disk): on the master run `crictl logs --tail %d %s` (container %s, %s) or read %s",
		masterName(t.Master), ErrLogsUnavailable, lines, shortID(c.ID), c.Name, c.State, where)
}

func describeCtrd(cs []ctrdFound) string {
	if len(cs) == 0 {
		return "none"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s %s created %s", shortID(c.ID), c.Name, c.State, c.Created.UTC().Format(time.RFC3339))
	}
	return strings.Join(out, "; ")
}

// describeCtrdBaseline is describeContainers without start times, which
// containerd does not report.
func describeCtrdBaseline(cs []Container) string {
	if len(cs) == 0 {
		return "none"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s %s created %s", shortID(c.ID), c.Name, c.State, c.Created.UTC().Format(time.RFC3339))
	}
	return strings.Join(out, "; ")
}
