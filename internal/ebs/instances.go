package ebs

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// InstanceStates returns the EC2 state (running, stopped...) of each of the
// instances that exist; a missing id is simply absent from the map.
func InstanceStates(ctx context.Context, c *ec2.Client, ids []string) (map[string]string, error) {
	states := map[string]string{}
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{Filter("instance-id", ids...)}, MaxResults: aws.Int32(1000),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				if in.State != nil {
					states[str(in.InstanceId)] = string(in.State.Name)
				}
			}
		}
	}
	return states, nil
}
