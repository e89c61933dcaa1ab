package containerdtest

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// specTypeURL is how containerd's client marks an OCI runtime spec in a
// container record; the value is the spec as JSON.
const specTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// Mount is a bind mount of a host path into a container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// caps is Docker's and containerd's default capability set.
var caps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// runtimeSpec is the OCI spec of one container: args run as the test's
// user in their own pid, ipc, uts and mount namespaces but in the host's
// network namespace (like a hostNetwork pod, as etcd-manager's is on
// kops), with mounts bound in.
func (d *Daemon) runtimeSpec(id string, args, env []string, mounts []Mount) (*anypb.Any, error) {
	s := specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Args: args,
			Env:  append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...),
			Cwd:  "/",
			User: specs.User{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			// No network namespace: the host's.
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}},
			// Under a parent cgroup of this daemon's, removed at cleanup.
			CgroupsPath: d.cgroupParent() + "/" + id,
			MaskedPaths: []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
		},
	}
	for _, m := range mounts {
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: specTypeURL, Value: b}, nil
}
