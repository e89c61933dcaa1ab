package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/cmasters"
	"github.com/kopsdr/kopsdr/test/containerdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/sshtest"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/tcpproxy"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// ctrdFixture is a three-master control plane on a real containerd (the
// etcd-manager stand-ins as CRI-labelled containers in namespace k8s.io,
// replaced by a kubelet stand-in), each master reached through its own
// real sshd behind a TCP proxy that can cut the connection. The restore
// gets nothing but what an operator gives it: SSH addresses, a key file
// and a known_hosts file.
type ctrdFixture struct {
	tp         *stack.Temporal
	c          *cmasters.Cluster
	sshds      []*sshtest.Server
	proxies    []*tcpproxy.Proxy // in front of each sshd, in Masters order
	keyFile    string
	knownHosts string // the proxies' addresses with their sshd's host key
	backups    map[string]string
}

func newCtrdFixture(t *testing.T, worker bool) *ctrdFixture {
	f := &ctrdFixture{tp: stack.StartTemporal(t), backups: map[string]string{}}
	// As in newRestoreFixture: the leader waits long enough for every
	// restarted peer, as real etcd-manager's 20-35 s do.
	f.c = cmasters.Start(t, cmasters.Options{WithAPIServer: true, RestoreDelay: 10 * time.Second})
	var known []string
	for i := range f.c.Masters {
		o := sshtest.Options{}
		if i > 0 {
			o.UserKey = f.sshds[0].UserKey // one key logs in everywhere, as kops's
		}
		s := sshtest.Start(t, o)
		p := tcpproxy.Start(t, s.Addr)
		b, err := os.ReadFile(s.KnownHostsAt(t, p.Addr))
		require.NoError(t, err)
		known = append(known, string(b))
		f.sshds, f.proxies = append(f.sshds, s), append(f.proxies, p)
	}
	f.keyFile = f.sshds[0].KeyFile
	f.knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(f.knownHosts, []byte(strings.Join(known, "")), 0o600))
	if worker {
		f.tp.StartWorker(t)
	}

	seedBeforeBackup(t, &f.c.Etcd)
	f.backups[cmasters.Main], f.backups[cmasters.Events] = f.c.Backup(t, cmasters.Main), f.c.Backup(t, cmasters.Events)
	changeAfterBackup(t, testenv.Context(t, 3*time.Minute), &f.c.Etcd)
	return f
}

// input is what an operator gives for these masters: each one's sshd (the
// proxy) and the containerd socket on it, with the login files.
func (f *ctrdFixture) input() workflows.EtcdManagerRestoreInput {
	in := workflows.EtcdManagerRestoreInput{
		Cluster: f.c.Name,
		Main:    workflows.RestoreTarget{BackupStore: f.c.MainStore, Endpoints: f.c.MainEndpoints, Backup: f.backups[cmasters.Main]},
		Events:  workflows.RestoreTarget{BackupStore: f.c.EventsStore, Endpoints: f.c.EventsEndpoints, Backup: f.backups[cmasters.Events]},
		CACert:  f.c.CACert, Cert: f.c.ClientCert, Key: f.c.ClientKey,
		SSH:            &api.SSHInput{Key: f.keyFile, KnownHosts: f.knownHosts},
		RestoreTimeout: "3m",
	}
	for i, m := range f.c.Masters {
		in.Masters = append(in.Masters, api.MasterInput{
			Name: m.Node, SSH: f.sshds[i].User + "@" + f.proxies[i].Addr, Containerd: "unix://" + f.c.ContainerdSocket, IP: m.IP,
		})
	}
	return in
}

func (f *ctrdFixture) start(t *testing.T, ctx context.Context, in workflows.EtcdManagerRestoreInput) client.WorkflowRun {
	run, err := f.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RestoreWorkflowID(f.c.Name), TaskQueue: temporalconn.TaskQueue},
		workflows.EtcdManagerRestore, in)
	require.NoError(t, err)
	return run
}

func (f *ctrdFixture) status(ctx context.Context, run client.WorkflowRun) workflows.RestoreStatus {
	var st workflows.RestoreStatus
	if v, err := f.tp.Client.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryStatus); err == nil {
		_ = v.Get(&st)
	}
	return st
}

func (f *ctrdFixture) served(t *testing.T, ctx context.Context, key string) bool {
	resp, err := f.c.Client(t, cmasters.Main).Get(ctx, key)
	return err == nil && resp.Count > 0
}

// requireRestored checks the backup's data is served, the commands were
// consumed, and every etcd-manager was killed exactly once, through
// containerd, and replaced by the kubelet, never started by kopsdr.
func (f *ctrdFixture) requireRestored(t *testing.T, ctx context.Context) {
	t.Helper()
	require.False(t, f.served(t, ctx, "/registry/configmaps/default/after-backup"), "the change after the backup is undone")
	require.True(t, f.served(t, ctx, "/registry/configmaps/default/cm-001"), "the delete after the backup is undone")
	for _, ec := range []string{cmasters.Main, cmasters.Events} {
		cmds, err := etcdmanager.ListCommands(ctx, f.c.Store(t, ec))
		require.NoError(t, err)
		require.Empty(t, cmds, ec)
	}
	kills := f.c.AllKills()
	require.Len(t, kills, 6, "one container per master and etcd cluster killed: %v\n%s", kills, f.c.Timeline())
	for id, n := range kills {
		require.Equal(t, 1, n, "container %s killed once\n%s", id, f.c.Timeline())
	}
	for _, m := range f.c.Masters {
		require.Equal(t, 1, f.c.Attempt(t, m.Node, cmasters.Main), "main on %s replaced once", m.Node)
		require.Equal(t, 1, f.c.Attempt(t, m.Node, cmasters.Events), "events on %s replaced once", m.Node)
	}
	require.Zero(t, f.c.Proxy.Calls(containerdtest.MethodTaskStart), "kopsdr never starts a task")
	require.Zero(t, f.c.Proxy.Calls("/containerd.services.containers.v1.Containers/Create"), "kopsdr never creates a container")
}

// TestContainerdRestoreOverSSH restores a containerd control plane end to
// end: pre-flight over SSH, plan, commands, the kills through containerd,
// the kubelet's replacements, the wait and the lease clean-up.
func TestContainerdRestoreOverSSH(t *testing.T) {
	f := newCtrdFixture(t, true)
	ctx := testenv.Context(t, 5*time.Minute)
	in := f.input()
	in.Approve = true
	run := f.start(t, ctx, in)
	var res workflows.EtcdManagerRestoreResult
	require.NoError(t, temporalconn.Await(ctx, run, &res), f.c.Timeline())
	stack.RecordHistory(t, ctx, f.tp.Client, run.GetID(), run.GetRunID(), "etcd-manager-restore-containerd")

	require.Len(t, res.Plan.Masters, 3)
	for _, pm := range res.Plan.Masters {
		require.Equal(t, api.RuntimeContainerd, pm.Runtime)
		require.Contains(t, pm.SSH, "@127.0.0.1:")
		require.Len(t, pm.Containers, 2, "main and events on %s", pm.Master)
	}
	require.Len(t, res.Restarts, 6)
	for _, r := range res.Restarts {
		require.Equal(t, "killed", r.Action, "%+v", r)
		require.Contains(t, r.Proof, "not in the baseline")
	}
	f.requireRestored(t, ctx)
	require.ElementsMatch(t, leaseKeys(masters.OldMasterIPs), res.LeasesDeleted)
	for _, s := range res.Steps {
		t.Logf("step %-24s %6.1fs", s.Step, s.Seconds)
	}
}

// TestContainerdRestorePreflightRefuses: every SSH or socket problem stops
// the restore in pre-flight with a message that says what to do, and
// nothing is queued or killed.
func TestContainerdRestorePreflightRefuses(t *testing.T) {
	f := newCtrdFixture(t, true)
	b := f.sshds[1]
	for _, c := range []struct {
		name   string
		change func(in *workflows.EtcdManagerRestoreInput)
		want   []string
	}{
		{"unknown host key", func(in *workflows.EtcdManagerRestoreInput) {
			in.SSH.KnownHosts = b.EmptyKnownHosts(t)
		}, []string{"unknown host key", "SHA256:", "get-console-output"}},
		{"changed host key", func(in *workflows.EtcdManagerRestoreInput) {
			in.SSH.KnownHosts = f.knownHostsWith(t, 1, f.sshds[0]) // master a's key pinned for master b
		}, []string{"HOST KEY CHANGED", b.HostKeyFingerprint}},
		{"wrong user key", func(in *workflows.EtcdManagerRestoreInput) {
			in.SSH.Key = b.WrongKeyFile(t)
		}, []string{"was refused with key file", "authorized_keys"}},
		{"missing socket", func(in *workflows.EtcdManagerRestoreInput) {
			in.Masters[1].Containerd = "unix:///run/kopsdr-test-no-such/containerd.sock"
		}, []string{"cannot open unix socket /run/kopsdr-test-no-such/containerd.sock", "systemctl status containerd"}},
		{"unreachable ssh port", func(in *workflows.EtcdManagerRestoreInput) {
			in.Masters[1].SSH = b.User + "@" + loopback.Refused(t)
		}, []string{"cannot connect", "security groups"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := testenv.Context(t, 4*time.Minute)
			in := f.input()
			in.DryRun = true
			c.change(&in)
			err := temporalconn.Await(ctx, f.start(t, ctx, in), nil)
			require.Error(t, err)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
			t.Logf("operator sees: %v", err)
			require.Empty(t, f.c.AllKills(), "nothing killed")
			for _, ec := range []string{cmasters.Main, cmasters.Events} {
				cmds, lerr := etcdmanager.ListCommands(ctx, f.c.Store(t, ec))
				require.NoError(t, lerr)
				require.Empty(t, cmds, ec)
			}
		})
	}
}

// knownHostsWith is the fixture's known_hosts with master i's entry
// replaced by other's host key at master i's address.
func (f *ctrdFixture) knownHostsWith(t *testing.T, i int, other *sshtest.Server) string {
	good, err := os.ReadFile(f.knownHosts)
	require.NoError(t, err)
	swapped, err := os.ReadFile(other.KnownHostsAt(t, f.proxies[i].Addr))
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(good)), "\n") {
		if !strings.HasPrefix(l, "["+strings.Replace(f.proxies[i].Addr, ":", "]:", 1)) {
			lines = append(lines, l)
		}
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"+string(swapped)), 0o600))
	return p
}

// TestContainerdRestoreSurvivesWorkerKillsAndDroppedSSH kills the worker
// process during the restart step and during the wait, and cuts every SSH
// connection while the restart runs: the restore finishes, each
// etcd-manager killed exactly once.
func TestContainerdRestoreSurvivesWorkerKillsAndDroppedSSH(t *testing.T) {
	bin := stack.Binaries(t)
	f := newCtrdFixture(t, false)
	ctx := testenv.Context(t, 10*time.Minute)
	startWorker := func() *stack.Proc { return startWorkerProc(t, bin, f.tp) }
	w := startWorker()
	in := f.input()
	in.Approve = true
	run := f.start(t, ctx, in)
	done := make(chan error, 1)
	go func() { done <- temporalconn.Await(ctx, run, nil) }()

	acted := map[string]bool{}
	for {
		select {
		case err := <-done:
			require.NoError(t, err, f.c.Timeline())
			t.Logf("acted during: %v", acted)
			require.True(t, acted["restart etcd-manager"], "the worker was killed during the restart step")
			f.requireRestored(t, ctx)
			return
		case <-time.After(50 * time.Millisecond):
		}
		step := f.status(ctx, run).Step
		if acted[step] {
			continue
		}
		switch step {
		case "restart etcd-manager":
			acted[step] = true
			for _, p := range f.proxies {
				p.DropAll()
			}
			t.Logf("cut every SSH connection and killed the worker during %q", step)
			w.Kill()
			w = startWorker()
		case "wait for etcd-manager":
			acted[step] = true
			t.Logf("killed the worker during %q", step)
			w.Kill()
			w = startWorker()
		}
	}
}
