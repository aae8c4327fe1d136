package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// fakeEC2 is EC2 in memory as telemetry_nlb_ingress uses it (ec2API):
// security groups with tags and inbound rules held one per source with a
// description, VPCs with CIDR blocks, subnets, and AWS's error codes for a
// missing group, a duplicate group or rule, a missing rule and a group in
// use (by an NLB, or named by another group's rule). It is the fake the ingress's order is table-tested against in
// milliseconds; the acceptance tests prove the real boundary against moto.
//
// What it does not model: pagination, eventual consistency, rate limits,
// egress rules, prefix lists.
type fakeEC2 struct {
	mu      sync.Mutex
	groups  map[string]*fakeGroup
	vpcs    map[string][]string // VPC ID -> CIDR blocks
	subnets []ec2types.Subnet
	ids     int

	// before, when set, is asked before each call by its name; an error it
	// returns fails the call, which then changes nothing.
	before func(call string) error
	// added, when set, is told of each rule a call adds.
	added func(group string, r fakeRule)
}

type fakeGroup struct {
	id, vpc, name string
	tags          map[string]string
	rules         []fakeRule
	inUse         bool // an NLB uses it: deleting it is a DependencyViolation
}

// fakeRule is one inbound rule: a protocol, a port range, one source (an
// IPv4 or IPv6 CIDR or a group ID) and its description.
type fakeRule struct {
	proto    string
	from, to int32
	source   string
	desc     string
}

func (r fakeRule) same(o fakeRule) bool {
	return r.proto == o.proto && r.from == o.from && r.to == o.to && r.source == o.source
}

func (r fakeRule) String() string {
	return fmt.Sprintf("%s %d-%d from %s (%s)", r.proto, r.from, r.to, r.source, r.desc)
}

func newFakeEC2() *fakeEC2 {
	return &fakeEC2{groups: map[string]*fakeGroup{}, vpcs: map[string][]string{}}
}

func awsError(code, format string, args ...any) error {
	return &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// addGroup makes a group directly (a node group, or one made by hand).
func (f *fakeEC2) addGroup(vpc, name string, tags map[string]string, rules ...fakeRule) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids++
	id := fmt.Sprintf("sg-%08x", f.ids)
	f.groups[id] = &fakeGroup{id: id, vpc: vpc, name: name, tags: tags, rules: rules}
	return id
}

// rulesOf is a copy of a group's rules.
func (f *fakeEC2) rulesOf(id string) []fakeRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.groups[id]; g != nil {
		return slices.Clone(g.rules)
	}
	return nil
}

// group starts a call on one group: the fault hook, then the lock (held on
// success: the caller unlocks) and the group, or AWS's error for a missing one.
func (f *fakeEC2) group(call, id string) (*fakeGroup, error) {
	if err := f.call(call); err != nil {
		return nil, err
	}
	f.mu.Lock()
	g := f.groups[id]
	if g == nil {
		f.mu.Unlock()
		return nil, awsError("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return g, nil
}

func (f *fakeEC2) call(name string) error {
	if f.before != nil {
		return f.before(name)
	}
	return nil
}

func (f *fakeEC2) view(g *fakeGroup) ec2types.SecurityGroup {
	out := ec2types.SecurityGroup{GroupId: aws.String(g.id), GroupName: aws.String(g.name), VpcId: aws.String(g.vpc)}
	for k, v := range g.tags {
		out.Tags = append(out.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	for _, r := range g.rules {
		p := ec2types.IpPermission{IpProtocol: aws.String(r.proto), FromPort: aws.Int32(r.from), ToPort: aws.Int32(r.to)}
		switch {
		case strings.HasPrefix(r.source, "sg-"):
			p.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(r.source), Description: aws.String(r.desc)}}
		case strings.Contains(r.source, ":"):
			p.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.source), Description: aws.String(r.desc)}}
		default:
			p.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.source), Description: aws.String(r.desc)}}
		}
		out.IpPermissions = append(out.IpPermissions, p)
	}
	return out
}

// expand turns permissions into rules, one per source, as AWS holds them.
func expand(perms []ec2types.IpPermission) []fakeRule {
	var out []fakeRule
	for _, p := range perms {
		base := fakeRule{proto: strings.ToLower(aws.ToString(p.IpProtocol)), from: aws.ToInt32(p.FromPort), to: aws.ToInt32(p.ToPort)}
		for _, r := range p.IpRanges {
			out = append(out, fakeRule{base.proto, base.from, base.to, aws.ToString(r.CidrIp), aws.ToString(r.Description)})
		}
		for _, r := range p.Ipv6Ranges {
			out = append(out, fakeRule{base.proto, base.from, base.to, aws.ToString(r.CidrIpv6), aws.ToString(r.Description)})
		}
		for _, r := range p.UserIdGroupPairs {
			out = append(out, fakeRule{base.proto, base.from, base.to, aws.ToString(r.GroupId), aws.ToString(r.Description)})
		}
	}
	return out
}

func (f *fakeEC2) DescribeSecurityGroups(_ context.Context, in *ec2.DescribeSecurityGroupsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error) {
	if err := f.call("DescribeSecurityGroups"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &ec2.DescribeSecurityGroupsOutput{}
	for _, id := range in.GroupIds {
		if f.groups[id] == nil {
			return nil, awsError("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range f.groups {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		g := f.groups[id]
		if len(in.GroupIds) > 0 && !slices.Contains(in.GroupIds, id) {
			continue
		}
		if matchesFilters(g, in.Filters) {
			out.SecurityGroups = append(out.SecurityGroups, f.view(g))
		}
	}
	return out, nil
}

func matchesFilters(g *fakeGroup, filters []ec2types.Filter) bool {
	for _, flt := range filters {
		name := aws.ToString(flt.Name)
		var value string
		var present bool
		switch {
		case name == "vpc-id":
			value, present = g.vpc, true
		case strings.HasPrefix(name, "tag:"):
			value, present = g.tags[strings.TrimPrefix(name, "tag:")]
		default:
			panic("fakeEC2: filter " + name + " not modelled")
		}
		if !present || !slices.Contains(flt.Values, value) {
			return false
		}
	}
	return true
}

func (f *fakeEC2) CreateSecurityGroup(_ context.Context, in *ec2.CreateSecurityGroupInput, _ ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error) {
	if err := f.call("CreateSecurityGroup"); err != nil {
		return nil, err
	}
	name, vpc := aws.ToString(in.GroupName), aws.ToString(in.VpcId)
	f.mu.Lock()
	for _, g := range f.groups {
		if g.vpc == vpc && g.name == name {
			f.mu.Unlock()
			return nil, awsError("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
		}
	}
	f.mu.Unlock()
	tags := map[string]string{}
	for _, spec := range in.TagSpecifications {
		for _, t := range spec.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return &ec2.CreateSecurityGroupOutput{GroupId: aws.String(f.addGroup(vpc, name, tags))}, nil
}

func (f *fakeEC2) DeleteSecurityGroup(_ context.Context, in *ec2.DeleteSecurityGroupInput, _ ...func(*ec2.Options)) (*ec2.DeleteSecurityGroupOutput, error) {
	if err := f.call("DeleteSecurityGroup"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.groups[aws.ToString(in.GroupId)]
	switch {
	case g == nil:
		return nil, awsError("InvalidGroup.NotFound", "The security group '%s' does not exist", aws.ToString(in.GroupId))
	case g.inUse:
		return nil, awsError("DependencyViolation", "resource %s has a dependent object", g.id)
	}
	for _, other := range f.groups { // a group another group's rule names cannot go
		if other != g && slices.ContainsFunc(other.rules, func(r fakeRule) bool { return r.source == g.id }) {
			return nil, awsError("DependencyViolation", "resource %s has a dependent object", g.id)
		}
	}
	delete(f.groups, g.id)
	return &ec2.DeleteSecurityGroupOutput{}, nil
}

func (f *fakeEC2) CreateTags(_ context.Context, in *ec2.CreateTagsInput, _ ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error) {
	if err := f.call("CreateTags"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range in.Resources {
		g := f.groups[id]
		if g == nil {
			return nil, awsError("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
		for _, t := range in.Tags {
			g.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return &ec2.CreateTagsOutput{}, nil
}

func (f *fakeEC2) AuthorizeSecurityGroupIngress(_ context.Context, in *ec2.AuthorizeSecurityGroupIngressInput, _ ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error) {
	g, err := f.group("AuthorizeSecurityGroupIngress", aws.ToString(in.GroupId))
	if err != nil {
		return nil, err
	}
	rules := expand(in.IpPermissions)
	for _, r := range rules { // all or nothing, as AWS
		if slices.ContainsFunc(g.rules, r.same) {
			f.mu.Unlock()
			return nil, awsError("InvalidPermission.Duplicate", "the specified rule %q already exists", r)
		}
	}
	g.rules = append(g.rules, rules...)
	f.mu.Unlock()
	if f.added != nil {
		for _, r := range rules {
			f.added(g.id, r)
		}
	}
	return &ec2.AuthorizeSecurityGroupIngressOutput{Return: aws.Bool(true)}, nil
}

// change applies fn to each existing rule the permissions name, after
// checking all exist (AWS's InvalidPermission.NotFound otherwise).
func (f *fakeEC2) change(call, id string, perms []ec2types.IpPermission, fn func(g *fakeGroup, i int, r fakeRule)) error {
	g, err := f.group(call, id)
	if err != nil {
		return err
	}
	defer f.mu.Unlock()
	rules := expand(perms)
	for _, r := range rules {
		if !slices.ContainsFunc(g.rules, r.same) {
			return awsError("InvalidPermission.NotFound", "The specified rule %q does not exist in this security group", r)
		}
	}
	for _, r := range rules {
		fn(g, slices.IndexFunc(g.rules, r.same), r)
	}
	return nil
}

func (f *fakeEC2) RevokeSecurityGroupIngress(_ context.Context, in *ec2.RevokeSecurityGroupIngressInput, _ ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error) {
	err := f.change("RevokeSecurityGroupIngress", aws.ToString(in.GroupId), in.IpPermissions, func(g *fakeGroup, i int, _ fakeRule) {
		g.rules = slices.Delete(g.rules, i, i+1)
	})
	if err != nil {
		return nil, err
	}
	return &ec2.RevokeSecurityGroupIngressOutput{Return: aws.Bool(true)}, nil
}

func (f *fakeEC2) UpdateSecurityGroupRuleDescriptionsIngress(_ context.Context, in *ec2.UpdateSecurityGroupRuleDescriptionsIngressInput, _ ...func(*ec2.Options)) (*ec2.UpdateSecurityGroupRuleDescriptionsIngressOutput, error) {
	err := f.change("UpdateSecurityGroupRuleDescriptionsIngress", aws.ToString(in.GroupId), in.IpPermissions, func(g *fakeGroup, i int, r fakeRule) {
		g.rules[i].desc = r.desc
	})
	if err != nil {
		return nil, err
	}
	return &ec2.UpdateSecurityGroupRuleDescriptionsIngressOutput{Return: aws.Bool(true)}, nil
}

func (f *fakeEC2) DescribeVpcs(_ context.Context, in *ec2.DescribeVpcsInput, _ ...func(*ec2.Options)) (*ec2.DescribeVpcsOutput, error) {
	if err := f.call("DescribeVpcs"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &ec2.DescribeVpcsOutput{}
	for _, id := range in.VpcIds {
		cidrs, ok := f.vpcs[id]
		if !ok {
			return nil, awsError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
		}
		v := ec2types.Vpc{VpcId: aws.String(id)}
		for _, c := range cidrs {
			v.CidrBlockAssociationSet = append(v.CidrBlockAssociationSet, ec2types.VpcCidrBlockAssociation{CidrBlock: aws.String(c)})
		}
		out.Vpcs = append(out.Vpcs, v)
	}
	return out, nil
}

func (f *fakeEC2) DescribeSubnets(_ context.Context, in *ec2.DescribeSubnetsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error) {
	if err := f.call("DescribeSubnets"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &ec2.DescribeSubnetsOutput{}
	for _, s := range f.subnets {
		keep := len(in.SubnetIds) == 0 || slices.Contains(in.SubnetIds, aws.ToString(s.SubnetId))
		for _, flt := range in.Filters {
			switch aws.ToString(flt.Name) {
			case "vpc-id":
				keep = keep && slices.Contains(flt.Values, aws.ToString(s.VpcId))
			case "tag-key":
				keep = keep && slices.ContainsFunc(s.Tags, func(t ec2types.Tag) bool { return slices.Contains(flt.Values, aws.ToString(t.Key)) })
			default:
				panic("fakeEC2: subnet filter " + aws.ToString(flt.Name) + " not modelled")
			}
		}
		if keep {
			out.Subnets = append(out.Subnets, s)
		}
	}
	return out, nil
}
