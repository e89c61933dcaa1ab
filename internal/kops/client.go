package kops

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/localonly"
)

// LocalOnly reports whether EC2 traffic must stay on this machine (never
// the instance metadata service, only a loopback endpoint): in a test
// binary, or in local-only mode (localonly.Env, which --dev sets).
func LocalOnly() bool { return localonly.On() || testing.Testing() }

// NewEC2Client builds the EC2 client every kopsdr EC2 caller uses, from the
// AWS default credential chain. endpoint, if set, overrides where requests
// go (a VPC endpoint, or a fake in tests); else AWS_ENDPOINT_URL_EC2 or
// AWS_ENDPOINT_URL does. region "" means the chain's region (AWS_REGION,
// the shared config). opts are extra SDK load options (tests give an HTTP
// client).
//
// The instance metadata service (169.254.169.254) is never asked when the
// endpoint is on loopback or when LocalOnly: then missing credentials are a
// clear error here rather than a metadata probe at the first request. In
// LocalOnly mode an endpoint that is not loopback, or none (the public AWS
// endpoint), is refused.
func NewEC2Client(ctx context.Context, region, endpoint string, opts ...func(*config.LoadOptions) error) (*ec2.Client, error) {
	field := "ec2Endpoint"
	if endpoint == "" && !strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		field = "AWS_ENDPOINT_URL_EC2"
		endpoint = cmp.Or(os.Getenv("AWS_ENDPOINT_URL_EC2"), os.Getenv("AWS_ENDPOINT_URL"))
	}
	loopback := false
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, inputerr.New(field, endpoint, "give an EC2 endpoint URL such as https://ec2.us-east-1.amazonaws.com, or leave it empty")
		}
		loopback = isLoopback(u.Hostname())
	}
	local := LocalOnly()
	if local && !loopback {
		return nil, inputerr.New(field, endpoint, "tests and dev mode never talk to AWS: point AWS_ENDPOINT_URL_EC2 at a local EC2 "+
			"on loopback, e.g. test/fakeec2's http://127.0.0.1:<port>")
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	noIMDS := local || loopback
	if noIMDS {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, inputerr.New("region", "", "give the cluster's AWS region, e.g. us-east-1 (or set AWS_REGION on the worker)")
	}
	if noIMDS {
		// Resolve now, so that no credentials is this error and not a
		// failed request naming the disabled metadata client.
		if cfg.Credentials == nil {
			return nil, noCredentials(endpoint, nil)
		}
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			return nil, noCredentials(endpoint, err)
		}
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

func noCredentials(endpoint string, err error) error {
	if err == nil {
		err = fmt.Errorf("no AWS credentials configured")
	}
	return inputerr.Wrap(err, "credentials", "", "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the EC2 endpoint "+
		endpoint+": with a local endpoint, in tests and in dev mode the instance metadata service is never asked")
}

// isLoopback reports whether host is this machine: localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
