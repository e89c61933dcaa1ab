package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/sshdial"
	"github.com/kopsdr/kopsdr/workflows/api"
)

func TestMasterTargets(t *testing.T) {
	in := api.EtcdManagerRestoreInput{Region: "eu-west-1", SSH: &api.SSHInput{Key: "/k", KnownHosts: "/kh", Jump: "bastion"}}

	// Docker targets stay as older histories recorded them: no runtime.
	require.Equal(t, restart.Target{Master: "a", Endpoint: "tcp://10.0.1.10:2376", TLSCA: "/ca"},
		masterTarget(in, api.MasterInput{Name: "a", Docker: "tcp://10.0.1.10:2376", TLSCA: "/ca"}))

	require.Equal(t, restart.Target{Master: "b", Runtime: "containerd", Endpoint: api.DefaultContainerdSocket,
		SSH: &sshdial.Config{Address: "10.0.1.11:22", User: "ubuntu", KeyFile: "/k", KnownHosts: "/kh", Jump: "bastion"}},
		masterTarget(in, api.MasterInput{Name: "b", SSH: "10.0.1.11"}))
	require.Equal(t, &sshdial.Config{Address: "[fd00::1]:2222", User: "admin", KeyFile: "/k", KnownHosts: "/kh", Jump: "bastion"},
		masterTarget(in, api.MasterInput{SSH: "admin@[fd00::1]:2222", Containerd: "unix:///c.sock"}).SSH)
	require.Equal(t, "unix:///c.sock", masterTarget(in, api.MasterInput{Containerd: "unix:///c.sock"}).Endpoint)
	require.Nil(t, masterTarget(in, api.MasterInput{Containerd: "unix:///c.sock"}).SSH, "no ssh: the worker's own socket")

	require.Equal(t, restart.Target{Master: "c", Runtime: "reboot", InstanceID: "i-0123456789abcdef0", Region: "eu-west-1"},
		masterTarget(in, api.MasterInput{Name: "c", Runtime: "reboot", InstanceID: "i-0123456789abcdef0"}))

	require.True(t, reboots([]restart.Target{{Runtime: "reboot"}}))
	require.False(t, reboots([]restart.Target{{}, {Runtime: "containerd"}}))
}
