package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kopsdr/kopsdr/workflows/api"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/leases"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// Restore holds the activities of the etcd-manager restore. Restarter is the
// seam to the masters' runtimes (Docker, containerd over SSH, EC2 reboot).
type Restore struct {
	Restarter restart.Restarter
}

// Error types of the restore that workflows recognise.
const (
	ErrTypePreflight      = api.ErrTypePreflight
	ErrTypeRestoreTimeout = api.ErrTypeRestoreTimeout
	ErrTypeMasterDown     = api.ErrTypeMasterUnreachable
)

// LatestBefore is the backup selector prefix for "the newest backup at or
// before a time": "latest-before:2026-11-20T10:00:00Z".
const LatestBefore = "latest-before:"

// PreflightInput is everything pre-flight checks, per etcd cluster.
type PreflightInput struct {
	Clusters []PreflightCluster `json:"clusters"`
	Masters  []restart.Target   `json:"masters"`
}

// PreflightCluster is one etcd cluster (main or events) to restore.
type PreflightCluster struct {
	EtcdCluster string          `json:"etcdCluster"`
	Field       string          `json:"field"` // where its backup selector is in the input, for messages
	Store       string          `json:"store"`
	Backup      string          `json:"backup"` // latest | NAME | latest-before:RFC3339
	Etcd        etcdconn.Config `json:"etcd"`
}

// PreflightResult is what the plan is built from.
type PreflightResult struct {
	Clusters []ClusterFacts `json:"clusters"`
	Masters  []MasterFacts  `json:"masters"`
}

// ClusterFacts describe the chosen backup and the cluster as it is now.
type ClusterFacts struct {
	EtcdCluster    string                  `json:"etcdCluster"`
	Store          string                  `json:"store"`
	Backup         string                  `json:"backup"`
	BackupTime     time.Time               `json:"backupTime"`
	Bytes          int64                   `json:"bytes"`
	Revision       int64                   `json:"revision,omitempty"` // from kopsdr.json when kopsdr took it
	EtcdVersion    string                  `json:"etcdVersion"`
	ClusterSpec    etcdmanager.ClusterSpec `json:"clusterSpec"`
	EtcdAnswers    bool                    `json:"etcdAnswers"`
	ClusterID      uint64                  `json:"clusterId,omitempty"` // now, to see it change
	CurrentMembers int                     `json:"currentMembers,omitempty"`
}

// MasterFacts are the etcd-manager containers found on one master (for a
// master restarted by reboot, its instance).
type MasterFacts struct {
	Master     string              `json:"master"`
	Runtime    string              `json:"runtime,omitempty"` // "" is docker
	Endpoint   string              `json:"endpoint"`
	SSH        string              `json:"ssh,omitempty"` // user@host:port
	InstanceID string              `json:"instanceId,omitempty"`
	Containers map[string][]string `json:"containers"` // etcd cluster -> container names
}

func masterFacts(t restart.Target) MasterFacts {
	mf := MasterFacts{Master: t.Master, Runtime: t.Runtime, Endpoint: t.Endpoint, InstanceID: t.InstanceID, Containers: map[string][]string{}}
	if t.SSH != nil {
		mf.SSH = t.SSH.User + "@" + t.SSH.Address
	}
	return mf
}

// PreflightProgress is Preflight's heartbeat detail: what it checks, and
// while it reads a backup, the bytes read so far.
type PreflightProgress struct {
	Stage string `json:"stage"`
	Bytes int64  `json:"bytes,omitempty"`
}

// preflightBeat is how often Preflight heartbeats (a variable for tests).
var preflightBeat = 5 * time.Second

// Preflight checks everything the restore needs and changes nothing. Every
// failure names what is wrong; bad input and a bad backup are final.
//
// It heartbeats for its whole life, not only while it reads a backup: an
// etcd that does not answer (5 s per cluster) and the masters' runtimes,
// asked one after another, could otherwise outlast the heartbeat timeout
// after the last read, and a good pre-flight would be retried forever.
func (a *Restore) Preflight(ctx context.Context, in PreflightInput) (PreflightResult, error) {
	prog := newProgress(PreflightProgress{Stage: "start"})
	stop := heartbeatProgress(ctx, preflightBeat, prog)
	defer stop()
	var res PreflightResult
	for _, c := range in.Clusters {
		facts, err := a.preflightCluster(ctx, c, prog)
		if err != nil {
			return res, err
		}
		res.Clusters = append(res.Clusters, facts)
	}
	for _, t := range in.Masters {
		mf := masterFacts(t)
		for _, c := range in.Clusters {
			prog.set(PreflightProgress{Stage: "find etcd-manager-" + c.EtcdCluster + " on master " + t.Name()})
			found, err := a.Restarter.Find(ctx, t, c.EtcdCluster)
			if err != nil {
				return res, masterErr(t, err)
			}
			for _, f := range found {
				if f.Running {
					mf.Containers[c.EtcdCluster] = append(mf.Containers[c.EtcdCluster], f.Name)
				}
			}
			if len(mf.Containers[c.EtcdCluster]) == 0 {
				return res, notRunning(t, c.EtcdCluster)
			}
		}
		res.Masters = append(res.Masters, mf)
	}
	return res, nil
}

func (a *Restore) preflightCluster(ctx context.Context, c PreflightCluster, prog *progress) (ClusterFacts, error) {
	facts := ClusterFacts{EtcdCluster: c.EtcdCluster, Store: c.Store}
	prog.set(PreflightProgress{Stage: "choose the " + c.EtcdCluster + " backup in " + c.Store})
	store, err := openStore(ctx, c.Store)
	if err != nil {
		return facts, err
	}
	names, err := etcdmanager.ListBackups(ctx, store)
	if err != nil {
		return facts, storeErr(c.Store, err)
	}
	chosen, err := chooseBackup(names, c.Backup, c.Field)
	if err != nil {
		return facts, nonRetryable(err)
	}
	facts.Backup = chosen
	info, err := etcdmanager.ReadBackupInfo(ctx, store, chosen)
	if err != nil {
		return facts, preflightFail(fmt.Sprintf("backup %s in %s has an unreadable %s: %v", chosen, c.Store, etcdmanager.MetaFile, err),
			"choose another backup; etcd-manager would refuse this one")
	}
	facts.EtcdVersion, facts.BackupTime = info.EtcdVersion, time.Unix(info.Timestamp, 0).UTC()

	// The data must decompress and carry a valid sha256 trailer: that is
	// what etcd-manager's restore checks, after it has already stopped etcd.
	// It is read once, streaming. A backup kopsdr took was decompressed and
	// its trailer checked before kopsdr.json was written (FinalizeBackup), so
	// for it the sha256 of the stored bytes, equal to the recorded one, proves
	// the same at the speed of a plain read; any other backup is
	// decompressed and checked here.
	stage := "verify " + c.EtcdCluster + " backup " + chosen
	prog.set(PreflightProgress{Stage: stage})
	recorded, factsErr := readFacts(ctx, store, chosen)
	verified := factsErr == nil && recorded.GzipSHA256 != "" && recorded.GzipBytes > 0
	rc, err := store.Get(ctx, chosen+"/"+etcdmanager.DataFile)
	if err != nil {
		return facts, preflightFail(fmt.Sprintf("backup %s in %s has no readable %s: %v", chosen, c.Store, etcdmanager.DataFile, err),
			"choose another backup")
	}
	r := &countingProgress{r: rc, report: func(n int64) { prog.set(PreflightProgress{Stage: stage, Bytes: n}) }}
	if verified {
		n, sum, err := sha256Stream(r)
		rc.Close()
		if err != nil {
			return facts, storeErr(c.Store, err)
		}
		if sum != recorded.GzipSHA256 || n != recorded.GzipBytes {
			return facts, preflightFail(fmt.Sprintf("backup %s in %s does not match the checksums kopsdr recorded when it took it (%s): sha256 %s, %d bytes; recorded %s, %d bytes",
				chosen, c.Store, etcdmanager.KopsdrFile, sum, n, recorded.GzipSHA256, recorded.GzipBytes), "choose another backup")
		}
		facts.Bytes, facts.Revision = n, recorded.Revision
	} else {
		v, err := snapshot.VerifyGzip(r)
		rc.Close()
		if err != nil {
			return facts, preflightFail(fmt.Sprintf("backup %s in %s is corrupt: %v", chosen, c.Store, err), "choose another backup")
		}
		facts.Bytes = v.GzipBytes
	}

	prog.set(PreflightProgress{Stage: "check " + c.Store + " and etcd " + c.EtcdCluster})
	spec, err := etcdmanager.ReadClusterSpec(ctx, store)
	if errors.Is(err, etcdmanager.ErrNoClusterSpec) {
		return facts, preflightFail(fmt.Sprintf("%s has no control/etcd-cluster-spec: etcd-manager refuses to restore without it", c.Store),
			"check the store is the cluster's backup store (kops writes the spec when it creates the cluster)")
	}
	if err != nil {
		return facts, storeErr(c.Store, err)
	}
	facts.ClusterSpec = spec

	cmds, err := etcdmanager.ListCommands(ctx, store)
	if err != nil {
		return facts, storeErr(c.Store, err)
	}
	if len(cmds) > 0 {
		return facts, preflightFail(fmt.Sprintf("%s already has a pending command (control/%s)", c.Store, cmds[0].Name),
			"let it finish, or withdraw it before starting another restore: kopsdr restore withdraw if kopsdr wrote it, else "+etcdmanager.DeleteCommandHint(c.Store, cmds[0]))
	}

	// Record the cluster as it is, to recognise the new one later. etcd may
	// well be down: that is often why we restore.
	if cli, err := etcdconn.New(ctx, c.Etcd); err == nil {
		defer cli.Close()
		if ml, err := cli.MemberList(ctx); err == nil {
			facts.EtcdAnswers, facts.ClusterID, facts.CurrentMembers = true, ml.Header.GetClusterId(), len(ml.Members)
		}
	} else if _, bad := inputerr.As(err); bad {
		return facts, nonRetryable(err)
	}
	return facts, nil
}

// chooseBackup resolves latest, a name or latest-before:<RFC3339>.
func chooseBackup(names []string, sel, field string) (string, error) {
	if len(names) == 0 {
		return "", inputerr.New(field, sel, "the store has no backups: check the state store and cluster name (kopsdr list-backups)")
	}
	switch {
	case sel == "" || sel == "latest":
		return names[len(names)-1], nil
	case strings.HasPrefix(sel, LatestBefore):
		at, err := time.Parse(time.RFC3339, strings.TrimPrefix(sel, LatestBefore))
		if err != nil {
			return "", inputerr.New(field, sel, "write latest-before:<RFC 3339 time>, e.g. latest-before:2026-11-20T10:00:00Z")
		}
		for i := len(names) - 1; i >= 0; i-- {
			if t, _, ok := etcdmanager.ParseBackupName(names[i]); ok && !t.After(at) {
				return names[i], nil
			}
		}
		return "", inputerr.New(field, sel, fmt.Sprintf("no backup is that old; the oldest is %s", names[0]))
	}
	i := sort.SearchStrings(names, sel)
	if i < len(names) && names[i] == sel {
		return sel, nil
	}
	return "", inputerr.New(field, sel, fmt.Sprintf("no such backup; the newest are %s (kopsdr list-backups)", strings.Join(names[max(0, len(names)-3):], ", ")))
}

// sha256Stream reads r to its end, returning its length and hex sha256.
// r is read on the caller's goroutine (its progress callbacks need no
// locking) and hashed on another, so reading the next buffer overlaps
// hashing this one: the check takes about as long as the read alone.
func sha256Stream(r io.Reader) (int64, string, error) {
	const bufs, size = 4, 256 << 10
	free, full := make(chan []byte, bufs), make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, size)
	}
	h := sha256.New()
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range full {
			h.Write(b)
			free <- b[:size]
		}
	}()
	var n int64
	var err error
	for err == nil {
		b := <-free
		var k int
		k, err = io.ReadFull(r, b)
		n += int64(k)
		if k > 0 {
			full <- b[:k]
		} else {
			free <- b
		}
	}
	close(full)
	<-hashed
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func readFacts(ctx context.Context, store backupstore.Store, name string) (Facts, error) {
	var f Facts
	rc, err := store.Get(ctx, name+"/"+etcdmanager.KopsdrFile)
	if err != nil {
		return f, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

// runtimeAt names what kopsdr talks to on a master.
func runtimeAt(t restart.Target) string {
	switch t.RuntimeOf() {
	case restart.RuntimeContainerd:
		if t.SSH != nil {
			return fmt.Sprintf("containerd at %s (over ssh %s)", t.Endpoint, masterFacts(t).SSH)
		}
		return "containerd at " + t.Endpoint
	case restart.RuntimeReboot:
		return "EC2 in " + t.Region
	}
	return "Docker at " + t.Endpoint
}

// notRunning says that a master runs no etcd-manager (or, for a reboot,
// that its instance is not running), and what to check.
func notRunning(t restart.Target, ec string) error {
	switch t.RuntimeOf() {
	case restart.RuntimeReboot:
		return preflightFail(fmt.Sprintf("master %s: instance %s in %s is not running", t.Name(), t.InstanceID, t.Region),
			"start it (aws ec2 start-instances), or restore once every master runs")
	case restart.RuntimeContainerd:
		return preflightFail(fmt.Sprintf("master %s (%s) runs no etcd-manager-%s container in containerd", t.Name(), masterFacts(t).SSH, ec),
			"check that the ssh address reaches that master, and on it: crictl ps -a --name etcd-manager")
	}
	return preflightFail(fmt.Sprintf("master %s (%s) runs no etcd-manager-%s container", t.Name(), t.Endpoint, ec),
		"check the Docker endpoint points at that master and that etcd-manager runs there")
}

func preflightFail(msg, fix string) error {
	return temporal.NewNonRetryableApplicationError(msg+" (fix: "+fix+")", ErrTypePreflight, nil)
}

// masterErr keeps an unreachable daemon retryable (it may be rebooting)
// and names the master; bad input is final.
func masterErr(t restart.Target, err error) error {
	if _, ok := inputerr.As(err); ok {
		return nonRetryable(err)
	}
	var nf *restart.NotFoundError
	if errors.As(err, &nf) {
		fix := "check the master's Docker endpoint and node name"
		switch t.RuntimeOf() {
		case restart.RuntimeContainerd:
			fix = "check the master's ssh address and node name; on the master: crictl ps -a --name etcd-manager"
		case restart.RuntimeReboot:
			fix = "check the master's instanceId and region"
		}
		return preflightFail(err.Error(), fix)
	}
	var (
		hk   *sshdial.HostKeyError
		ae   *sshdial.AuthError
		se   *sshdial.SocketError
		sshu *sshdial.UnreachableError
	)
	switch {
	case errors.As(err, &hk), errors.As(err, &ae), errors.As(err, &se):
		// No retry brings a host key, a login or a socket: the operator must act.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("master %s: %v", t.Name(), err), ErrTypePreflight, err)
	case errors.As(err, &sshu):
		return temporal.NewApplicationErrorWithCause(fmt.Sprintf("master %s: %v", t.Name(), err), ErrTypeMasterDown, err)
	}
	var ue *restart.UnreachableError
	if errors.As(err, &ue) {
		return temporal.NewApplicationErrorWithCause(fmt.Sprintf("master %s: %s does not answer: %v", t.Name(), runtimeAt(t), err), ErrTypeMasterDown, err)
	}
	return fmt.Errorf("master %s: %w", t.Name(), err)
}

// CommandInput asks for one restore command.
type CommandInput struct {
	Store  string                  `json:"store"`
	Backup string                  `json:"backup"`
	Spec   etcdmanager.ClusterSpec `json:"spec"`
	At     time.Time               `json:"at"` // workflow time: names the command folder
}

// CommandResult names the command folder and whether it was there already.
type CommandResult struct {
	Command        string `json:"command"`
	AlreadyWritten bool   `json:"alreadyWritten"`
}

// WriteRestoreCommand writes control/<at>-000000/_command.json as
// etcd-manager-ctl restore-backup does. On a retry, the command this workflow
// wrote (same folder, same backup) is found and not written again.
func (a *Restore) WriteRestoreCommand(ctx context.Context, in CommandInput) (CommandResult, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return CommandResult{}, err
	}
	folder := strings.TrimPrefix(etcdmanager.CommandFolder(in.At), etcdmanager.ControlDir+"/")
	cmds, err := etcdmanager.ListCommands(ctx, store)
	if err != nil {
		return CommandResult{}, storeErr(in.Store, err)
	}
	for _, c := range cmds {
		if c.Name == folder && c.RestoreBackup != nil && c.RestoreBackup.Backup == in.Backup {
			if err := ensureMarked(ctx, store, c); err != nil {
				return CommandResult{}, storeErr(in.Store, err)
			}
			return CommandResult{Command: c.Name, AlreadyWritten: true}, nil
		}
		return CommandResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("another command is pending in %s (control/%s); refusing to queue a second one", in.Store, c.Name), ErrTypePreflight, nil)
	}
	c, err := etcdmanager.WriteMarkedRestoreCommand(ctx, store, in.At, in.Spec, in.Backup, commandMarker(ctx))
	if err != nil {
		return CommandResult{}, storeErr(in.Store, err)
	}
	return CommandResult{Command: c.Name}, nil
}

// BaselineInput names the masters and etcd clusters whose etcd-manager
// containers the baseline records.
type BaselineInput struct {
	Targets      []restart.Target `json:"targets"`
	EtcdClusters []string         `json:"etcdClusters"`
}

// Baseline is the etcd-manager containers of one etcd cluster on one master
// as that master reported them after the restore command was written: IDs,
// states and start times on the master's own clock.
type Baseline struct {
	Master      string              `json:"master"` // Target.Name()
	Endpoint    string              `json:"endpoint"`
	EtcdCluster string              `json:"etcdCluster"`
	Containers  []restart.Container `json:"containers"`
}

// BaselineResult is every master's and etcd cluster's baseline.
type BaselineResult struct {
	Baselines []Baseline `json:"baselines"`
}

// RecordBaseline lists, read-only, the etcd-manager containers of every
// master and etcd cluster. The workflow runs it after writing the restore
// commands and before the restart: its result lands in history, so every
// attempt of the restart proves each replacement against the same
// baseline, comparing only times the same master reported, whatever
// earlier attempts did and whatever the clocks say.
func (a *Restore) RecordBaseline(ctx context.Context, in BaselineInput) (BaselineResult, error) {
	var res BaselineResult
	for _, t := range in.Targets {
		for _, ec := range in.EtcdClusters {
			cs, err := a.Restarter.Find(ctx, t, ec)
			if err != nil {
				return res, masterErr(t, err)
			}
			if cs == nil {
				cs = []restart.Container{}
			}
			res.Baselines = append(res.Baselines, Baseline{Master: t.Name(), Endpoint: t.Endpoint, EtcdCluster: ec, Containers: cs})
		}
	}
	return res, nil
}

// baselineFor finds the baseline of t and etcd cluster ec.
func baselineFor(bs []Baseline, t restart.Target, ec string) (Baseline, bool) {
	for _, b := range bs {
		if b.Master == t.Name() && b.Endpoint == t.Endpoint && b.EtcdCluster == ec {
			return b, true
		}
	}
	return Baseline{}, false
}

// RestartInput restarts the etcd-manager containers of the given etcd
// clusters on every master.
type RestartInput struct {
	Targets      []restart.Target `json:"targets"`
	EtcdClusters []string         `json:"etcdClusters"`
	// Since is what restores whose history has no baseline go by: a
	// container started after it (corrected for the master's clock
	// offset) counts as restarted.
	Since time.Time `json:"since"`
	// Baselines (from RecordBaseline) make every container prove its
	// replacement against what ran after the command was written.
	Baselines []Baseline `json:"baselines,omitempty"`
}

// RestartResult says what happened on each master: per master and etcd
// cluster, the container before, the one after, what was done and the
// proof that After is a new process.
type RestartResult struct {
	Restarted []restart.Restarted `json:"restarted"`
	Failed    map[string]string   `json:"failed,omitempty"` // master -> error
}

// RestartEtcdManagers restarts every etcd-manager container of every master
// at once, in one activity: etcd-manager's leader restores with whichever
// peers restarted with it, and a peer restarted later is not re-added, so
// the restarts must not be spread over several retries. Each container is
// killed (the kubelet starts a new one, or kopsdr starts it) and proven
// replaced against the baseline. Every attempt proves every container
// again: a retry after a crash finds the replacements earlier attempts
// made and kills nothing again, and kills whatever an earlier attempt
// missed or only believed it killed. A master whose runtime does not answer
// fails the attempt, naming it; Temporal retries, then reports it.
func (a *Restore) RestartEtcdManagers(ctx context.Context, in RestartInput) (RestartResult, error) {
	stop := heartbeatEvery(ctx, 2*time.Second, func() any { return "restarting etcd-manager on every master" })
	defer stop()
	ctx = restart.WithOperation(ctx, operation(ctx))
	type outcome struct {
		master string
		r      restart.Restarted
		err    error
	}
	out := make(chan outcome)
	n := 0
	if len(in.Baselines) > 0 {
		// Every Replace lists and inspects first (the slow part under
		// load), then all kill together: a worker dying mid-way must not
		// spread the kills over two attempts.
		ctx = restart.WithKillGate(ctx, restart.NewKillGate(len(in.Targets)*len(in.EtcdClusters)))
	}
	for _, t := range in.Targets {
		for _, ec := range in.EtcdClusters {
			var (
				b  Baseline
				ok = true
			)
			if len(in.Baselines) > 0 {
				b, ok = baselineFor(in.Baselines, t, ec)
			}
			n++
			go func() {
				var r restart.Restarted
				var err error
				switch {
				case !ok:
					err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("no baseline for etcd-manager-%s on master %s", ec, t.Name()), ErrTypePreflight, nil)
				case len(in.Baselines) > 0:
					r, err = a.Restarter.Replace(ctx, t, ec, b.Containers)
				default: // a history from before the baseline
					r, err = a.Restarter.Restart(ctx, t, ec, in.Since)
					r.Master, r.EtcdCluster = t.Master, ec
				}
				if err != nil {
					err = masterErr(t, err)
				}
				out <- outcome{t.Name(), r, err}
			}()
		}
	}
	res := RestartResult{Failed: map[string]string{}}
	var errs []string
	for range n {
		o := <-out
		if o.err != nil {
			res.Failed[o.master] = o.err.Error()
			errs = append(errs, o.err.Error())
			continue
		}
		res.Restarted = append(res.Restarted, o.r)
	}
	sort.Slice(res.Restarted, func(i, j int) bool { return res.Restarted[i].After.Name < res.Restarted[j].After.Name })
	if len(errs) > 0 {
		sort.Strings(errs)
		return res, temporal.NewApplicationError("etcd-manager restart failed: "+strings.Join(errs, "; "), ErrTypeMasterDown, res)
	}
	return res, nil
}

// WaitInput says what a finished restore looks like.
type WaitInput struct {
	EtcdCluster  string           `json:"etcdCluster"`
	Store        string           `json:"store"`
	Command      string           `json:"command"`
	Etcd         etcdconn.Config  `json:"etcd"`
	MemberCount  int              `json:"memberCount"`
	OldClusterID uint64           `json:"oldClusterId,omitempty"`
	Masters      []restart.Target `json:"masters"` // for log tails on timeout
	Timeout      time.Duration    `json:"timeout"`
	// EndpointMasters maps a client endpoint to the master it runs on, so
	// a member left behind can be restarted again and named. An endpoint
	// without a master is still detected, only not repaired.
	EndpointMasters map[string]restart.Target `json:"endpointMasters,omitempty"`
}

// WaitResult describes the restored cluster.
type WaitResult struct {
	ClusterID uint64 `json:"clusterId"`
	Members   int    `json:"members"`
	Revision  int64  `json:"revision"`
	Keys      int64  `json:"keys"`
	// Repaired lists the members that had stayed behind and came back
	// after kopsdr restarted their etcd-manager once more.
	Repaired []Repair `json:"repaired,omitempty"`
}

// Repair is one restart of a member left behind by the restore.
type Repair struct {
	Endpoint string            `json:"endpoint"`
	Master   string            `json:"master"`
	Found    string            `json:"found"` // what the endpoint served
	Restart  restart.Restarted `json:"restart"`
}

// ErrTypeMemberLeftBehind: the restore formed the new cluster but a member
// still serves the old one (or never joined) after a repair was tried.
const ErrTypeMemberLeftBehind = api.ErrTypeMemberLeftBehind

// staleGrace is how long a member may answer for another cluster than the
// restored one, once that one serves, before kopsdr restarts its
// etcd-manager again: the peers of a restore join the new cluster within
// seconds of each other. A member that does not answer at all gets half
// the restore timeout (at least staleGrace): it may be the leader still in
// quarantine taking the post-restore backup, which takes as long as the
// data is large, and restarting it then would break the restore.
const staleGrace = 20 * time.Second

// repairAfter is how long e may stay outside the new cluster before the
// one repair.
func repairAfter(e etcdconn.EndpointState, timeout time.Duration) time.Duration {
	if e.Answers() {
		return staleGrace
	}
	return max(staleGrace, timeout/2)
}

// waitProgress is the heartbeat of WaitRestored: a retried attempt reads
// it back so that the one repair per endpoint is never repeated.
type waitProgress struct {
	State    string   `json:"state"`
	Repaired []Repair `json:"repaired,omitempty"`
}

// WaitRestored polls until the command is consumed AND etcd serves a new
// cluster (a changed cluster id when the old one was known) whose every
// endpoint answers for it with every member listed. "etcd answers" alone
// proves nothing: the old data is served again for half a minute before
// etcd-manager picks the command up, and a member whose etcd-manager was
// not restarted keeps serving the old cluster beside the new one. Such a
// member is restarted once more; if it still is not a member at the
// timeout, the error names it and says how to fix it. On timeout the error
// carries each etcd-manager container's log tail.
func (a *Restore) WaitRestored(ctx context.Context, in WaitInput) (WaitResult, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return WaitResult{}, err
	}
	var prog waitProgress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &prog)
	}
	deadline := time.Now().Add(in.Timeout)
	prog.State = "waiting for etcd-manager to pick the command up"
	behindSince := map[string]time.Time{} // endpoint -> first seen outside the new cluster
	var last check
	for {
		activity.RecordHeartbeat(ctx, prog)
		last = a.checkRestored(ctx, store, in)
		prog.State = last.state
		if last.done {
			last.res.Repaired = prog.Repaired
			return last.res, nil
		}
		now := time.Now()
		for ep := range behindSince {
			if !slices.ContainsFunc(last.behind, func(e etcdconn.EndpointState) bool { return e.Endpoint == ep }) {
				delete(behindSince, ep)
			}
		}
		for _, e := range last.behind {
			if _, ok := behindSince[e.Endpoint]; !ok {
				behindSince[e.Endpoint] = now
			}
			if now.Sub(behindSince[e.Endpoint]) < repairAfter(e, in.Timeout) ||
				slices.ContainsFunc(prog.Repaired, func(r Repair) bool { return r.Endpoint == e.Endpoint }) {
				continue // one repair per member
			}
			t, ok := in.EndpointMasters[e.Endpoint]
			if !ok {
				continue
			}
			rep := Repair{Endpoint: e.Endpoint, Master: t.Name(), Found: e.Describe(in.OldClusterID)}
			rep.Restart, err = a.repair(ctx, t, in.EtcdCluster)
			if err != nil {
				rep.Restart.Action = "failed: " + err.Error()
			}
			prog.Repaired = append(prog.Repaired, rep)
			activity.RecordHeartbeat(ctx, prog)
		}
		if time.Now().After(deadline) {
			if len(last.behind) > 0 && last.newID != 0 {
				return WaitResult{}, temporal.NewNonRetryableApplicationError(a.leftBehind(ctx, in, last, prog), ErrTypeMemberLeftBehind, nil)
			}
			return WaitResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("etcd %s not restored after %v: %s\n%s", in.EtcdCluster, in.Timeout, prog.State, a.logTails(ctx, in)), ErrTypeRestoreTimeout, nil)
		}
		select {
		case <-ctx.Done():
			return WaitResult{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// repair restarts the etcd-manager of one etcd cluster on one master again:
// whatever runs there now is the baseline, so it is killed and its
// replacement proven.
func (a *Restore) repair(ctx context.Context, t restart.Target, ec string) (restart.Restarted, error) {
	ctx = restart.WithOperation(ctx, operation(ctx)+"/repair")
	cs, err := a.Restarter.Find(ctx, t, ec)
	if err != nil {
		return restart.Restarted{Master: t.Master, EtcdCluster: ec}, err
	}
	return a.Restarter.Replace(ctx, t, ec, cs)
}

// leftBehind is the message for members still outside the new cluster at
// the timeout: which master, endpoint and container, what it serves, and
// what the operator must do.
func (a *Restore) leftBehind(ctx context.Context, in WaitInput, c check, prog waitProgress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "etcd %s was restored into cluster %x, but %d member(s) are not part of it after %v: ", in.EtcdCluster, c.newID, len(c.behind), in.Timeout)
	for _, e := range c.behind {
		t, known := in.EndpointMasters[e.Endpoint]
		master, containerName := "an unknown master (the endpoint matches no master's IP)", "its etcd-manager-"+in.EtcdCluster+" container"
		if known {
			master = "master " + t.Name() + " (" + runtimeAt(t) + ")"
			if cs, err := a.Restarter.Find(ctx, t, in.EtcdCluster); err == nil && len(cs) > 0 {
				containerName = "container " + cs[0].Name + " (" + shortID(cs[0].ID) + ", " + cs[0].State + ")"
			}
		}
		fmt.Fprintf(&b, "\n- %s on %s, %s", e.Describe(in.OldClusterID), master, containerName)
		for _, r := range prog.Repaired {
			if r.Endpoint == e.Endpoint {
				fmt.Fprintf(&b, "; kopsdr restarted it once more (%s %s -> %s) and it still did not join", r.Restart.Action, shortID(r.Restart.Before.ID), shortID(r.Restart.After.ID))
			}
		}
	}
	// etcd-manager's leader adds only an idle peer (one with no etcd state)
	// as a new member, and only while the cluster has fewer members than
	// the spec's memberCount; a peer that starts on its old data dir runs
	// the old cluster again, however often it is restarted.
	fmt.Fprintf(&b, "\nThe other members serve the restored data. This member is not part of it: etcd-manager started it on its data from before the restore (an old member without its old peers does not even answer), and restarting it again brings back the same. "+
		"Fix, on that master: 1) stop etcd-manager-%[1]s: move /etc/kubernetes/manifests/etcd-manager-%[1]s.manifest out of that folder and wait until the kubelet has stopped the container; "+
		"2) move this member's etcd-manager state and data aside on its etcd volume (the volume protokube mounts under /mnt/master-vol-*: the \"state\" file and the \"data\" folder; keep them, they are the pre-restore copy) so that it starts with no etcd state; "+
		"3) if etcdctl member list on a healthy endpoint lists a member for this master that does not answer, remove it (etcdctl member remove <id>); "+
		"4) put the manifest back. etcd-manager then starts idle and its leader adds it as a new member: that needs a healthy quorum of the restored cluster and fewer members than the cluster spec's memberCount (%[2]d). "+
		"Check that etcdctl endpoint status --cluster shows cluster %[3]x on every endpoint.\n%[4]s",
		in.EtcdCluster, in.MemberCount, c.newID, a.logTails(ctx, in))
	return b.String()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// check is one look at a restore in progress.
type check struct {
	res    WaitResult
	state  string
	done   bool
	newID  uint64                   // the new cluster, once one serves
	behind []etcdconn.EndpointState // endpoints outside it
}

func (a *Restore) checkRestored(ctx context.Context, store backupstore.Store, in WaitInput) check {
	cmds, err := etcdmanager.ListCommands(ctx, store)
	if err != nil {
		return check{state: "cannot read control/: " + err.Error()}
	}
	for _, c := range cmds {
		if c.Name == in.Command {
			return check{state: "command control/" + in.Command + " not consumed yet"}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cli, err := etcdconn.New(cctx, in.Etcd)
	if err != nil {
		return check{state: "command consumed; etcd does not answer yet"}
	}
	defer cli.Close()
	m := etcdconn.CheckMembership(cctx, cli, in.Etcd.Endpoints)
	id, complete, msg := m.Complete(in.MemberCount, in.OldClusterID)
	if id == 0 {
		return check{state: "command consumed; " + msg}
	}
	if !complete {
		return check{state: "command consumed; new " + msg, newID: id, behind: m.Outside(id)}
	}
	// Every endpoint serves the new cluster now, so any may answer this.
	count, err := cli.Get(cctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return check{state: "new cluster does not serve reads yet", newID: id}
	}
	return check{res: WaitResult{ClusterID: id, Members: m.Members(id), Revision: count.Header.GetRevision(), Keys: count.Count}, state: "restored", done: true, newID: id}
}

func (a *Restore) logTails(ctx context.Context, in WaitInput) string {
	var b strings.Builder
	for _, t := range in.Masters {
		tail, err := a.Restarter.LogTail(ctx, t, in.EtcdCluster, 30)
		if err != nil {
			fmt.Fprintf(&b, "--- %s etcd-manager-%s: no log: %v\n", t.Name(), in.EtcdCluster, err)
			continue
		}
		fmt.Fprintf(&b, "--- %s etcd-manager-%s (last lines):\n%s\n", t.Name(), in.EtcdCluster, tail)
	}
	return b.String()
}

// LeaseInput is the master-lease clean-up.
type LeaseInput struct {
	Etcd      etcdconn.Config `json:"etcd"`
	Live      []string        `json:"live"`
	DryRun    bool            `json:"dryRun"`
	WaitRenew time.Duration   `json:"waitRenew"` // 0: do not wait
}

// LeaseResult lists what was found and deleted.
type LeaseResult = leases.CleanResult

// CleanMasterLeases deletes /registry/masterleases/<ip> of every IP that is
// not a live master (never a live master's, never the last one), then waits
// until exactly the live masters' keys are there: leases.Clean, the flow
// `kopsdr clean-leases` runs too.
func (a *Restore) CleanMasterLeases(ctx context.Context, in LeaseInput) (LeaseResult, error) {
	cli, err := etcdconn.New(ctx, in.Etcd)
	if err != nil {
		return LeaseResult{}, etcdErr(in.Etcd, err)
	}
	defer cli.Close()
	var mu sync.Mutex
	state := "listing master leases"
	stop := heartbeatEvery(ctx, 5*time.Second, func() any { mu.Lock(); defer mu.Unlock(); return state })
	defer stop()
	res, err := leases.Clean(ctx, cli, in.Live, leases.CleanOptions{
		DryRun: in.DryRun, WaitLive: 30 * time.Second, WaitRenewed: in.WaitRenew,
		Progress: func(s string) { mu.Lock(); state = s; mu.Unlock() },
	})
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, leases.ErrNotRenewed):
		return res, temporal.NewNonRetryableApplicationError(err.Error(), "LeasesNotRenewed", err)
	case errors.Is(err, leases.ErrNoLiveKey):
		return res, nonRetryable(err)
	}
	if _, bad := inputerr.As(err); bad {
		return res, nonRetryable(err)
	}
	return res, etcdErr(in.Etcd, err)
}

// operation names this restore run for restarts done at most once per run
// (reboots): the workflow id and run id.
func operation(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	we := activity.GetInfo(ctx).WorkflowExecution
	return we.ID + "/" + we.RunID
}
