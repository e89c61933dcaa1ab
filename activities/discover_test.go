package activities

import (
	"slices"
	"testing"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/internal/restart"
)

func TestDockerTargets(t *testing.T) {
	ms := []kops.Master{
		{InstanceID: "i-0aaaaaaaaaaaaaaaa", Name: "master-a", NodeName: "ip-10-0-1-10.ec2.internal", PrivateIP: "10.0.1.10"},
		{InstanceID: "i-0bbbbbbbbbbbbbbbb", Name: "master-b", PrivateIP: "10.0.2.10"},
	}
	got, err := dockerTargets(ms, "tcp://{{.PrivateIP}}:2376")
	if err != nil {
		t.Fatal(err)
	}
	want := []restart.Target{
		{Master: "ip-10-0-1-10.ec2.internal", Endpoint: "tcp://10.0.1.10:2376"},
		{Master: "master-b", Endpoint: "tcp://10.0.2.10:2376"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dockerTargets = %+v", got)
	}
	for _, bad := range []string{"", "tcp://{{.PrivateIP:2376", "tcp://{{.PublicIP}}:2376", "http://{{.PrivateIP}}:2376", "tcp://{{.PrivateIP}}"} {
		ie, ok := inputerr.As(func() error { _, err := dockerTargets(ms, bad); return err }())
		if !ok || ie.Field != "dockerEndpointTemplate" {
			t.Errorf("template %q: want *inputerr.Error on dockerEndpointTemplate", bad)
		}
	}
}
