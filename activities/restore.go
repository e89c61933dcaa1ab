package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/leases"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

// Restore holds the activities of the etcd-manager restore. Restarter is the
// seam to the masters' container runtime (Docker today).
type Restore struct {
	Restarter restart.Restarter
}

// Error types of the restore that workflows recognise.
const (
	ErrTypePreflight      = "PreflightFailed"
	ErrTypeRestoreTimeout = "RestoreTimeout"
	ErrTypeMasterDown     = "MasterUnreachable"
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

// MasterFacts are the etcd-manager containers found on one master.
type MasterFacts struct {
	Master     string              `json:"master"`
	Endpoint   string              `json:"endpoint"`
	Containers map[string][]string `json:"containers"` // etcd cluster -> container names
}

// Preflight checks everything the restore needs and changes nothing. Every
// failure names what is wrong; bad input and a bad backup are final.
func (a *Restore) Preflight(ctx context.Context, in PreflightInput) (PreflightResult, error) {
	var res PreflightResult
	for _, c := range in.Clusters {
		facts, err := a.preflightCluster(ctx, c)
		if err != nil {
			return res, err
		}
		res.Clusters = append(res.Clusters, facts)
	}
	for _, t := range in.Masters {
		mf := MasterFacts{Master: t.Master, Endpoint: t.Endpoint, Containers: map[string][]string{}}
		for _, c := range in.Clusters {
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
				return res, preflightFail(fmt.Sprintf("master %s (%s) runs no etcd-manager-%s container", t.Name(), t.Endpoint, c.EtcdCluster),
					"check the Docker endpoint points at that master and that etcd-manager runs there")
			}
		}
		res.Masters = append(res.Masters, mf)
	}
	return res, nil
}

func (a *Restore) preflightCluster(ctx context.Context, c PreflightCluster) (ClusterFacts, error) {
	facts := ClusterFacts{EtcdCluster: c.EtcdCluster, Store: c.Store}
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
	rc, err := store.Get(ctx, chosen+"/"+etcdmanager.DataFile)
	if err != nil {
		return facts, preflightFail(fmt.Sprintf("backup %s in %s has no readable %s: %v", chosen, c.Store, etcdmanager.DataFile, err),
			"choose another backup")
	}
	v, err := snapshot.VerifyGzip(&heartbeatReader{ctx: ctx, r: rc})
	rc.Close()
	if err != nil {
		return facts, preflightFail(fmt.Sprintf("backup %s in %s is corrupt: %v", chosen, c.Store, err), "choose another backup")
	}
	facts.Bytes = v.GzipBytes
	if ff, err := readFacts(ctx, store, chosen); err == nil {
		if ff.GzipSHA256 != v.GzipSHA256 || ff.RawSHA256 != v.RawSHA256 {
			return facts, preflightFail(fmt.Sprintf("backup %s in %s does not match the checksums kopsdr recorded when it took it (%s)",
				chosen, c.Store, etcdmanager.KopsdrFile), "choose another backup")
		}
		facts.Revision = ff.Revision
	}

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
		return preflightFail(err.Error(), "check the master's Docker endpoint and node name")
	}
	var ue *restart.UnreachableError
	if errors.As(err, &ue) {
		return temporal.NewApplicationErrorWithCause(fmt.Sprintf("master %s: Docker at %s does not answer: %v", t.Name(), t.Endpoint, err), ErrTypeMasterDown, err)
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

// RestartInput restarts the etcd-manager containers of the given etcd
// clusters on every master.
type RestartInput struct {
	Targets      []restart.Target `json:"targets"`
	EtcdClusters []string         `json:"etcdClusters"`
	Since        time.Time        `json:"since"` // a container started after this counts as restarted
}

// RestartResult says what happened on each master.
type RestartResult struct {
	Restarted []restart.Restarted `json:"restarted"`
	Failed    map[string]string   `json:"failed,omitempty"` // master -> error
}

// RestartEtcdManagers restarts every etcd-manager container of every master
// at once, in one activity: etcd-manager's leader restores with whichever
// peers restarted with it, and a peer restarted later is not re-added, so
// the restarts must not be spread over several retries. Each container is
// killed (the kubelet starts a new one, or kopsdr starts it) and confirmed
// running. Idempotent through Since: a retry after a crash finds the new
// containers and kills nothing again. A master whose Docker does not answer
// fails the attempt, naming it; Temporal retries, then reports it.
func (a *Restore) RestartEtcdManagers(ctx context.Context, in RestartInput) (RestartResult, error) {
	stop := heartbeatEvery(ctx, 2*time.Second, func() any { return "restarting etcd-manager on every master" })
	defer stop()
	type outcome struct {
		master string
		r      restart.Restarted
		err    error
	}
	out := make(chan outcome)
	n := 0
	for _, t := range in.Targets {
		for _, ec := range in.EtcdClusters {
			n++
			go func() {
				r, err := a.Restarter.Restart(ctx, t, ec, in.Since)
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
}

// WaitResult describes the restored cluster.
type WaitResult struct {
	ClusterID uint64 `json:"clusterId"`
	Members   int    `json:"members"`
	Revision  int64  `json:"revision"`
	Keys      int64  `json:"keys"`
}

// WaitRestored polls until the command is consumed AND etcd serves a new
// cluster (a changed cluster id when the old one was known) with every member
// answering. "etcd answers" alone proves nothing: the old data is served
// again for half a minute before etcd-manager picks the command up. On
// timeout the error carries each etcd-manager container's log tail.
func (a *Restore) WaitRestored(ctx context.Context, in WaitInput) (WaitResult, error) {
	store, err := openStore(ctx, in.Store)
	if err != nil {
		return WaitResult{}, err
	}
	deadline := time.Now().Add(in.Timeout)
	state := "waiting for etcd-manager to pick the command up"
	for {
		activity.RecordHeartbeat(ctx, state)
		res, st, done := a.checkRestored(ctx, store, in)
		state = st
		if done {
			return res, nil
		}
		if time.Now().After(deadline) {
			return WaitResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("etcd %s not restored after %v: %s\n%s", in.EtcdCluster, in.Timeout, state, a.logTails(ctx, in)), ErrTypeRestoreTimeout, nil)
		}
		select {
		case <-ctx.Done():
			return WaitResult{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (a *Restore) checkRestored(ctx context.Context, store backupstore.Store, in WaitInput) (WaitResult, string, bool) {
	cmds, err := etcdmanager.ListCommands(ctx, store)
	if err != nil {
		return WaitResult{}, "cannot read control/: " + err.Error(), false
	}
	for _, c := range cmds {
		if c.Name == in.Command {
			return WaitResult{}, "command control/" + in.Command + " not consumed yet", false
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cli, err := etcdconn.New(cctx, in.Etcd)
	if err != nil {
		return WaitResult{}, "command consumed; etcd does not answer yet", false
	}
	defer cli.Close()
	ml, err := cli.MemberList(cctx)
	if err != nil {
		return WaitResult{}, "command consumed; etcd does not list members yet", false
	}
	if in.OldClusterID != 0 && ml.Header.GetClusterId() == in.OldClusterID {
		return WaitResult{}, "command consumed; etcd still serves the old cluster", false
	}
	if len(ml.Members) != in.MemberCount {
		return WaitResult{}, fmt.Sprintf("new cluster has %d of %d members", len(ml.Members), in.MemberCount), false
	}
	for _, ep := range in.Etcd.Endpoints {
		if _, err := etcdconn.Status(cctx, cli, ep); err != nil {
			return WaitResult{}, fmt.Sprintf("member %s does not answer yet", ep), false
		}
	}
	count, err := cli.Get(cctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return WaitResult{}, "new cluster does not serve reads yet", false
	}
	return WaitResult{ClusterID: ml.Header.GetClusterId(), Members: len(ml.Members), Revision: count.Header.GetRevision(), Keys: count.Count}, "restored", true
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

// DiscoverInput finds the masters from EC2.
type DiscoverInput struct {
	Cluster  string `json:"cluster"`
	Region   string `json:"region"`
	Template string `json:"dockerEndpointTemplate"`
	TLSCA    string `json:"tlsCA,omitempty"`
	TLSCert  string `json:"tlsCert,omitempty"`
	TLSKey   string `json:"tlsKey,omitempty"`
}

// DiscoveredMaster is a running master and how to reach its Docker.
type DiscoveredMaster struct {
	Target restart.Target `json:"target"`
	IP     string         `json:"ip"`
}

// DiscoverMasters lists the running instances kops tagged as the cluster's
// masters (kops.FindMasters, the one finder) and renders each one's Docker
// endpoint.
func (a *Restore) DiscoverMasters(ctx context.Context, in DiscoverInput) ([]DiscoveredMaster, error) {
	c, err := kops.NewEC2Client(ctx, in.Region, "")
	if err != nil {
		return nil, nonRetryable(err)
	}
	ms, err := kops.FindMasters(ctx, c, in.Cluster, kops.Running)
	if _, bad := inputerr.As(err); bad {
		return nil, nonRetryable(err)
	} else if err != nil {
		return nil, ec2Err("find the masters of "+in.Cluster, err)
	}
	if len(ms) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"no running EC2 instance in %s is tagged as a master of %s", in.Region, in.Cluster), ErrTypePreflight, nil)
	}
	targets, err := dockerTargets(ms, in.Template)
	if err != nil {
		return nil, nonRetryable(err)
	}
	out := make([]DiscoveredMaster, len(ms))
	for i := range ms {
		targets[i].TLSCA, targets[i].TLSCert, targets[i].TLSKey = in.TLSCA, in.TLSCert, in.TLSKey
		out[i] = DiscoveredMaster{Target: targets[i], IP: ms[i].PrivateIP}
	}
	return out, nil
}
