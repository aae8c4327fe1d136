package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// Node-group rules shared by ingresses. AWS keeps one rule per group,
// protocol, ports and source whatever its description (a second is refused as
// InvalidPermission.Duplicate), so two ingresses that need the same rule of
// the nodes' group (nlb_security_group = false, the same port and source)
// share it: its description lists every ingress that needs it,
// "telemetry-platform.io/ingress=<ns>/<name>,<ns>/<name>". An ingress adds
// itself to the list of a rule that exists (instead of taking the rule for
// its own or for nobody's, which left its plan showing the rule to add
// forever), and on removal takes itself off the list, revoking the rule only
// when no other ingress needs it: destroying one ingress never cuts its
// neighbour's traffic. (Two applies changing the same rule's list at the same
// moment can lose one's name, last write wins; that ingress's next plan shows
// the rule to add, and its apply puts the name back.)

// maxRuleDescription is AWS's limit on a rule's description.
const maxRuleDescription = 255

// ruleOwners are the ingresses a rule's description names; nil for a
// description no ingress wrote.
func ruleOwners(desc string) []string {
	list, ok := strings.CutPrefix(desc, annotations.IngressTag+"=")
	if !ok || list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

// ownsRule reports whether a rule's description names this ingress.
func (o ingressOwner) ownsRule(desc string) bool { return slices.Contains(ruleOwners(desc), o.ref()) }

// ownersDescription is the description naming these ingresses.
func ownersDescription(refs []string) (string, error) {
	d := annotations.IngressTag + "=" + strings.Join(refs, ",")
	if len(d) > maxRuleDescription {
		return "", fmt.Errorf("the ingresses %v need the same node-group rule, and their names do not fit the %d characters "+
			"AWS allows a rule's description, which records who needs it: give one of them its own port, or an NLB "+
			"security group (nlb_security_group = true), so the rule is not shared", refs, maxRuleDescription)
	}
	return d, nil
}

// singleRanges splits a permission into one per source (AWS holds one rule
// per source: the VPC's CIDRs are a rule each).
func singleRanges(p ec2types.IpPermission) []ec2types.IpPermission {
	base := ec2types.IpPermission{IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort}
	var out []ec2types.IpPermission
	for _, r := range p.IpRanges {
		q := base
		q.IpRanges = []ec2types.IpRange{r}
		out = append(out, q)
	}
	for _, r := range p.Ipv6Ranges {
		q := base
		q.Ipv6Ranges = []ec2types.Ipv6Range{r}
		out = append(out, q)
	}
	for _, r := range p.UserIdGroupPairs {
		q := base
		q.UserIdGroupPairs = []ec2types.UserIdGroupPair{r}
		out = append(out, q)
	}
	return out
}

// describe sets the description of a single-source permission.
func describe(p *ec2types.IpPermission, desc string) {
	switch {
	case len(p.IpRanges) == 1:
		p.IpRanges[0].Description = aws.String(desc)
	case len(p.Ipv6Ranges) == 1:
		p.Ipv6Ranges[0].Description = aws.String(desc)
	case len(p.UserIdGroupPairs) == 1:
		p.UserIdGroupPairs[0].Description = aws.String(desc)
	}
}

// describedAs is the description of the group's rule that p (one source)
// names; found is false when the group has no such rule.
func (a ingressAWS) describedAs(ctx context.Context, group string, p ec2types.IpPermission) (desc string, found bool, err error) {
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		return "", false, fmt.Errorf("describing security group %s: %w", group, err)
	}
	for _, g := range out.SecurityGroups {
		for _, have := range g.IpPermissions {
			if !strings.EqualFold(aws.ToString(have.IpProtocol), aws.ToString(p.IpProtocol)) ||
				aws.ToInt32(have.FromPort) != aws.ToInt32(p.FromPort) || aws.ToInt32(have.ToPort) != aws.ToInt32(p.ToPort) {
				continue
			}
			for _, r := range have.IpRanges {
				if len(p.IpRanges) == 1 && aws.ToString(r.CidrIp) == aws.ToString(p.IpRanges[0].CidrIp) {
					return aws.ToString(r.Description), true, nil
				}
			}
			for _, r := range have.Ipv6Ranges {
				if len(p.Ipv6Ranges) == 1 && aws.ToString(r.CidrIpv6) == aws.ToString(p.Ipv6Ranges[0].CidrIpv6) {
					return aws.ToString(r.Description), true, nil
				}
			}
			for _, r := range have.UserIdGroupPairs {
				if len(p.UserIdGroupPairs) == 1 && aws.ToString(r.GroupId) == aws.ToString(p.UserIdGroupPairs[0].GroupId) {
					return aws.ToString(r.Description), true, nil
				}
			}
		}
	}
	return "", false, nil
}

// changeShared adds this ingress to the owners of one node-group rule
// (creating it when it does not exist) or takes it off them (revoking the
// rule when it was the last).
func (a ingressAWS) changeShared(ctx context.Context, authorize bool, o ingressOwner, group string, p ec2types.IpPermission) error {
	if authorize {
		describe(&p, o.description())
		_, err := a.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{p}})
		if !isAWSCode(err, "InvalidPermission.Duplicate") {
			return err
		}
		desc, found, err := a.describedAs(ctx, group, p)
		owners := ruleOwners(desc)
		if err != nil || !found || owners == nil || slices.Contains(owners, o.ref()) {
			// Gone meanwhile (the next plan adds it), someone else's rule that
			// no ingress wrote (it admits the same; left as it is), or ours.
			return err
		}
		return a.setOwners(ctx, group, p, append(owners, o.ref()))
	}
	desc, found, err := a.describedAs(ctx, group, p)
	if err != nil || !found || !o.ownsRule(desc) {
		return err
	}
	if others := slices.DeleteFunc(ruleOwners(desc), func(r string) bool { return r == o.ref() }); len(others) > 0 {
		return a.setOwners(ctx, group, p, others)
	}
	describe(&p, desc)
	_, err = a.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
		GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{p}})
	if isAWSCode(err, "InvalidPermission.NotFound") {
		return nil
	}
	return err
}

// setOwners rewrites a rule's description to name these ingresses.
func (a ingressAWS) setOwners(ctx context.Context, group string, p ec2types.IpPermission, owners []string) error {
	desc, err := ownersDescription(owners)
	if err != nil {
		return err
	}
	describe(&p, desc)
	_, err = a.ec2.UpdateSecurityGroupRuleDescriptionsIngress(ctx, &ec2.UpdateSecurityGroupRuleDescriptionsIngressInput{
		GroupId: aws.String(group), IpPermissions: []ec2types.IpPermission{p}})
	if err != nil {
		return fmt.Errorf("recording the ingresses %v on the shared rule of %s: %w", owners, group, err)
	}
	return nil
}
