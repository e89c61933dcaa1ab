// Package masters finds a kops cluster's live masters: the instances whose
// etcd-manager containers a restore restarts and whose IPs the master
// lease clean-up keeps.
package masters

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/restart"
)

// Master is one running master instance.
type Master struct {
	InstanceID       string
	Name             string // the Name tag, or the instance id without one
	NodeName         string // private DNS name: the kubelet's node name on kops/AWS
	PrivateIP        string
	AvailabilityZone string
}

// The tags kops puts on masters. Legacy kops: KubernetesCluster=<cluster>
// and k8s.io/role/master=1; current kops adds
// kubernetes.io/cluster/<cluster>=owned and k8s.io/role/control-plane=1.
const (
	tagLegacyCluster    = "KubernetesCluster"
	tagClusterPrefix    = "kubernetes.io/cluster/"
	tagRoleMaster       = "k8s.io/role/master"
	tagRoleControlPlane = "k8s.io/role/control-plane"
)

// pageSize is DescribeInstances' MaxResults: a master query returns few
// instances, but an account may hold many clusters.
const pageSize = 100

// DiscoverEC2 returns the running masters of cluster, sorted by zone and
// name. It asks EC2 for running instances that carry a master role tag and
// keeps those whose cluster tag (either style) names cluster: EC2 filters
// cannot OR two tag keys, and the role tag is the more selective of the
// two for one query.
func DiscoverEC2(ctx context.Context, c *ec2.Client, cluster string) ([]Master, error) {
	if cluster == "" {
		return nil, inputerr.New("cluster", "", "give the kops cluster name, e.g. k8s.example.com")
	}
	in := &ec2.DescribeInstancesInput{
		Filters: []types.Filter{
			{Name: aws.String("instance-state-name"), Values: []string{"running"}},
			{Name: aws.String("tag-key"), Values: []string{tagRoleMaster, tagRoleControlPlane}},
		},
		MaxResults: aws.Int32(pageSize),
	}
	var out []Master
	p := ec2.NewDescribeInstancesPaginator(c, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("find masters of %s: DescribeInstances: %w", cluster, err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				if m, ok := master(inst, cluster); ok {
					out = append(out, m)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Master) int {
		return cmp.Or(cmp.Compare(a.AvailabilityZone, b.AvailabilityZone), cmp.Compare(a.Name, b.Name), cmp.Compare(a.InstanceID, b.InstanceID))
	})
	return out, nil
}

// master checks one instance again in full (the filter only narrowed the
// listing) and converts it.
func master(inst types.Instance, cluster string) (Master, bool) {
	tags := map[string]string{}
	for _, t := range inst.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	ours := tags[tagLegacyCluster] == cluster || tags[tagClusterPrefix+cluster] == "owned"
	isMaster := tags[tagRoleMaster] == "1" || tags[tagRoleControlPlane] == "1"
	running := inst.State != nil && inst.State.Name == types.InstanceStateNameRunning
	if !ours || !isMaster || !running {
		return Master{}, false
	}
	m := Master{
		InstanceID: aws.ToString(inst.InstanceId),
		Name:       cmp.Or(tags["Name"], aws.ToString(inst.InstanceId)),
		NodeName:   aws.ToString(inst.PrivateDnsName),
		PrivateIP:  aws.ToString(inst.PrivateIpAddress),
	}
	if inst.Placement != nil {
		m.AvailabilityZone = aws.ToString(inst.Placement.AvailabilityZone)
	}
	return m, true
}

// IPs returns the masters' private IPs, the live set for the lease clean-up.
func IPs(ms []Master) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.PrivateIP)
	}
	return out
}

// DockerEndpoints builds each master's restart target from a text/template
// over Master, e.g. "tcp://{{.PrivateIP}}:2376". Target.Master is the node
// name (falling back to Name), which narrows the container match and names
// the master in messages. TLS paths are left for the caller to fill in.
func DockerEndpoints(ms []Master, tmpl string) ([]restart.Target, error) {
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

// NewEC2Client builds an EC2 client from the AWS default credential chain.
// endpoint, if set, overrides where requests go (a VPC endpoint, or a fake
// in tests); without it the SDK itself honours AWS_ENDPOINT_URL_EC2 and
// AWS_ENDPOINT_URL. region "" means the chain's region (AWS_REGION, the
// shared config).
func NewEC2Client(ctx context.Context, region, endpoint string) (*ec2.Client, error) {
	if endpoint != "" {
		if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, inputerr.New("ec2Endpoint", endpoint, "give an EC2 endpoint URL such as https://ec2.us-east-1.amazonaws.com, or leave it empty")
		}
	}
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, inputerr.New("region", "", "give the cluster's AWS region, e.g. us-east-1 (or set AWS_REGION on the worker)")
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}
