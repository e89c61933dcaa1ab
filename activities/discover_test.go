package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

var discovered = []kops.Master{
	{InstanceID: "i-0aaaaaaaaaaaaaaaa", Name: "master-a", NodeName: "ip-10-0-1-10.ec2.internal", PrivateIP: "10.0.1.10"},
	{InstanceID: "i-0bbbbbbbbbbbbbbbb", Name: "master-b", PrivateIP: "10.0.2.10"},
}

func targetsFor(t *testing.T, runtime string, in DiscoverInput) []restart.Target {
	t.Helper()
	var out []restart.Target
	for _, m := range discovered {
		tg, err := discoveredTarget(m, runtime, in)
		require.NoError(t, err)
		out = append(out, tg)
	}
	return out
}

func TestDiscoveredDockerTargets(t *testing.T) {
	require.Equal(t, []restart.Target{
		{Master: "ip-10-0-1-10.ec2.internal", Endpoint: "tcp://10.0.1.10:2376"},
		{Master: "master-b", Endpoint: "tcp://10.0.2.10:2376"},
	}, targetsFor(t, restart.RuntimeDocker, DiscoverInput{}))

	for _, bad := range []string{"tcp://{{.PrivateIP:2376", "tcp://{{.PublicIP}}:2376", "http://{{.PrivateIP}}:2376", "tcp://{{.PrivateIP}}"} {
		_, err := discoveredTarget(discovered[0], restart.RuntimeDocker, DiscoverInput{Template: bad})
		ie, ok := inputerr.As(err)
		if !ok || ie.Field != "dockerEndpointTemplate" {
			t.Errorf("template %q: want *inputerr.Error on dockerEndpointTemplate, got %v", bad, err)
		}
	}
}

func TestDiscoveredContainerdAndRebootTargets(t *testing.T) {
	login := &sshdial.Config{User: "admin", KeyFile: "/keys/id", KnownHosts: "/keys/known_hosts", Jump: "bastion.example.com"}
	got := targetsFor(t, restart.RuntimeContainerd, DiscoverInput{SSH: login})
	require.Equal(t, restart.Target{
		Master: "ip-10-0-1-10.ec2.internal", Runtime: "containerd", Endpoint: restart.DefaultContainerdSocket,
		SSH: &sshdial.Config{Address: "10.0.1.10:22", User: "admin", KeyFile: "/keys/id", KnownHosts: "/keys/known_hosts", Jump: "bastion.example.com"},
	}, got[0])
	got = targetsFor(t, restart.RuntimeContainerd, DiscoverInput{SSHTemplate: "core@{{.Name}}.internal:2222", ContainerdSocket: "unix:///var/run/ctr.sock"})
	require.Equal(t, "master-b.internal:2222", got[1].SSH.Address)
	require.Equal(t, "core", got[1].SSH.User)
	require.Equal(t, "unix:///var/run/ctr.sock", got[1].Endpoint)

	got = targetsFor(t, restart.RuntimeReboot, DiscoverInput{Region: "eu-west-1"})
	require.Equal(t, restart.Target{Master: "master-b", Runtime: "reboot", InstanceID: "i-0bbbbbbbbbbbbbbbb", Region: "eu-west-1"}, got[1])
}

func TestDiscoveredRuntimeFromSpec(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := "file://" + dir
	spec := func(cluster, body string) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, cluster), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, cluster, "config"), []byte(body), 0o644))
	}
	etcd := "  etcdClusters:\n  - name: main\n    etcdMembers: [{name: a}]\n"
	spec("new.example.com", "metadata: {name: new.example.com}\nspec:\n  kubernetesVersion: 1.29.2\n"+etcd)
	spec("old.example.com", "metadata: {name: old.example.com}\nspec:\n  kubernetesVersion: 1.22.0\n"+etcd)
	spec("says.example.com", "metadata: {name: says.example.com}\nspec:\n  containerRuntime: docker\n  kubernetesVersion: 1.29.2\n"+etcd)

	for _, c := range []struct {
		in   DiscoverInput
		want string
	}{
		{DiscoverInput{Cluster: "new.example.com", StateStore: state}, "containerd"},
		{DiscoverInput{Cluster: "old.example.com", StateStore: state}, "docker"},
		{DiscoverInput{Cluster: "says.example.com", StateStore: state, Template: "tcp://{{.PrivateIP}}:2376"}, "docker"},
		{DiscoverInput{Cluster: "new.example.com", StateStore: state, Runtime: "reboot"}, "reboot"},
		{DiscoverInput{Cluster: "nospec.example.com", StateStore: state, Template: "tcp://{{.PrivateIP}}:2376"}, "docker"},
		{DiscoverInput{Cluster: "nospec.example.com", Template: "tcp://{{.PrivateIP}}:2376"}, "docker"},
	} {
		got, err := discoveredRuntime(ctx, c.in)
		require.NoError(t, err, "%+v", c.in)
		require.Equal(t, c.want, got, "%+v", c.in)
	}

	for _, c := range []struct {
		in   DiscoverInput
		want string
	}{
		{DiscoverInput{Cluster: "nospec.example.com", StateStore: state}, "set discover.runtime"},
		{DiscoverInput{Cluster: "nospec.example.com"}, "without a state store"},
		{DiscoverInput{Cluster: "new.example.com", StateStore: state, Template: "tcp://{{.PrivateIP}}:2376"}, "spec says the masters run containerd"},
	} {
		_, err := discoveredRuntime(ctx, c.in)
		require.ErrorContains(t, err, c.want, "%+v", c.in)
	}
}
