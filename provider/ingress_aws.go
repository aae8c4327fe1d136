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
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// ingressAWS manages the AWS side of an ingress: its frontend security group
// and its rules there and on the node group. Rules it owns carry the
// description owner.description(); in a frontend group that it owns (tagged
// with the ingress and the cluster, see owns) every rule is its own. A group
// it does not own is never changed beyond its own described rules, and never
// deleted.
type ingressAWS struct {
	ec2 ec2API
	elb awsnlb.ELBv2API
	// cluster identifies the Kubernetes cluster (its kube-system namespace's
	// UID): two clusters in one VPC never take each other's groups.
	cluster string
}

// ec2API is every EC2 call the ingress makes: the boundary its table tests
// fake in memory (fake_ec2_test.go) and the acceptance tests prove against
// moto. *ec2.Client has it.
type ec2API interface {
	awsnlb.SubnetsAPI
	awsnlb.VPCsAPI
	DescribeSecurityGroups(context.Context, *ec2.DescribeSecurityGroupsInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	CreateSecurityGroup(context.Context, *ec2.CreateSecurityGroupInput, ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error)
	DeleteSecurityGroup(context.Context, *ec2.DeleteSecurityGroupInput, ...func(*ec2.Options)) (*ec2.DeleteSecurityGroupOutput, error)
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	AuthorizeSecurityGroupIngress(context.Context, *ec2.AuthorizeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error)
	RevokeSecurityGroupIngress(context.Context, *ec2.RevokeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error)
	UpdateSecurityGroupRuleDescriptionsIngress(context.Context, *ec2.UpdateSecurityGroupRuleDescriptionsIngressInput, ...func(*ec2.Options)) (*ec2.UpdateSecurityGroupRuleDescriptionsIngressOutput, error)
}

// ingressOwner is the ingress a rule or group belongs to.
type ingressOwner struct{ namespace, name string }

func ruleOwner(namespace, name string) ingressOwner { return ingressOwner{namespace, name} }

// ref is the value of the ingress tag: "<namespace>/<name>".
func (o ingressOwner) ref() string { return o.namespace + "/" + o.name }

// description marks the rules the ingress owns in groups shared with others.
func (o ingressOwner) description() string { return annotations.IngressTag + "=" + o.ref() }

func frontendGroupName(namespace, name string) string {
	return "telemetry-nlb-" + namespace + "-" + name
}

// owns reports whether a group is the frontend group of this ingress in this
// cluster; legacy reports a group of this ingress created before groups
// carried the cluster tag.
func (a ingressAWS) owns(g ec2types.SecurityGroup, o ingressOwner) (owned, legacy bool) {
	tags := map[string]string{}
	for _, t := range g.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if tags[annotations.IngressTag] != o.ref() || tags[annotations.ManagedBy] != annotations.ProviderManager {
		return false, false
	}
	cluster, tagged := tags[annotations.ClusterTag]
	return tagged && cluster == a.cluster, !tagged
}

// notOwnedError explains why the provider will not touch a group.
func notOwnedError(id string, o ingressOwner) error {
	return fmt.Errorf("security group %s, named by Service %s (annotation %s), is not the frontend group of this ingress in "+
		"this cluster: it lacks the tags %s=%s and %s of this cluster, so the provider neither changes its rules nor deletes it. "+
		"To let the provider manage the NLB's group, remove the annotation from the Service (kubectl annotate service -n %s %s %s-) "+
		"and apply again: a group of its own is created (the AWS Load Balancer Controller replaces an NLB whose security groups "+
		"change). To keep this group, manage it outside telemetry_nlb_ingress", id, o.ref(), lbc.SecurityGroups,
		annotations.IngressTag, o.ref(), annotations.ClusterTag, o.namespace, o.name, lbc.SecurityGroups)
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
// still exists and is owned, else one tagged for the ingress and the cluster
// in the VPC (a retry after a partial apply), else a new one. A group in state
// that this ingress does not own is an error (notOwnedError).
func (a ingressAWS) ensureFrontend(ctx context.Context, o ingressOwner, vpcID, known string) (string, error) {
	if known != "" {
		out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{known}})
		if err == nil && len(out.SecurityGroups) == 1 {
			owned, legacy := a.owns(out.SecurityGroups[0], o)
			switch {
			case owned:
				return known, nil
			case legacy:
				// Created by an earlier version for this ingress: claim it for this cluster.
				if _, err := a.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{known},
					Tags: []ec2types.Tag{{Key: aws.String(annotations.ClusterTag), Value: aws.String(a.cluster)}}}); err != nil {
					return "", fmt.Errorf("tagging frontend security group %s with the cluster: %w", known, err)
				}
				return known, nil
			}
			return "", notOwnedError(known, o)
		}
		if err != nil && !isAWSCode(err, "InvalidGroup.NotFound") {
			return "", fmt.Errorf("describing frontend security group %s: %w", known, err)
		}
	}
	if found, err := a.findFrontend(ctx, o, vpcID); err != nil || found != "" {
		return found, err
	}
	created, err := a.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(frontendGroupName(o.namespace, o.name)),
		Description: aws.String("NLB frontend of " + o.ref() + " (telemetry_nlb_ingress; per-source filtering by Calico)"),
		VpcId:       aws.String(vpcID),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{
			{Key: aws.String("Name"), Value: aws.String(frontendGroupName(o.namespace, o.name))},
			{Key: aws.String(annotations.IngressTag), Value: aws.String(o.ref())},
			{Key: aws.String(annotations.ClusterTag), Value: aws.String(a.cluster)},
			{Key: aws.String(annotations.ManagedBy), Value: aws.String(annotations.ProviderManager)},
		}}},
	})
	if isAWSCode(err, "InvalidGroup.Duplicate") {
		// Created meanwhile under the same name (a concurrent apply for the
		// same Service, which the Service's create then settles): use it if
		// it is this ingress's.
		if found, ferr := a.findFrontend(ctx, o, vpcID); ferr != nil || found != "" {
			return found, ferr
		}
	}
	if err != nil {
		return "", fmt.Errorf("creating the frontend security group: %w", err)
	}
	return aws.ToString(created.GroupId), nil
}

// findFrontend returns the group tagged as the ingress's frontend group in
// this cluster (in the VPC, when vpcID is not ""), or "" when there is none:
// its tags alone find it, whatever the state holds.
func (a ingressAWS) findFrontend(ctx context.Context, o ingressOwner, vpcID string) (string, error) {
	filters := []ec2types.Filter{
		{Name: aws.String("tag:" + annotations.IngressTag), Values: []string{o.ref()}},
		{Name: aws.String("tag:" + annotations.ClusterTag), Values: []string{a.cluster}},
	}
	if vpcID != "" {
		filters = append(filters, ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{vpcID}})
	}
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: filters})
	if err != nil {
		return "", fmt.Errorf("looking for the frontend security group of %s: %w", o.ref(), err)
	}
	if len(out.SecurityGroups) > 0 {
		return aws.ToString(out.SecurityGroups[0].GroupId), nil
	}
	return "", nil
}

// leftovers finds what the ingress owns in AWS: its frontend group (the
// known one while it exists and is owned, else one found by its tags) and
// its rules there and in the node group.
func (a ingressAWS) leftovers(ctx context.Context, o ingressOwner, known, nodeSG string) (string, []sgRule, error) {
	vpcID, vpcCIDRs, err := a.vpcOf(ctx, nodeSG)
	if err != nil {
		return "", nil, err
	}
	frontend := ""
	if known != "" {
		owned, err := a.frontendOwned(ctx, o, known)
		if err != nil {
			return "", nil, err
		}
		if owned {
			frontend = known
		}
	}
	if frontend == "" {
		if frontend, err = a.findFrontend(ctx, o, vpcID); err != nil {
			return "", nil, err
		}
	}
	rules, err := a.actualRules(ctx, o, frontend, nodeSG, vpcCIDRs)
	return frontend, rules, err
}

// frontendOwned reports whether the group exists and is this ingress's own
// (legacy groups of this ingress count).
func (a ingressAWS) frontendOwned(ctx context.Context, o ingressOwner, id string) (bool, error) {
	exists, owned, err := a.frontendOwnership(ctx, o, id)
	return exists && owned, err
}

// frontendForeign reports whether the group exists and is not this
// ingress's own (an imported Service naming a hand-made or shared group).
func (a ingressAWS) frontendForeign(ctx context.Context, o ingressOwner, id string) (bool, error) {
	exists, owned, err := a.frontendOwnership(ctx, o, id)
	return exists && !owned, err
}

// frontendOwnership says whether the group exists and, if so, whether it is
// this ingress's own (legacy groups of this ingress count).
func (a ingressAWS) frontendOwnership(ctx context.Context, o ingressOwner, id string) (exists, owned bool, err error) {
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
	if isAWSCode(err, "InvalidGroup.NotFound") {
		return false, false, nil
	}
	if err != nil || len(out.SecurityGroups) != 1 {
		return false, false, fmt.Errorf("describing frontend security group %s: %v", id, err)
	}
	own, legacy := a.owns(out.SecurityGroups[0], o)
	return true, own || legacy, nil
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
func (a ingressAWS) actualRules(ctx context.Context, o ingressOwner, frontendID, nodeID string, vpcCIDRs []string) ([]sgRule, error) {
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
			owned, legacy := a.owns(g, o)
			group, all = "frontend", owned || legacy
		}
		for _, s := range inboundSources(g, group) {
			if !all && !o.ownsRule(s.desc) {
				continue
			}
			rule := s.rule
			switch {
			case s.kind == sourceIPv4 && group == "node" && slices.Contains(vpcCIDRs, rule.Source) && o.ownsRule(s.desc):
				rule.Source = sourceVPC
			case s.kind == sourceGroup && rule.Source == frontendID:
				rule.Source = sourceFrontend
			}
			add(rule)
		}
	}
	return rules, nil
}

// inboundSource is one source of one inbound permission of a group: the
// rule it is (in the group named group), its description and its kind.
type inboundSource struct {
	rule sgRule
	desc string
	kind sourceKind
}

type sourceKind int

const (
	sourceIPv4 sourceKind = iota
	sourceIPv6
	sourceGroup
)

// inboundSources flattens a group's inbound permissions into one entry per
// source, as AWS counts and describes them.
func inboundSources(g ec2types.SecurityGroup, group string) []inboundSource {
	var out []inboundSource
	for _, p := range g.IpPermissions {
		base := sgRule{Group: group, Protocol: strings.ToLower(aws.ToString(p.IpProtocol)), From: aws.ToInt32(p.FromPort), To: aws.ToInt32(p.ToPort)}
		with := func(source string) sgRule { r := base; r.Source = source; return r }
		for _, r := range p.IpRanges {
			out = append(out, inboundSource{with(aws.ToString(r.CidrIp)), aws.ToString(r.Description), sourceIPv4})
		}
		for _, r := range p.Ipv6Ranges {
			out = append(out, inboundSource{with(aws.ToString(r.CidrIpv6)), aws.ToString(r.Description), sourceIPv6})
		}
		for _, r := range p.UserIdGroupPairs {
			out = append(out, inboundSource{with(aws.ToString(r.GroupId)), aws.ToString(r.Description), sourceGroup})
		}
	}
	return out
}

// reconcileRules adds the desired rules that are missing and revokes the
// owned rules that are not desired.
func (a ingressAWS) reconcileRules(ctx context.Context, o ingressOwner, frontendID, nodeID string, vpcCIDRs []string, desired []sgRule) error {
	actual, err := a.actualRules(ctx, o, frontendID, nodeID, vpcCIDRs)
	if err != nil {
		return err
	}
	for _, r := range actual {
		if !slices.Contains(desired, r) {
			if err := a.changeRule(ctx, false, o, frontendID, nodeID, vpcCIDRs, r); err != nil {
				return err
			}
		}
	}
	for _, r := range desired {
		if !slices.Contains(actual, r) {
			if err := a.changeRule(ctx, true, o, frontendID, nodeID, vpcCIDRs, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// foreignNodeRules reads the node group's rules that are not the
// ingress's (described otherwise) as sgRules of the node group.
func (a ingressAWS) foreignNodeRules(ctx context.Context, o ingressOwner, nodeID string) ([]sgRule, error) {
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{nodeID}})
	if err != nil {
		return nil, fmt.Errorf("describing the node security group %s: %w", nodeID, err)
	}
	var rules []sgRule
	for _, g := range out.SecurityGroups {
		for _, s := range inboundSources(g, "node") {
			if !o.ownsRule(s.desc) {
				rules = append(rules, s.rule)
			}
		}
	}
	return rules, nil
}

// reconcileRulesWideningFirst is reconcileRules adding before it revokes:
// for a change from rules that admit more to rules that admit less of the
// same sources (the widened rules of a hand-over to the exact ones), so no
// listed source is ever refused in between.
func (a ingressAWS) reconcileRulesWideningFirst(ctx context.Context, o ingressOwner, frontendID, nodeID string, vpcCIDRs []string, desired []sgRule) error {
	actual, err := a.actualRules(ctx, o, frontendID, nodeID, vpcCIDRs)
	if err != nil {
		return err
	}
	union := slices.Clone(actual)
	for _, r := range desired {
		if !slices.Contains(union, r) {
			union = append(union, r)
		}
	}
	if err := a.reconcileRules(ctx, o, frontendID, nodeID, vpcCIDRs, union); err != nil {
		return err
	}
	return a.reconcileRules(ctx, o, frontendID, nodeID, vpcCIDRs, desired)
}

// revokeUnwanted revokes the owned rules that are not desired and adds
// nothing: the narrowing half of reconcileRules, safe before the Service
// changes.
func (a ingressAWS) revokeUnwanted(ctx context.Context, o ingressOwner, frontendID, nodeID string, vpcCIDRs []string, desired []sgRule) error {
	actual, err := a.actualRules(ctx, o, frontendID, nodeID, vpcCIDRs)
	if err != nil {
		return err
	}
	keep := slices.DeleteFunc(actual, func(r sgRule) bool { return !slices.Contains(desired, r) })
	return a.reconcileRules(ctx, o, frontendID, nodeID, vpcCIDRs, keep)
}

func (a ingressAWS) changeRule(ctx context.Context, authorize bool, o ingressOwner, frontendID, nodeID string, vpcCIDRs []string, r sgRule) error {
	owner := o.description()
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
	switch {
	case r.Group == "node" && !strings.HasPrefix(r.Source, "sg-"):
		// The nodes' group is shared with other ingresses: its rules are
		// shared too (ingress_shared_rules.go).
		for _, p := range singleRanges(perm) {
			if err = a.changeShared(ctx, authorize, o, group, p); err != nil {
				break
			}
		}
	case authorize:
		_, err = a.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{perm}})
		if isAWSCode(err, "InvalidPermission.Duplicate") {
			err = nil
		}
	default:
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
	lb, err := awsnlb.Find(ctx, a.elb, a.ec2, dnsName)
	if err != nil || lb == nil {
		return lb, err
	}
	return lb, lb.FillTargetTypes(ctx, a.elb)
}

// loadBalancer finds the Service's NLB; with wait it polls until the
// controller has written the hostname and the NLB exists.
func (a ingressAWS) loadBalancer(ctx context.Context, c client.Client, spec ingressSpec, waitFor bool) (*awsnlb.LoadBalancer, error) {
	var lb *awsnlb.LoadBalancer
	var why string
	check := func(ctx context.Context) (bool, error) {
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: spec.Namespace, Name: spec.Name}, svc); err != nil {
			return false, err
		}
		host := awsnlb.Hostname(svc)
		if host == "" {
			why = "the Service has no load balancer hostname in its status yet"
			return false, nil
		}
		var err error
		if lb, err = a.findLoadBalancer(ctx, host); err != nil {
			return false, err
		}
		if lb == nil {
			why = "no load balancer named " + host + " in ELBv2"
		}
		return lb != nil, nil
	}
	if !waitFor {
		_, err := check(ctx)
		return lb, err
	}
	if err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, check); err != nil {
		return nil, fmt.Errorf("waiting for the NLB of Service %s/%s: %s (%v). Is the AWS Load Balancer Controller running? "+
			"kubectl -n %s describe service %s shows its events.", spec.Namespace, spec.Name, why, err, spec.Namespace, spec.Name)
	}
	return lb, nil
}

// taggedSubnetCount is how many subnets the controller would pick for the
// scheme (one per zone among the tagged ones), for the per-source model when
// no NLB exists yet.
func (a ingressAWS) taggedSubnetCount(ctx context.Context, vpcID, scheme string) (int, error) {
	tag := "kubernetes.io/role/internal-elb"
	if scheme == lbc.SchemeInternetFacing {
		tag = "kubernetes.io/role/elb"
	}
	out, err := a.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}},
		{Name: aws.String("tag-key"), Values: []string{tag}},
	}})
	if err != nil {
		return 0, fmt.Errorf("describing the subnets of %s: %w", vpcID, err)
	}
	zones := map[string]bool{}
	for _, s := range out.Subnets {
		zones[aws.ToString(s.AvailabilityZone)] = true
	}
	return len(zones), nil
}

func isAWSCode(err error, code string) bool {
	var ae smithy.APIError
	return err != nil && errors.As(err, &ae) && ae.ErrorCode() == code
}
