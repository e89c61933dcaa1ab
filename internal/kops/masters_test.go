package kops_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/test/fakeec2"
)

const cluster = "k.example.com"

// legacy and current are the master tags of old and current kops.
func legacy(cluster, name string) map[string]string {
	return map[string]string{"KubernetesCluster": cluster, "k8s.io/role/master": "1", "Name": name}
}

func current(cluster string) map[string]string {
	return map[string]string{"kubernetes.io/cluster/" + cluster: "owned", "k8s.io/role/control-plane": "1"}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDiscoverFiltersMasters(t *testing.T) {
	s := fakeec2.Start(t)
	want := []kops.Master{}
	for i, az := range []string{"us-east-1c", "us-east-1a", "us-east-1b"} {
		ip := fmt.Sprintf("10.0.%d.10", i+1)
		name := "master-" + az + ".masters." + cluster
		id := s.AddInstance(fakeec2.Instance{AvailabilityZone: az, PrivateIP: ip, Tags: legacy(cluster, name)})
		want = append(want, kops.Master{InstanceID: id, Name: name, NodeName: "ip-10-0-" + fmt.Sprint(i+1) + "-10.ec2.internal", PrivateIP: ip, AvailabilityZone: az, State: "running"})
	}
	slices.SortFunc(want, func(a, b kops.Master) int { return strings.Compare(a.AvailabilityZone, b.AvailabilityZone) })

	// Not masters of this cluster, or not running.
	s.AddInstance(fakeec2.Instance{State: "stopped", Tags: legacy(cluster, "master-old")})
	s.AddInstance(fakeec2.Instance{State: "terminated", Tags: current(cluster)})
	s.AddInstance(fakeec2.Instance{Tags: map[string]string{"KubernetesCluster": cluster, "k8s.io/role/node": "1", "Name": "nodes"}})
	s.AddInstance(fakeec2.Instance{Tags: map[string]string{"KubernetesCluster": cluster, "k8s.io/role/master": "0"}})
	s.AddInstance(fakeec2.Instance{Tags: legacy("other.example.com", "master-other")})
	s.AddInstance(fakeec2.Instance{Tags: current("other.example.com")})
	s.AddInstance(fakeec2.Instance{Tags: map[string]string{"kubernetes.io/cluster/" + cluster: "shared", "k8s.io/role/control-plane": "1"}})

	got, err := kops.FindMasters(ctxT(t), s.Client(t), cluster, kops.Running)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("FindMasters =\n%+v\nwant\n%+v", got, want)
	}
}

func TestDiscoverCurrentKopsTags(t *testing.T) {
	s := fakeec2.Start(t)
	a := s.AddInstance(fakeec2.Instance{AvailabilityZone: "us-east-1a", PrivateIP: "10.1.0.5", Tags: current(cluster)}) // no Name tag
	tags := current(cluster)
	tags["Name"] = "control-plane-us-east-1b.masters." + cluster
	tags["k8s.io/role/master"] = "1" // kops during the rename sets both
	b := s.AddInstance(fakeec2.Instance{AvailabilityZone: "us-east-1b", PrivateIP: "10.1.1.5", Tags: tags})

	got, err := kops.FindMasters(ctxT(t), s.Client(t), cluster, kops.Running)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].InstanceID != a || got[0].Name != a || got[1].InstanceID != b || got[1].Name != tags["Name"] {
		t.Fatalf("FindMasters = %+v", got)
	}
}

func TestDiscoverPaginates(t *testing.T) {
	s := fakeec2.Start(t)
	// Many masters of other clusters share the account; ours come last.
	for i := range 230 {
		s.AddInstance(fakeec2.Instance{Tags: legacy(fmt.Sprintf("c%d.example.com", i), "m")})
	}
	var ids []string
	for range 3 {
		ids = append(ids, s.AddInstance(fakeec2.Instance{Tags: legacy(cluster, "m")}))
	}
	got, err := kops.FindMasters(ctxT(t), s.Client(t), cluster, kops.Running)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("found %d masters, want 3: %+v", len(got), got)
	}
	for _, m := range got {
		if !slices.Contains(ids, m.InstanceID) {
			t.Errorf("unexpected %s", m.InstanceID)
		}
	}
	// Three pages: the first and two continuations. Counted by token, not
	// by calls: against a fast local server the SDK now and then reads a
	// page from a connection closed under it and retries it (the "use of
	// closed network connection" of aws-sdk-go-v2 #1825/#2737, retried by
	// default since #2949).
	tokens := map[string]bool{}
	for _, c := range s.CallsTo("DescribeInstances") {
		tokens[c.Params.Get("NextToken")] = true
	}
	if len(tokens) != 3 {
		t.Fatalf("pages requested with tokens %v, want the first page and two more", tokens)
	}
}

func TestDiscoverRetriesThrottling(t *testing.T) {
	s := fakeec2.Start(t)
	s.AddInstance(fakeec2.Instance{Tags: legacy(cluster, "m")})
	s.InjectFault(fakeec2.Fault{Action: "DescribeInstances", Code: "RequestLimitExceeded", Times: 2})
	got, err := kops.FindMasters(ctxT(t), s.Client(t), cluster, kops.Running)
	if err != nil || len(got) != 1 {
		t.Fatalf("FindMasters = %+v, %v", got, err)
	}
	calls := s.CallsTo("DescribeInstances")
	if len(calls) < 3 || !calls[0].Injected || !calls[1].Injected || calls[len(calls)-1].Code != "" {
		t.Fatalf("calls: %+v; want two throttled, then success", calls)
	}
}

func TestDiscoverReportsDenied(t *testing.T) {
	s := fakeec2.Start(t)
	s.InjectFault(fakeec2.Fault{Action: "DescribeInstances", Code: "UnauthorizedOperation", Times: fakeec2.Always})
	_, err := kops.FindMasters(ctxT(t), s.Client(t), cluster, kops.Running)
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnauthorizedOperation" || !strings.Contains(err.Error(), cluster) {
		t.Fatalf("err = %v; want UnauthorizedOperation naming the cluster", err)
	}
	if _, err := kops.FindMasters(ctxT(t), s.Client(t), "", kops.Running); !isInput(err, "cluster") {
		t.Fatalf("empty cluster: %v", err)
	}
}

// awsEnv isolates the SDK's default chain from the machine: static keys,
// no shared files, no instance metadata.
func awsEnv(t *testing.T, region string) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_REGION": region, "AWS_DEFAULT_REGION": "",
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_EC2": "",
	} {
		t.Setenv(k, v)
	}
}

func TestNewEC2Client(t *testing.T) {
	s := fakeec2.Start(t)
	s.AddInstance(fakeec2.Instance{Tags: legacy(cluster, "m")})

	t.Run("endpoint argument", func(t *testing.T) {
		awsEnv(t, "")
		c, err := kops.NewEC2Client(ctxT(t), s.Region(), s.URL())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kops.FindMasters(ctxT(t), c, cluster, kops.Running); err != nil || len(got) != 1 {
			t.Fatalf("FindMasters = %+v, %v", got, err)
		}
	})
	t.Run("AWS_ENDPOINT_URL_EC2", func(t *testing.T) {
		awsEnv(t, s.Region())
		t.Setenv("AWS_ENDPOINT_URL_EC2", s.URL())
		c, err := kops.NewEC2Client(ctxT(t), "", "")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kops.FindMasters(ctxT(t), c, cluster, kops.Running); err != nil || len(got) != 1 {
			t.Fatalf("FindMasters = %+v, %v", got, err)
		}
	})
	t.Run("no region", func(t *testing.T) {
		awsEnv(t, "")
		if _, err := kops.NewEC2Client(ctxT(t), "", s.URL()); !isInput(err, "region") {
			t.Fatalf("err = %v; want *inputerr.Error on region", err)
		}
	})
	t.Run("bad endpoint", func(t *testing.T) {
		awsEnv(t, "")
		if _, err := kops.NewEC2Client(ctxT(t), "us-east-1", "ec2.us-east-1.amazonaws.com"); !isInput(err, "ec2Endpoint") {
			t.Fatalf("err = %v; want *inputerr.Error on ec2Endpoint", err)
		}
	})
}

func isInput(err error, field string) bool {
	ie, ok := inputerr.As(err)
	return ok && ie.Field == field
}
