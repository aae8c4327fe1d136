// Package awsnlb finds what the product needs to know of an NLB the AWS Load
// Balancer Controller provisioned: the load balancer by the DNS name in its
// Service's status, the CIDRs of its subnets (where health checks come from)
// and of its VPC (the default sources of an internal NLB). The provider and
// the nlb-policy controller share it.
package awsnlb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"
)

// LoadBalancer is an NLB as the product reports it.
type LoadBalancer struct {
	ARN, DNSName, VPCID, State string
	// SecurityGroups are the NLB's own groups (none for an NLB created
	// without), IPAddressType ipv4 or dualstack.
	SecurityGroups []string
	IPAddressType  string
	// TargetTypes are the target types of its target groups (instance or
	// ip), empty while the controller has made none; filled by
	// FillTargetTypes (Find does not, to spare the controller a call).
	TargetTypes []string
	// SubnetCIDRs are sorted.
	SubnetCIDRs []string
}

// Hostname is the load balancer DNS name in a Service's status, or "".
func Hostname(svc *corev1.Service) string {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.Hostname != "" {
			return in.Hostname
		}
	}
	return ""
}

// NameFromDNS is the load balancer's name as its DNS name carries it:
// "<name>-<id>.elb.<region>.amazonaws.com", internal ones prefixed
// "internal-" (which no name may start with). ok is false for a name of
// another shape.
func NameFromDNS(dnsName string) (name string, ok bool) {
	label, _, _ := strings.Cut(dnsName, ".")
	label = strings.TrimPrefix(label, "internal-")
	i := strings.LastIndex(label, "-")
	if i <= 0 {
		return "", false
	}
	return label[:i], true
}

// ELBv2API is the part of ELBv2 this package reads; *elbv2.Client has it,
// and a fake in a table test can.
type ELBv2API interface {
	DescribeLoadBalancers(context.Context, *elbv2.DescribeLoadBalancersInput, ...func(*elbv2.Options)) (*elbv2.DescribeLoadBalancersOutput, error)
	DescribeTargetGroups(context.Context, *elbv2.DescribeTargetGroupsInput, ...func(*elbv2.Options)) (*elbv2.DescribeTargetGroupsOutput, error)
}

// SubnetsAPI reads subnets (an NLB's subnet CIDRs); *ec2.Client has it.
type SubnetsAPI interface {
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
}

// VPCsAPI reads VPCs (their CIDR blocks); *ec2.Client has it.
type VPCsAPI interface {
	DescribeVpcs(context.Context, *ec2.DescribeVpcsInput, ...func(*ec2.Options)) (*ec2.DescribeVpcsOutput, error)
}

// Find returns the load balancer with the DNS name, or nil when none has it
// (yet). It asks for the one load balancer the DNS name names, not for the
// account's (a page of 400 per call, every call of the account's request
// rate); a DNS name of another shape falls back to reading them all.
func Find(ctx context.Context, elb ELBv2API, ec SubnetsAPI, dnsName string) (*LoadBalancer, error) {
	return FindCached(ctx, elb, ec, dnsName, nil)
}

// SubnetCIDRs caches subnets' CIDR blocks by subnet ID: the NLBs of a
// cluster share a few subnets, whose CIDRs do not change. Safe for
// concurrent use; the zero value is ready.
type SubnetCIDRs struct {
	mu   sync.Mutex
	cidr map[string]string
}

// FindCached is Find reading subnets' CIDRs through the cache (nil: none).
func FindCached(ctx context.Context, elb ELBv2API, ec SubnetsAPI, dnsName string, subnets *SubnetCIDRs) (*LoadBalancer, error) {
	input := &elbv2.DescribeLoadBalancersInput{}
	if name, ok := NameFromDNS(dnsName); ok {
		input.Names = []string{name}
	}
	pages := elbv2.NewDescribeLoadBalancersPaginator(elb, input)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		var notFound *elbv2types.LoadBalancerNotFoundException
		if errors.As(err, &notFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("describing load balancers: %w", err)
		}
		for _, lb := range page.LoadBalancers {
			if !strings.EqualFold(aws.ToString(lb.DNSName), dnsName) {
				continue
			}
			return describe(ctx, ec, lb, subnets)
		}
	}
	return nil, nil
}

// MaxNamesPerCall is how many names one DescribeLoadBalancers call takes.
const MaxNamesPerCall = 20

// ErrSomeNotFound is FindMany's answer when a name in the batch names no
// load balancer: AWS then answers LoadBalancerNotFound for the whole call,
// so the caller asks for the names it must have one by one.
var ErrSomeNotFound = errors.New("a load balancer of the batch does not exist")

// FindMany looks up to MaxNamesPerCall load balancers by DNS name in one
// DescribeLoadBalancers call (one request where FindCached makes one per
// name): by DNS name, those found; a DNS name whose load balancer was
// replaced (same name, another DNS name) is left out. DNS names of another
// shape are not asked for. It returns ErrSomeNotFound when AWS knows one of
// the names not.
func FindMany(ctx context.Context, elb ELBv2API, ec SubnetsAPI, dnsNames []string, subnets *SubnetCIDRs) (map[string]*LoadBalancer, error) {
	var names []string
	for _, d := range dnsNames {
		if n, ok := NameFromDNS(d); ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) > MaxNamesPerCall {
		return nil, fmt.Errorf("%d load balancer names in one call, at most %d", len(names), MaxNamesPerCall)
	}
	out := map[string]*LoadBalancer{}
	if len(names) == 0 {
		return out, nil
	}
	page, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: names})
	var notFound *elbv2types.LoadBalancerNotFoundException
	if errors.As(err, &notFound) {
		return nil, ErrSomeNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("describing load balancers: %w", err)
	}
	for _, lb := range page.LoadBalancers {
		for _, d := range dnsNames {
			if strings.EqualFold(aws.ToString(lb.DNSName), d) {
				found, err := describe(ctx, ec, lb, subnets)
				if err != nil {
					return nil, err
				}
				out[d] = found
			}
		}
	}
	return out, nil
}

// describe converts a load balancer, with its subnets' CIDRs.
func describe(ctx context.Context, ec SubnetsAPI, lb elbv2types.LoadBalancer, cache *SubnetCIDRs) (*LoadBalancer, error) {
	out := &LoadBalancer{ARN: aws.ToString(lb.LoadBalancerArn), DNSName: aws.ToString(lb.DNSName), VPCID: aws.ToString(lb.VpcId),
		SecurityGroups: lb.SecurityGroups, IPAddressType: string(lb.IpAddressType)}
	if lb.State != nil {
		out.State = string(lb.State.Code)
	}
	var unknown []string
	for _, az := range lb.AvailabilityZones {
		id := aws.ToString(az.SubnetId)
		if c, ok := cache.get(id); ok {
			out.SubnetCIDRs = append(out.SubnetCIDRs, c)
		} else {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		sn, err := ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: unknown})
		if err != nil {
			return nil, fmt.Errorf("describing the NLB's subnets: %w", err)
		}
		for _, s := range sn.Subnets {
			out.SubnetCIDRs = append(out.SubnetCIDRs, aws.ToString(s.CidrBlock))
			cache.put(aws.ToString(s.SubnetId), aws.ToString(s.CidrBlock))
		}
	}
	slices.Sort(out.SubnetCIDRs)
	return out, nil
}

func (c *SubnetCIDRs) get(id string) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.cidr[id]
	return v, ok
}

func (c *SubnetCIDRs) put(id, cidr string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cidr == nil {
		c.cidr = map[string]string{}
	}
	c.cidr[id] = cidr
}

// FillTargetTypes reads the target types of the load balancer's target groups.
func (lb *LoadBalancer) FillTargetTypes(ctx context.Context, elb ELBv2API) error {
	lb.TargetTypes = nil
	tgs, err := elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lb.ARN)})
	var notFound *elbv2types.TargetGroupNotFoundException
	if errors.As(err, &notFound) {
		// None yet (moto says so where AWS returns an empty list).
		return nil
	}
	if err != nil {
		return fmt.Errorf("describing the target groups of %s: %w", lb.ARN, err)
	}
	for _, tg := range tgs.TargetGroups {
		if t := string(tg.TargetType); !slices.Contains(lb.TargetTypes, t) {
			lb.TargetTypes = append(lb.TargetTypes, t)
		}
	}
	return nil
}

// VPCCIDRs are the IPv4 CIDR blocks of a VPC.
func VPCCIDRs(ctx context.Context, ec VPCsAPI, vpcID string) ([]string, error) {
	vpcs, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{vpcID}})
	if err != nil {
		return nil, fmt.Errorf("describing VPC %s: %w", vpcID, err)
	}
	var cidrs []string
	for _, v := range vpcs.Vpcs {
		for _, b := range v.CidrBlockAssociationSet {
			cidrs = append(cidrs, aws.ToString(b.CidrBlock))
		}
		if len(v.CidrBlockAssociationSet) == 0 && v.CidrBlock != nil {
			cidrs = append(cidrs, aws.ToString(v.CidrBlock))
		}
	}
	return cidrs, nil
}

// InboundRules counts inbound rules as AWS's quota of rules per security
// group does: one per source of each permission (an IPv4 or IPv6 CIDR, a
// security group, a prefix list).
func InboundRules(perms []ec2types.IpPermission) int {
	n := 0
	for _, p := range perms {
		n += len(p.IpRanges) + len(p.Ipv6Ranges) + len(p.UserIdGroupPairs) + len(p.PrefixListIds)
	}
	return n
}
