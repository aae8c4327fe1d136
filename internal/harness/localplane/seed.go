package localplane

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The emulated account: fixed names so tests and the demo can print them.
const (
	Region      = "us-east-1"
	ClusterName = "localplane"
	VPCCIDR     = "10.0.0.0/16"
	// AccessKeyID and SecretAccessKey are moto's; any value is accepted.
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
)

// Subnet is a seeded subnet, tagged for internet-facing and internal load
// balancers alike.
type Subnet struct {
	ID, CIDR, AZ string
}

// Instance is a seeded EC2 instance standing in for a node, and its Node.
type Instance struct {
	ID, AZ, PrivateIP, NodeName, ProviderID string
}

// AWS describes the account seeded in moto.
type AWS struct {
	Endpoint            string
	Region              string
	ClusterName         string
	VPCID               string
	VPCCIDR             string
	Subnets             []Subnet
	NodeSecurityGroupID string
	Instances           []Instance
	// Key signs the calls (empty: AccessKeyID and SecretAccessKey, which
	// moto accepts until EnforceIAM).
	Key Credentials
}

// Credentials are an access key.
type Credentials struct {
	AccessKeyID, SecretAccessKey string
}

// key is the access key the calls are signed with.
func (a AWS) key() Credentials {
	if a.Key.AccessKeyID == "" {
		return Credentials{AccessKeyID, SecretAccessKey}
	}
	return a.Key
}

// As is the account reached with another access key.
func (a AWS) As(key Credentials) AWS {
	a.Key = key
	return a
}

// Config is an SDK configuration that reaches the emulated account.
func (a AWS) Config() aws.Config {
	return aws.Config{
		Region:       a.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(a.key().AccessKeyID, a.key().SecretAccessKey, ""),
		BaseEndpoint: aws.String(a.Endpoint),
	}
}

var subnetPlan = []Subnet{
	{CIDR: "10.0.0.0/20", AZ: Region + "a"},
	{CIDR: "10.0.16.0/20", AZ: Region + "b"},
	{CIDR: "10.0.32.0/20", AZ: Region + "c"},
}

func tagSpec(rt ec2types.ResourceType, kv ...string) []ec2types.TagSpecification {
	var ts []ec2types.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		ts = append(ts, ec2types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return []ec2types.TagSpecification{{ResourceType: rt, Tags: ts}}
}

// seedAccount creates a VPC with a subnet in each of three zones, a node
// security group and nodes instances spread over the zones, tagged the way
// EKS and the AWS Load Balancer Controller expect.
func seedAccount(ctx context.Context, endpoint string, nodes int) (AWS, error) {
	a := AWS{Endpoint: endpoint, Region: Region, ClusterName: ClusterName, VPCCIDR: VPCCIDR}
	ec := ec2.NewFromConfig(a.Config())
	clusterTag := "kubernetes.io/cluster/" + ClusterName

	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{
		CidrBlock:         aws.String(VPCCIDR),
		TagSpecifications: tagSpec(ec2types.ResourceTypeVpc, "Name", ClusterName, clusterTag, "owned"),
	})
	if err != nil {
		return a, fmt.Errorf("CreateVpc: %w", err)
	}
	a.VPCID = aws.ToString(vpc.Vpc.VpcId)

	for _, sn := range subnetPlan {
		out, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(sn.CIDR), AvailabilityZone: aws.String(sn.AZ),
			TagSpecifications: tagSpec(ec2types.ResourceTypeSubnet,
				"Name", ClusterName+"-"+sn.AZ, clusterTag, "shared",
				"kubernetes.io/role/elb", "1", "kubernetes.io/role/internal-elb", "1"),
		})
		if err != nil {
			return a, fmt.Errorf("CreateSubnet %s: %w", sn.CIDR, err)
		}
		sn.ID = aws.ToString(out.Subnet.SubnetId)
		a.Subnets = append(a.Subnets, sn)
	}

	sg, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:         aws.String(ClusterName + "-node"),
		Description:       aws.String("EKS nodes of " + ClusterName),
		VpcId:             vpc.Vpc.VpcId,
		TagSpecifications: tagSpec(ec2types.ResourceTypeSecurityGroup, clusterTag, "owned"),
	})
	if err != nil {
		return a, fmt.Errorf("CreateSecurityGroup: %w", err)
	}
	a.NodeSecurityGroupID = aws.ToString(sg.GroupId)

	for i := 0; i < nodes; i++ {
		sn := a.Subnets[i%len(a.Subnets)]
		out, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeM5Large,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			SubnetId: aws.String(sn.ID), SecurityGroupIds: []string{a.NodeSecurityGroupID},
			TagSpecifications: tagSpec(ec2types.ResourceTypeInstance, clusterTag, "owned"),
		})
		if err != nil {
			return a, fmt.Errorf("RunInstances: %w", err)
		}
		inst := out.Instances[0]
		id := aws.ToString(inst.InstanceId)
		a.Instances = append(a.Instances, Instance{
			ID: id, AZ: sn.AZ, PrivateIP: aws.ToString(inst.PrivateIpAddress),
			NodeName:   aws.ToString(inst.PrivateDnsName),
			ProviderID: fmt.Sprintf("aws:///%s/%s", sn.AZ, id),
		})
	}
	return a, nil
}

// registerNodes creates a Node per seeded instance, as kubelet on EKS would.
func (p *Plane) registerNodes(ctx context.Context) error {
	c, err := p.Client()
	if err != nil {
		return err
	}
	for _, inst := range p.AWS.Instances {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: inst.NodeName, Labels: map[string]string{
				"kubernetes.io/hostname":           inst.NodeName,
				"topology.kubernetes.io/region":    Region,
				"topology.kubernetes.io/zone":      inst.AZ,
				"node.kubernetes.io/instance-type": string(ec2types.InstanceTypeM5Large),
			}},
			Spec: corev1.NodeSpec{ProviderID: inst.ProviderID},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: inst.PrivateIP},
				{Type: corev1.NodeInternalDNS, Address: inst.NodeName},
				{Type: corev1.NodeHostName, Address: inst.NodeName},
			},
				// Ready, as kubelet reports it: the AWS Load Balancer
				// Controller registers only Ready nodes as instance targets,
				// and writes backend rules only for the targets' groups.
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
					Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}},
		}
		if err := c.Create(ctx, node); err != nil {
			return err
		}
	}
	return nil
}
