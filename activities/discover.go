package activities

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"text/template"

	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/kopsspec"
	"github.com/kopsdr/kopsdr/internal/restart"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

// DiscoverInput finds the masters from EC2.
type DiscoverInput struct {
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
	// Runtime is docker, containerd or reboot; empty: what the cluster
	// spec in StateStore declares, or docker when Template is given and
	// there is no spec.
	Runtime    string `json:"runtime,omitempty"`
	StateStore string `json:"stateStore,omitempty"`
	Template   string `json:"dockerEndpointTemplate"`
	TLSCA      string `json:"tlsCA,omitempty"`
	TLSCert    string `json:"tlsCert,omitempty"`
	TLSKey     string `json:"tlsKey,omitempty"`
	// SSHTemplate renders a containerd master's sshd address; SSH holds
	// the login settings every master shares.
	SSHTemplate      string          `json:"sshAddressTemplate,omitempty"`
	SSH              *sshdial.Config `json:"ssh,omitempty"`
	ContainerdSocket string          `json:"containerdSocket,omitempty"`
}

// Defaults for discovered masters.
const (
	defaultDockerTemplate = "tcp://{{.PrivateIP}}:2376"
	defaultSSHTemplate    = "{{.PrivateIP}}:22"
)

// DiscoveredMaster is a running master and how to restart its etcd-manager.
type DiscoveredMaster struct {
	Target restart.Target `json:"target"`
	IP     string         `json:"ip"`
}

// DiscoverMasters lists the running instances kops tagged as the cluster's
// masters (kops.FindMasters, the one finder) and renders how each one's
// etcd-manager is restarted, through the runtime the input or the cluster
// spec names.
func (a *Restore) DiscoverMasters(ctx context.Context, in DiscoverInput) ([]DiscoveredMaster, error) {
	runtime, err := discoveredRuntime(ctx, in)
	if err != nil {
		return nil, err
	}
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
	out := make([]DiscoveredMaster, len(ms))
	for i, m := range ms {
		t, err := discoveredTarget(m, runtime, in)
		if err != nil {
			return nil, nonRetryable(err)
		}
		out[i] = DiscoveredMaster{Target: t, IP: m.PrivateIP}
	}
	return out, nil
}

// discoveredRuntime is the input's runtime, else the cluster spec's. A
// Docker template with no spec to read keeps what discovery always did
// (Docker); a spec that contradicts the template is refused.
func discoveredRuntime(ctx context.Context, in DiscoverInput) (string, error) {
	if in.Runtime != "" {
		return in.Runtime, nil
	}
	fix := "set discover.runtime (--runtime) to docker, containerd or reboot"
	if in.StateStore == "" {
		if in.Template != "" {
			return restart.RuntimeDocker, nil
		}
		return "", nonRetryable(inputerr.New("discover.runtime", "", "without a state store kopsdr cannot read the cluster spec's container runtime: "+fix))
	}
	store, err := openStore(ctx, in.StateStore)
	if err != nil {
		return "", err
	}
	spec, err := kopsspec.Read(ctx, store, in.Cluster)
	switch {
	case errors.Is(err, kopsspec.ErrNoSpec) && in.Template != "":
		return restart.RuntimeDocker, nil
	case errors.Is(err, kopsspec.ErrNoSpec) || errors.Is(err, kopsspec.ErrBadSpec):
		return "", nonRetryable(inputerr.Wrap(err, "discover.runtime", "", fix))
	case err != nil:
		return "", storeErr(in.StateStore, err)
	}
	rt, err := spec.Runtime()
	if err != nil {
		return "", nonRetryable(inputerr.Wrap(err, "discover.runtime", "", fix))
	}
	if rt == restart.RuntimeContainerd && in.Template != "" {
		return "", nonRetryable(inputerr.New("discover.dockerEndpointTemplate", in.Template,
			"the cluster spec says the masters run containerd: drop the Docker template, or set discover.runtime docker if the spec is wrong"))
	}
	return rt, nil
}

// discoveredTarget renders one master's restart target.
func discoveredTarget(m kops.Master, runtime string, in DiscoverInput) (restart.Target, error) {
	t := restart.Target{Master: cmp.Or(m.NodeName, m.Name)}
	switch runtime {
	case restart.RuntimeDocker:
		ep, err := render("dockerEndpointTemplate", cmp.Or(in.Template, defaultDockerTemplate), m)
		if err != nil {
			return t, err
		}
		t.Endpoint, t.TLSCA, t.TLSCert, t.TLSKey = ep, in.TLSCA, in.TLSCert, in.TLSKey
		if err := t.Validate(); err != nil {
			return t, inputerr.Wrap(fmt.Errorf("gives %q for master %s: %w", ep, m.Name, err), "dockerEndpointTemplate", in.Template, "render a Docker endpoint such as "+defaultDockerTemplate)
		}
	case restart.RuntimeContainerd:
		addr, err := render("sshAddressTemplate", cmp.Or(in.SSHTemplate, defaultSSHTemplate), m)
		if err != nil {
			return t, err
		}
		var login sshdial.Config
		if in.SSH != nil {
			login = *in.SSH
		}
		t.Runtime, t.Endpoint = restart.RuntimeContainerd, cmp.Or(in.ContainerdSocket, restart.DefaultContainerdSocket)
		t.SSH = restart.SSHConfig(addr, login)
	case restart.RuntimeReboot:
		t.Runtime, t.InstanceID, t.Region = restart.RuntimeReboot, m.InstanceID, in.Region
	default:
		return t, inputerr.New("discover.runtime", runtime, "use docker, containerd or reboot")
	}
	return t, nil
}

// render executes a text/template over a discovered master.
func render(field, tmpl string, m kops.Master) (string, error) {
	fix := "use a Go template over the master (fields: PrivateIP, NodeName, Name, InstanceID, AvailabilityZone)"
	t, err := template.New(field).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", inputerr.Wrap(err, field, tmpl, fix)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, m); err != nil {
		return "", inputerr.Wrap(err, field, tmpl, fix)
	}
	return b.String(), nil
}
