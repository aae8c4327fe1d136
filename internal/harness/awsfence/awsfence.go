// Package awsfence judges the AWS half of an exporter's path to an NLB with
// instance targets, from the security groups as they are in AWS (moto in
// the tests): the NLB's own groups at the listener, then the node group at
// the NodePort. Calico's half is judged by Felix itself, packet by packet.
//
// What it models: inbound rules by protocol, port range and source (an
// IPv4 or IPv6 CIDR, or a security group, which matches traffic the NLB
// forwards when the NLB has that group); an NLB without security groups
// passes the client through to the node group, which must admit the client
// itself. What it does not: network ACLs, egress rules, prefix lists, and
// the health checks' own path.
package awsfence

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// Fence is one reading of the groups on the path.
type Fence struct {
	// LoadBalancerGroups are the NLB's security groups (none: the NLB has
	// none, and the node group sees the client).
	LoadBalancerGroups []string
	rules              map[string][]ec2types.IpPermission // inbound, by group
	nodeGroup          string
}

// Read reads the NLB's groups and the inbound rules of those and of the
// node group.
func Read(ctx context.Context, ec *ec2.Client, elb *elbv2.Client, loadBalancerARN, nodeGroup string) (*Fence, error) {
	lbs, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{loadBalancerARN}})
	if err != nil {
		return nil, fmt.Errorf("describing the NLB %s: %w", loadBalancerARN, err)
	}
	if len(lbs.LoadBalancers) != 1 {
		return nil, fmt.Errorf("the NLB %s: %d found", loadBalancerARN, len(lbs.LoadBalancers))
	}
	f := &Fence{LoadBalancerGroups: lbs.LoadBalancers[0].SecurityGroups, rules: map[string][]ec2types.IpPermission{}, nodeGroup: nodeGroup}
	ids := append([]string{nodeGroup}, f.LoadBalancerGroups...)
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describing the groups %v: %w", ids, err)
	}
	for _, g := range out.SecurityGroups {
		f.rules[aws.ToString(g.GroupId)] = g.IpPermissions
	}
	return f, nil
}

// Admits says whether a packet from src on protocol ("udp" or "tcp") to the
// listener port, forwarded to the NodePort, passes both hops; when it does
// not, why names the hop that refuses it.
func (f *Fence) Admits(src netip.Addr, protocol string, listenerPort, nodePort int32) (ok bool, why string) {
	protocol = strings.ToLower(protocol)
	if len(f.LoadBalancerGroups) > 0 {
		admitted := slices.ContainsFunc(f.LoadBalancerGroups, func(g string) bool {
			return f.allows(g, src, protocol, listenerPort, nil)
		})
		if !admitted {
			return false, fmt.Sprintf("no rule of the NLB's groups %v admits %s %s/%d", f.LoadBalancerGroups, src, protocol, listenerPort)
		}
		if !f.allows(f.nodeGroup, src, protocol, nodePort, f.LoadBalancerGroups) {
			return false, fmt.Sprintf("the node group %s admits neither the NLB's groups nor %s on %s/%d", f.nodeGroup, src, protocol, nodePort)
		}
		return true, ""
	}
	if !f.allows(f.nodeGroup, src, protocol, nodePort, nil) {
		return false, fmt.Sprintf("the NLB has no group and the node group %s does not admit %s on %s/%d", f.nodeGroup, src, protocol, nodePort)
	}
	return true, ""
}

// allows: a rule of group admits the packet by its source address or, for
// traffic forwarded by an NLB in one of fromGroups, by that group.
func (f *Fence) allows(group string, src netip.Addr, protocol string, port int32, fromGroups []string) bool {
	for _, p := range f.rules[group] {
		proto := aws.ToString(p.IpProtocol)
		if proto != "-1" && proto != protocol {
			continue
		}
		if proto != "-1" && (port < aws.ToInt32(p.FromPort) || port > aws.ToInt32(p.ToPort)) {
			continue
		}
		for _, r := range p.IpRanges {
			if pf, err := netip.ParsePrefix(aws.ToString(r.CidrIp)); err == nil && pf.Contains(src) {
				return true
			}
		}
		for _, r := range p.Ipv6Ranges {
			if pf, err := netip.ParsePrefix(aws.ToString(r.CidrIpv6)); err == nil && pf.Contains(src) {
				return true
			}
		}
		for _, pair := range p.UserIdGroupPairs {
			if slices.Contains(fromGroups, aws.ToString(pair.GroupId)) {
				return true
			}
		}
	}
	return false
}

// PerSourceRules counts the inbound rules in the VPC whose source CIDR
// isPerSource says is one of a per-source model's, leaving out the rules
// described as ownDescription, and names the groups that hold them.
func PerSourceRules(ctx context.Context, ec *ec2.Client, vpcID, ownDescription string, isPerSource func(netip.Prefix) bool) (int, []string, error) {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}}}})
	if err != nil {
		return 0, nil, err
	}
	n := 0
	var groups []string
	for _, g := range out.SecurityGroups {
		before := n
		for _, p := range g.IpPermissions {
			for _, r := range p.IpRanges {
				if pf, err := netip.ParsePrefix(aws.ToString(r.CidrIp)); err == nil && isPerSource(pf) && aws.ToString(r.Description) != ownDescription {
					n++
				}
			}
			for _, r := range p.Ipv6Ranges {
				if pf, err := netip.ParsePrefix(aws.ToString(r.CidrIpv6)); err == nil && isPerSource(pf) && aws.ToString(r.Description) != ownDescription {
					n++
				}
			}
		}
		if n > before {
			groups = append(groups, aws.ToString(g.GroupId))
		}
	}
	return n, groups, nil
}

// Describe lists a group's inbound rules, one a line, for a test's failure
// message.
func Describe(ctx context.Context, ec *ec2.Client, group string) string {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil || len(out.SecurityGroups) != 1 {
		return fmt.Sprintf("group %s: %v", group, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "group %s (%s):\n", group, aws.ToString(out.SecurityGroups[0].GroupName))
	for _, p := range out.SecurityGroups[0].IpPermissions {
		var from []string
		for _, r := range p.IpRanges {
			from = append(from, aws.ToString(r.CidrIp)+" "+aws.ToString(r.Description))
		}
		for _, r := range p.Ipv6Ranges {
			from = append(from, aws.ToString(r.CidrIpv6)+" "+aws.ToString(r.Description))
		}
		for _, r := range p.UserIdGroupPairs {
			from = append(from, aws.ToString(r.GroupId)+" "+aws.ToString(r.Description))
		}
		fmt.Fprintf(&b, "  %s %d-%d from %s\n", aws.ToString(p.IpProtocol), aws.ToInt32(p.FromPort), aws.ToInt32(p.ToPort), strings.Join(from, ", "))
	}
	return b.String()
}
