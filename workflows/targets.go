package workflows

import (
	"cmp"
	"time"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/sshdial"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// masterTarget is how the restart step reaches a listed master. A Docker
// master's target is what it has always been (no runtime field), so the
// activity inputs of Docker restores stay as older histories recorded them.
func masterTarget(in api.EtcdManagerRestoreInput, m api.MasterInput) restart.Target {
	t := restart.Target{Master: m.Name}
	switch m.RuntimeOf() {
	case api.RuntimeContainerd:
		t.Runtime = restart.RuntimeContainerd
		t.Endpoint = cmp.Or(m.Containerd, api.DefaultContainerdSocket)
		if m.SSH != "" {
			t.SSH = restart.SSHConfig(m.SSH, sshDefaults(in.SSH))
		}
	case api.RuntimeReboot:
		t.Runtime, t.InstanceID, t.Region = restart.RuntimeReboot, m.InstanceID, in.Region
	default:
		t.Endpoint, t.TLSCA, t.TLSCert, t.TLSKey = m.Docker, m.TLSCA, m.TLSCert, m.TLSKey
	}
	return t
}

// sshDefaults are the input's login settings in sshdial's terms.
func sshDefaults(s *api.SSHInput) sshdial.Config {
	if s == nil {
		return sshdial.Config{User: api.DefaultSSHUser}
	}
	return sshdial.Config{User: cmp.Or(s.User, api.DefaultSSHUser), KeyFile: s.Key, KnownHosts: s.KnownHosts, Jump: s.Jump, Sudo: s.Sudo}
}

// discoverInput asks the discovery activity for the masters: the runtime
// comes from the input, else from the cluster spec in the state store.
func discoverInput(in api.EtcdManagerRestoreInput) activities.DiscoverInput {
	d := in.Discover
	out := activities.DiscoverInput{
		Cluster: in.Cluster, Region: d.Region, Runtime: d.Runtime, StateStore: in.StateStore,
		Template: d.DockerEndpointTemplate, TLSCA: d.TLSCA, TLSCert: d.TLSCert, TLSKey: d.TLSKey,
		SSHTemplate: d.SSHAddressTemplate, ContainerdSocket: d.ContainerdSocket,
	}
	if d.Runtime == "" || d.Runtime == api.RuntimeContainerd {
		login := sshDefaults(in.SSH)
		out.SSH = &login
	}
	return out
}

// bootAllowance is what the wait step adds when masters reboot: an EC2
// instance takes minutes to boot before its kubelet starts etcd-manager.
const bootAllowance = 10 * time.Minute

// downtime is what the plan tells the approver about each master.
func downtime(runtime string) string {
	if runtime == restart.RuntimeReboot {
		return "etcd down from the reboot until the instance has booted and etcd-manager restored: typically 3-6 minutes (the wait step allows 10 more)"
	}
	return "etcd down from the kill until etcd-manager restored: typically 30-90 seconds"
}

// reboots says whether the restart step reboots the masters.
func reboots(targets []restart.Target) bool {
	for _, t := range targets {
		if t.RuntimeOf() == restart.RuntimeReboot {
			return true
		}
	}
	return false
}
