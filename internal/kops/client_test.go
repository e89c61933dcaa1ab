package kops_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/kopsdr/kopsdr/internal/kops"
	"github.com/kopsdr/kopsdr/test/fakeec2"
)

// guard is an HTTP client for the SDK that records every address it dials
// and refuses any that is not loopback: a request meant for AWS or the
// instance metadata service never leaves the machine, and is seen.
type guard struct {
	mu    sync.Mutex
	dials []string
}

func (g *guard) client() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Control = func(network, addr string, _ syscall.RawConn) error {
			g.mu.Lock()
			g.dials = append(g.dials, addr)
			g.mu.Unlock()
			host, _, _ := net.SplitHostPort(addr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return errors.New("test guard: not loopback: " + addr)
			}
			return nil
		}
	})
}

func (g *guard) offLoopback() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, a := range g.dials {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

// noAWSEnv clears every AWS setting: no credentials, region, endpoint or
// shared files, and the metadata service left enabled as on a fresh machine,
// but pointed at a loopback server that counts what reaches it.
func noAWSEnv(t *testing.T) *atomic.Int64 {
	var hits atomic.Int64
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	t.Cleanup(imds.Close)
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_EC2_METADATA_DISABLED",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("HOME", dir)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	return &hits
}

// TestNoTrafficLeavesLoopback: with no AWS configuration at all, building
// the EC2 client and finding masters fail with a clear error naming the
// field and the fix; the instance metadata service is never asked and no
// connection is attempted off loopback.
func TestNoTrafficLeavesLoopback(t *testing.T) {
	s := fakeec2.Start(t)
	s.AddInstance(fakeec2.Instance{Tags: legacy(cluster, "m")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("no credentials, local endpoint", func(t *testing.T) {
		hits := noAWSEnv(t)
		g := &guard{}
		c, err := kops.NewEC2Client(ctx, "us-east-1", s.URL(), config.WithHTTPClient(g.client()))
		if err == nil {
			// Built anyway: the first request is where the chain would
			// fall back to the metadata service.
			_, err = kops.FindMasters(ctx, c, cluster, kops.Running)
		}
		if !isInput(err, "credentials") {
			t.Fatalf("err = %v; want *inputerr.Error on credentials", err)
		}
		if hits.Load() != 0 || len(g.offLoopback()) != 0 {
			t.Fatalf("metadata service asked %d times; dials off loopback: %v", hits.Load(), g.offLoopback())
		}
	})
	t.Run("no region, no endpoint", func(t *testing.T) {
		hits := noAWSEnv(t)
		g := &guard{}
		_, err := kops.NewEC2Client(ctx, "", "", config.WithHTTPClient(g.client()))
		if !isInput(err, "AWS_ENDPOINT_URL_EC2") {
			t.Fatalf("err = %v; want *inputerr.Error on AWS_ENDPOINT_URL_EC2 (tests never use AWS's endpoint)", err)
		}
		if hits.Load() != 0 || len(g.dials) != 0 {
			t.Fatalf("metadata service asked %d times; dials: %v", hits.Load(), g.dials)
		}
	})
	t.Run("public endpoint refused in tests", func(t *testing.T) {
		noAWSEnv(t)
		t.Setenv("AWS_ENDPOINT_URL_EC2", "https://ec2.us-east-1.amazonaws.com")
		if _, err := kops.NewEC2Client(ctx, "us-east-1", ""); !isInput(err, "AWS_ENDPOINT_URL_EC2") {
			t.Fatalf("err = %v; want *inputerr.Error on AWS_ENDPOINT_URL_EC2", err)
		}
	})
	t.Run("credentials in env, discovery stays local", func(t *testing.T) {
		hits := noAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		t.Setenv("AWS_ENDPOINT_URL_EC2", s.URL())
		g := &guard{}
		c, err := kops.NewEC2Client(ctx, "us-east-1", "", config.WithHTTPClient(g.client()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := kops.FindMasters(ctx, c, cluster, kops.Running)
		if err != nil || len(got) != 1 {
			t.Fatalf("FindMasters = %+v, %v", got, err)
		}
		if hits.Load() != 0 || len(g.offLoopback()) != 0 || !slices.ContainsFunc(g.dials, func(a string) bool { return s.URL() == "http://"+a }) {
			t.Fatalf("metadata service asked %d times; dials %v; want only the fake EC2 at %s", hits.Load(), g.dials, s.URL())
		}
	})
}
