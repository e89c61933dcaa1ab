package restart_test

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/test/fakeec2"
)

func rebootFixture(t *testing.T) (*fakeec2.Server, restart.Restarter, restart.Target) {
	s := fakeec2.Start(t)
	c := s.Client(t)
	id := s.AddInstance(fakeec2.Instance{})
	r := restart.NewReboot(func(context.Context, string) (*ec2.Client, error) { return c, nil })
	return s, r, restart.Target{Master: "ip-10-0-1-10.ec2.internal", Runtime: restart.RuntimeReboot, InstanceID: id, Region: s.Region()}
}

func reboots(t *testing.T, s *fakeec2.Server, id string) int {
	in, ok := s.Instance(id)
	require.True(t, ok)
	return in.Reboots
}

// Both etcd clusters of a master share one reboot, and a retry of the same
// operation reboots nothing again.
func TestRebootOncePerOperation(t *testing.T) {
	s, r, tg := rebootFixture(t)
	found, err := r.Find(context.Background(), tg, "main")
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.True(t, found[0].Running)
	require.Equal(t, tg.InstanceID, found[0].ID)

	ctx := restart.WithOperation(context.Background(), "restore/c.example.com/run-1")
	gctx := restart.WithKillGate(ctx, restart.NewKillGate(2))
	var wg sync.WaitGroup
	results := make([]restart.Restarted, 2)
	for i, ec := range []string{"main", "events"} {
		wg.Go(func() {
			var err error
			results[i], err = r.Replace(gctx, tg, ec, found)
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, 1, reboots(t, s, tg.InstanceID))
	for _, res := range results {
		require.Equal(t, restart.ActionKilled, res.Action)
		require.Contains(t, res.Proof, "restore/c.example.com/run-1")
	}
	in, _ := s.Instance(tg.InstanceID)
	require.Equal(t, "restore/c.example.com/run-1", in.Tags[restart.RebootTag])

	again, err := r.Replace(ctx, tg, "main", found)
	require.NoError(t, err)
	require.Equal(t, restart.ActionAlreadyRestarted, again.Action)
	require.Equal(t, 1, reboots(t, s, tg.InstanceID))

	// A repair is an operation of its own: it reboots once more.
	_, err = r.Replace(restart.WithOperation(context.Background(), "restore/c.example.com/run-1/repair"), tg, "main", found)
	require.NoError(t, err)
	require.Equal(t, 2, reboots(t, s, tg.InstanceID))
}

// A reboot EC2 refused leaves no tag behind, so the retry reboots.
func TestRebootRefusedIsRetried(t *testing.T) {
	s, r, tg := rebootFixture(t)
	s.InjectFault(fakeec2.Fault{Action: "RebootInstances", Code: "UnauthorizedOperation"})
	ctx := restart.WithOperation(context.Background(), "op")
	_, err := r.Replace(ctx, tg, "main", nil)
	require.ErrorContains(t, err, "UnauthorizedOperation")
	in, _ := s.Instance(tg.InstanceID)
	require.NotContains(t, in.Tags, restart.RebootTag)
	require.Equal(t, 0, in.Reboots)

	res, err := r.Replace(ctx, tg, "main", nil)
	require.NoError(t, err)
	require.Equal(t, restart.ActionKilled, res.Action)
	require.Equal(t, 1, reboots(t, s, tg.InstanceID))
}

func TestRebootRefusesAStoppedOrMissingInstance(t *testing.T) {
	s, r, tg := rebootFixture(t)
	stopped := s.AddInstance(fakeec2.Instance{State: "stopped"})
	tg2 := tg
	tg2.InstanceID = stopped
	_, err := r.Replace(restart.WithOperation(context.Background(), "op"), tg2, "main", nil)
	require.ErrorContains(t, err, "is stopped, not running")
	require.Equal(t, 0, reboots(t, s, stopped))

	tg2.InstanceID = "i-0123456789abcdef0"
	_, err = r.Find(context.Background(), tg2, "main")
	var nf *restart.NotFoundError
	require.ErrorAs(t, err, &nf)

	_, err = r.LogTail(context.Background(), tg, "main", 10)
	require.ErrorContains(t, err, "get-console-output")
}
