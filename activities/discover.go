package activities

import (
	"bytes"
	"cmp"
	"fmt"
	"text/template"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/restart"
)

// dockerTargets builds each discovered master's restart target from a
// text/template over kops.Master, e.g. "tcp://{{.PrivateIP}}:2376".
// Target.Master is the node name (falling back to Name), which narrows the
// container match and names the master in messages. TLS paths are left for
// the caller to fill in.
func dockerTargets(ms []kops.Master, tmpl string) ([]restart.Target, error) {
	fix := `use a Go template over the master that gives its Docker daemon, e.g. "tcp://{{.PrivateIP}}:2376" (fields: PrivateIP, NodeName, Name, InstanceID, AvailabilityZone)`
	if tmpl == "" {
		return nil, inputerr.New("dockerEndpointTemplate", "", fix)
	}
	t, err := template.New("dockerEndpointTemplate").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, inputerr.Wrap(err, "dockerEndpointTemplate", tmpl, fix)
	}
	out := make([]restart.Target, 0, len(ms))
	for _, m := range ms {
		var b bytes.Buffer
		if err := t.Execute(&b, m); err != nil {
			return nil, inputerr.Wrap(err, "dockerEndpointTemplate", tmpl, fix)
		}
		tg := restart.Target{Master: cmp.Or(m.NodeName, m.Name), Endpoint: b.String()}
		if err := tg.Validate(); err != nil {
			return nil, inputerr.Wrap(fmt.Errorf("gives %q for master %s: %w", tg.Endpoint, m.Name, err), "dockerEndpointTemplate", tmpl, fix)
		}
		out = append(out, tg)
	}
	return out, nil
}
