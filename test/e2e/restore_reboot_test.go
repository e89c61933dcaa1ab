package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/fakeec2"
	"github.com/kopsdr/kopsdr/test/masters"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestEtcdManagerRestoreByReboot restarts etcd-manager without host access:
// the workflow reboots every master's EC2 instance (the fake EC2), and the
// reboot takes the master's containers down and, after a "boot", up again
// (what a reboot does to static pods). Each instance is rebooted exactly
// once, though two etcd clusters share it, and the data is restored.
func TestEtcdManagerRestoreByReboot(t *testing.T) {
	nodes := map[string]string{} // instance -> node
	var c *masters.Cluster
	ec2 := fakeec2.Start(t, fakeec2.WithRebootHook(func(id string) {
		c.Reboot(t, nodes[id], 3*time.Second)
	}))
	for _, kv := range (&volStack{}).env(ec2.URL()) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	f := newRestoreFixture(t, true)
	c = f.c
	in := f.input()
	in.Region = ec2.Region()
	for i, m := range c.Masters {
		id := ec2.AddInstance(fakeec2.Instance{})
		nodes[id] = m.Node
		in.Masters[i] = api.MasterInput{Name: m.Node, Runtime: api.RuntimeReboot, InstanceID: id, IP: m.IP}
	}
	in.Approve = true
	// A bound on a failure, not a timing: in one CI run the masters' six
	// containers came back 25-85 s after their reboot, and 6 minutes ran
	// out before the restore had finished.
	ctx := testenv.Context(t, 12*time.Minute)
	run := f.start(t, ctx, in)
	var res workflows.EtcdManagerRestoreResult
	require.NoError(t, temporalconn.Await(ctx, run, &res), c.Timeline())
	stack.RecordHistory(t, ctx, f.tp.Client, run.GetID(), run.GetRunID(), "etcd-manager-restore-by-reboot")

	require.Len(t, res.Plan.Masters, 3)
	for _, pm := range res.Plan.Masters {
		require.Equal(t, api.RuntimeReboot, pm.Runtime)
		require.Contains(t, pm.Endpoint, "EC2 instance i-")
		require.Contains(t, pm.Downtime, "reboot")
	}
	require.Nil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"))
	require.NotNil(t, f.get(t, ctx, "/registry/configmaps/default/cm-001"))
	f.requireCommandsConsumed(t, ctx)
	for id, node := range nodes {
		inst, ok := ec2.Instance(id)
		require.True(t, ok)
		require.Equal(t, 1, inst.Reboots, "instance %s (%s) rebooted once", id, node)
		require.Equal(t, run.GetID()+"/"+run.GetRunID(), inst.Tags[restart.RebootTag])
	}
	for _, m := range c.Masters {
		require.Equal(t, 1, c.RestartCount(t, m.MainContainer), m.MainContainer)
		require.Equal(t, 1, c.RestartCount(t, m.EventsContainer), m.EventsContainer)
	}
	require.ElementsMatch(t, leaseKeys(masters.OldMasterIPs), res.LeasesDeleted)
	for _, s := range res.Steps {
		t.Logf("step %-24s %6.1fs", s.Step, s.Seconds)
	}
}
