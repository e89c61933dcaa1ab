package restart

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kopsdr/kopsdr/internal/ebs"
)

// RebootTag marks an instance that a restore rebooted; its value is the
// operation (WithOperation) that did it. EC2 keeps no trace of a reboot,
// so the tag is what makes the reboot happen at most once per operation.
const RebootTag = "kopsdr.io/rebooted-by"

// NewReboot returns a Restarter for masters without host access: it
// restarts etcd-manager by rebooting the master's EC2 instance
// (RebootInstances), and etcd-manager, a static pod, starts with the
// kubelet at boot. client gives an EC2 client for a region.
//
// The "container" it finds and replaces is the instance. A reboot cannot
// be proven from EC2 (the launch time stays), so Replace tags the instance
// with the operation before it reboots, and a retry that finds the tag
// does not reboot again: at most once per operation, even if the worker
// dies between the tag and the reboot. The wait step then proves that
// etcd-manager restored with every member, and a member left behind gets
// one more reboot under an operation of its own.
func NewReboot(client func(ctx context.Context, region string) (*ec2.Client, error)) Restarter {
	return &rebootRestarter{client: client}
}

type rebootRestarter struct {
	client func(ctx context.Context, region string) (*ec2.Client, error)
}

type operationKey struct{}

// WithOperation names the operation whose restarts run under ctx (a
// restore's workflow run, or its repair); reboots are done once per
// operation and instance.
func WithOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

func operationOf(ctx context.Context) string {
	op, _ := ctx.Value(operationKey{}).(string)
	return op
}

func (r *rebootRestarter) instance(ctx context.Context, t Target) (*ec2.Client, types.Instance, error) {
	if t.InstanceID == "" || t.Region == "" {
		return nil, types.Instance{}, fmt.Errorf("%s: runtime reboot needs the EC2 instance id and region", masterName(t.Master))
	}
	c, err := r.client(ctx, t.Region)
	if err != nil {
		return nil, types.Instance{}, err
	}
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{t.InstanceID}})
	if err != nil {
		if ebs.IsNotFound(err) {
			return nil, types.Instance{}, &NotFoundError{Master: t.Master, Endpoint: "EC2 " + t.Region, Runtime: RuntimeReboot, Prefix: t.InstanceID}
		}
		return nil, types.Instance{}, &UnreachableError{Master: t.Master, Endpoint: t.Region, Runtime: RuntimeReboot, Err: err}
	}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			if aws.ToString(in.InstanceId) == t.InstanceID {
				return c, in, nil
			}
		}
	}
	return nil, types.Instance{}, &NotFoundError{Master: t.Master, Endpoint: "EC2 " + t.Region, Runtime: RuntimeReboot, Prefix: t.InstanceID}
}

// asContainer shows an instance where the other runtimes show containers.
func asContainer(in types.Instance) Container {
	state := ""
	if in.State != nil {
		state = string(in.State.Name)
	}
	launched := aws.ToTime(in.LaunchTime)
	return Container{
		ID: aws.ToString(in.InstanceId), Name: "instance " + aws.ToString(in.InstanceId),
		State: state, Running: state == string(types.InstanceStateNameRunning), Created: launched, StartedAt: launched,
	}
}

func rebootedBy(in types.Instance) string {
	for _, tag := range in.Tags {
		if aws.ToString(tag.Key) == RebootTag {
			return aws.ToString(tag.Value)
		}
	}
	return ""
}

// Find returns the master's instance, whichever etcd cluster is asked for.
func (r *rebootRestarter) Find(ctx context.Context, t Target, _ string) ([]Container, error) {
	_, in, err := r.instance(ctx, t)
	if err != nil {
		return nil, err
	}
	return []Container{asContainer(in)}, nil
}

// Restart is Replace: reboot targets are newer than the clock-based path.
func (r *rebootRestarter) Restart(ctx context.Context, t Target, etcdCluster string, _ time.Time) (Restarted, error) {
	return r.Replace(ctx, t, etcdCluster, nil)
}

// Replace reboots the master's instance once per operation. Both etcd
// clusters of one master share the reboot: the second call finds the
// tag the first one set (or waits for it at the kill gate).
func (r *rebootRestarter) Replace(ctx context.Context, t Target, etcdCluster string, _ []Container) (Restarted, error) {
	arrive, wait := gateOf(ctx)
	defer arrive()
	op := operationOf(ctx)
	res := Restarted{Master: t.Master, EtcdCluster: etcdCluster}
	c, in, err := r.instance(ctx, t)
	if err != nil {
		return res, err
	}
	res.Before = asContainer(in)
	res.After = res.Before
	proof := fmt.Sprintf("instance %s tagged %s=%s before RebootInstances; the wait step proves etcd-manager restarted", t.InstanceID, RebootTag, op)
	if op != "" && rebootedBy(in) == op {
		res.Action, res.Proof = ActionAlreadyRestarted, proof
		return res, nil
	}
	if !res.Before.Running {
		return res, fmt.Errorf("%s: instance %s is %s, not running: start it (aws ec2 start-instances) or wait until it settles, then retry", masterName(t.Master), t.InstanceID, res.Before.State)
	}
	if err := wait(); err != nil {
		return res, err
	}
	err = onceFor(ctx, "reboot/"+t.InstanceID, func() error { return reboot(ctx, c, t.InstanceID, op) })
	if err != nil {
		return res, fmt.Errorf("%s: reboot instance %s: %w", masterName(t.Master), t.InstanceID, err)
	}
	res.Action, res.Proof, res.Killed = ActionKilled, proof, t.InstanceID
	return res, nil
}

// reboot tags, then reboots. If EC2 refuses the reboot, the tag goes so
// that a retry reboots; if the answer is lost, the tag stays and the
// instance is not rebooted twice.
func reboot(ctx context.Context, c *ec2.Client, id, op string) error {
	if op != "" {
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []types.Tag{{Key: aws.String(RebootTag), Value: aws.String(op)}}}); err != nil {
			return err
		}
	}
	err := ebs.RebootInstances(ctx, c, []string{id})
	if err != nil && op != "" && ebs.ErrorCode(err) != "" {
		_, _ = c.DeleteTags(context.WithoutCancel(ctx), &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []types.Tag{{Key: aws.String(RebootTag), Value: aws.String(op)}}})
	}
	return err
}

// LogTail has nothing to read without host access.
func (r *rebootRestarter) LogTail(_ context.Context, t Target, etcdCluster string, _ int) (string, error) {
	return "", fmt.Errorf("%s: no logs without host access; read /var/log/etcd.log (or journalctl -u kubelet) on instance %s, or its console output: aws ec2 get-console-output --instance-id %s", masterName(t.Master), t.InstanceID, t.InstanceID)
}
