package kops

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Master is one master instance of a cluster.
type Master struct {
	InstanceID       string `json:"instanceId"`
	Name             string `json:"name"`     // the Name tag, or the instance id without one
	NodeName         string `json:"nodeName"` // private DNS name: the kubelet's node name on kops/AWS
	PrivateIP        string `json:"privateIp"`
	AvailabilityZone string `json:"availabilityZone"`
	State            string `json:"state"` // EC2 instance state: running, stopped...
}

// Instance states FindMasters is asked for.
var (
	// Running is what the etcd-manager restore restarts containers on.
	Running = []string{"running"}
	// NotTerminated is what a volume restore may reboot or start.
	NotTerminated = []string{"pending", "running", "stopping", "stopped"}
)

// pageSize is DescribeInstances' MaxResults: a master query returns few
// instances, but an account may hold many clusters.
const pageSize = 100

// FindMasters returns the masters of cluster (IsMaster) in one of states,
// sorted by zone, name and id. It asks EC2 for instances in those states
// that carry a role tag, every page, and checks each one in full: EC2
// filters cannot OR two tag keys with their values, and the role tag is
// the more selective of the two for one query.
func FindMasters(ctx context.Context, c *ec2.Client, cluster string, states []string) ([]Master, error) {
	if cluster == "" {
		return nil, inputerr.New("cluster", "", "give the kops cluster name, e.g. k8s.example.com")
	}
	in := &ec2.DescribeInstancesInput{
		Filters: []types.Filter{
			{Name: aws.String("instance-state-name"), Values: states},
			{Name: aws.String("tag-key"), Values: []string{TagRoleMaster, TagRoleControlPlane}},
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
				if m, ok := master(inst, cluster, states); ok {
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

// master checks one instance again in full (the filters only narrowed the
// listing) and converts it.
func master(inst types.Instance, cluster string, states []string) (Master, bool) {
	tags := make(map[string]string, len(inst.Tags))
	for _, t := range inst.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	m := Master{
		InstanceID: aws.ToString(inst.InstanceId),
		Name:       cmp.Or(tags[TagName], aws.ToString(inst.InstanceId)),
		NodeName:   aws.ToString(inst.PrivateDnsName),
		PrivateIP:  aws.ToString(inst.PrivateIpAddress),
	}
	if inst.State != nil {
		m.State = string(inst.State.Name)
	}
	if inst.Placement != nil {
		m.AvailabilityZone = aws.ToString(inst.Placement.AvailabilityZone)
	}
	return m, IsMaster(tags, cluster) && slices.Contains(states, m.State)
}
