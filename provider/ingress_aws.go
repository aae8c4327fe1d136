package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
)

// ingressAWS manages the AWS side of an ingress: its frontend security group
// and its rules there and on the node group. Rules it owns carry the
// description ruleOwner(namespace, name); in the frontend group every rule is
// its own.
type ingressAWS struct {
	ec2 *ec2.Client
	elb *elbv2.Client
}

const ingressOwnerTag = "telemetry-platform.io/ingress"

func ruleOwner(namespace, name string) string { return ingressOwnerTag + "=" + namespace + "/" + name }

func frontendGroupName(namespace, name string) string {
	return "telemetry-nlb-" + namespace + "-" + name
}

// vpcOf returns the VPC of the node security group and its IPv4 CIDR blocks.
func (a ingressAWS) vpcOf(ctx context.Context, nodeSG string) (string, []string, error) {
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{nodeSG}})
	if err != nil {
		return "", nil, fmt.Errorf("describing the node security group %s: %w", nodeSG, err)
	}
	if len(out.SecurityGroups) != 1 {
		return "", nil, fmt.Errorf("node security group %s not found", nodeSG)
	}
	vpcID := aws.ToString(out.SecurityGroups[0].VpcId)
	cidrs, err := awsnlb.VPCCIDRs(ctx, a.ec2, vpcID)
	return vpcID, cidrs, err
}

// ensureFrontend returns the ingress's frontend group: the one in state if it
// still exists, else one tagged for the ingress in the VPC (a retry after a
// partial apply), else a new one.
func (a ingressAWS) ensureFrontend(ctx context.Context, namespace, name, vpcID, known string) (string, error) {
	if known != "" {
		out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{known}})
		if err == nil && len(out.SecurityGroups) == 1 {
			return known, nil
		}
		if err != nil && !isAWSCode(err, "InvalidGroup.NotFound") {
			return "", fmt.Errorf("describing frontend security group %s: %w", known, err)
		}
	}
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}},
		{Name: aws.String("tag:" + ingressOwnerTag), Values: []string{namespace + "/" + name}},
	}})
	if err != nil {
		return "", fmt.Errorf("looking for the frontend security group: %w", err)
	}
	if len(out.SecurityGroups) > 0 {
		return aws.ToString(out.SecurityGroups[0].GroupId), nil
	}
	created, err := a.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(frontendGroupName(namespace, name)),
		Description: aws.String("NLB frontend of " + namespace + "/" + name + " (telemetry_nlb_ingress; per-source filtering by Calico)"),
		VpcId:       aws.String(vpcID),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{
			{Key: aws.String("Name"), Value: aws.String(frontendGroupName(namespace, name))},
			{Key: aws.String(ingressOwnerTag), Value: aws.String(namespace + "/" + name)},
			{Key: aws.String(annotations.ManagedBy), Value: aws.String(annotations.ProviderManager)},
		}}},
	})
	if err != nil {
		return "", fmt.Errorf("creating the frontend security group: %w", err)
	}
	return aws.ToString(created.GroupId), nil
}

// deleteFrontend deletes the group, retrying while the NLB still uses it (the
// AWS Load Balancer Controller deletes the NLB after the Service is gone).
func (a ingressAWS) deleteFrontend(ctx context.Context, id string) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = a.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
		switch {
		case last == nil, isAWSCode(last, "InvalidGroup.NotFound"):
			return true, nil
		case isAWSCode(last, "DependencyViolation"):
			return false, nil
		default:
			return false, last
		}
	})
	if err != nil {
		if last != nil && isAWSCode(last, "DependencyViolation") {
			return fmt.Errorf("frontend security group %s is still in use (is the NLB deleted? the AWS Load Balancer Controller "+
				"removes it after the Service): %w", id, last)
		}
		return fmt.Errorf("deleting frontend security group %s: %w", id, errors.Join(err, last))
	}
	return nil
}

// actualRules reads the rules the ingress owns, mapped back to symbolic
// sources ("frontend", "vpc") so they compare with desiredRules.
func (a ingressAWS) actualRules(ctx context.Context, owner, frontendID, nodeID string, vpcCIDRs []string) ([]sgRule, error) {
	ids := []string{nodeID}
	if frontendID != "" {
		ids = append(ids, frontendID)
	}
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: ids})
	if err != nil && frontendID != "" && isAWSCode(err, "InvalidGroup.NotFound") {
		// The frontend group was deleted outside Terraform: read the node group alone.
		out, err = a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{nodeID}})
	}
	if err != nil {
		return nil, fmt.Errorf("describing security groups %v: %w", ids, err)
	}
	var rules []sgRule
	add := func(r sgRule) {
		if !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	for _, g := range out.SecurityGroups {
		group, all := "node", false
		if aws.ToString(g.GroupId) == frontendID {
			group, all = "frontend", true
		}
		for _, p := range g.IpPermissions {
			base := sgRule{Group: group, Protocol: strings.ToLower(aws.ToString(p.IpProtocol)),
				From: aws.ToInt32(p.FromPort), To: aws.ToInt32(p.ToPort)}
			for _, r := range p.IpRanges {
				if all || aws.ToString(r.Description) == owner {
					rule := base
					rule.Source = aws.ToString(r.CidrIp)
					if group == "node" && slices.Contains(vpcCIDRs, rule.Source) && aws.ToString(r.Description) == owner {
						rule.Source = sourceVPC
					}
					add(rule)
				}
			}
			for _, r := range p.Ipv6Ranges {
				if all || aws.ToString(r.Description) == owner {
					rule := base
					rule.Source = aws.ToString(r.CidrIpv6)
					add(rule)
				}
			}
			for _, r := range p.UserIdGroupPairs {
				if all || aws.ToString(r.Description) == owner {
					rule := base
					rule.Source = aws.ToString(r.GroupId)
					if rule.Source == frontendID {
						rule.Source = sourceFrontend
					}
					add(rule)
				}
			}
		}
	}
	return rules, nil
}

// reconcileRules adds the desired rules that are missing and revokes the
// owned rules that are not desired.
func (a ingressAWS) reconcileRules(ctx context.Context, owner, frontendID, nodeID string, vpcCIDRs []string, desired []sgRule) error {
	actual, err := a.actualRules(ctx, owner, frontendID, nodeID, vpcCIDRs)
	if err != nil {
		return err
	}
	for _, r := range actual {
		if !slices.Contains(desired, r) {
			if err := a.changeRule(ctx, false, owner, frontendID, nodeID, vpcCIDRs, r); err != nil {
				return err
			}
		}
	}
	for _, r := range desired {
		if !slices.Contains(actual, r) {
			if err := a.changeRule(ctx, true, owner, frontendID, nodeID, vpcCIDRs, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// revokeUnwanted revokes the owned rules that are not desired and adds
// nothing: the narrowing half of reconcileRules, safe before the Service
// changes.
func (a ingressAWS) revokeUnwanted(ctx context.Context, owner, frontendID, nodeID string, vpcCIDRs []string, desired []sgRule) error {
	actual, err := a.actualRules(ctx, owner, frontendID, nodeID, vpcCIDRs)
	if err != nil {
		return err
	}
	keep := slices.DeleteFunc(actual, func(r sgRule) bool { return !slices.Contains(desired, r) })
	return a.reconcileRules(ctx, owner, frontendID, nodeID, vpcCIDRs, keep)
}

func (a ingressAWS) changeRule(ctx context.Context, authorize bool, owner, frontendID, nodeID string, vpcCIDRs []string, r sgRule) error {
	group := nodeID
	if r.Group == "frontend" {
		group = frontendID
	}
	perm := ec2types.IpPermission{IpProtocol: aws.String(r.Protocol), FromPort: aws.Int32(r.From), ToPort: aws.Int32(r.To)}
	switch {
	case r.Source == sourceFrontend:
		perm.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(frontendID), Description: aws.String(owner)}}
	case r.Source == sourceVPC:
		for _, c := range vpcCIDRs {
			perm.IpRanges = append(perm.IpRanges, ec2types.IpRange{CidrIp: aws.String(c), Description: aws.String(owner)})
		}
	case strings.Contains(r.Source, ":"):
		perm.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.Source), Description: aws.String(owner)}}
	case strings.HasPrefix(r.Source, "sg-"):
		perm.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(r.Source)}}
	default:
		perm.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.Source), Description: aws.String(owner)}}
	}
	var err error
	if authorize {
		_, err = a.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{perm}})
		if isAWSCode(err, "InvalidPermission.Duplicate") {
			err = nil
		}
	} else {
		_, err = a.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{perm}})
		if isAWSCode(err, "InvalidPermission.NotFound") {
			err = nil
		}
	}
	if err != nil {
		verb := "adding"
		if !authorize {
			verb = "revoking"
		}
		return fmt.Errorf("%s security-group rule %q on %s: %w", verb, r, group, err)
	}
	return nil
}

// findLoadBalancer finds the NLB by the DNS name in the Service's status;
// nil when no load balancer has that name (yet).
func (a ingressAWS) findLoadBalancer(ctx context.Context, dnsName string) (*awsnlb.LoadBalancer, error) {
	return awsnlb.Find(ctx, a.elb, a.ec2, dnsName)
}

func isAWSCode(err error, code string) bool {
	var ae smithy.APIError
	return err != nil && errors.As(err, &ae) && ae.ErrorCode() == code
}
