package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// A migration from the AWS Load Balancer Controller's per-source rules
// (docs/guides/migrating-from-lbc-rules.md) is the apply of an imported
// Service whose hand-over annotations (lbcHandOver) differ from the
// ingress's. It keeps the NLB and, in this order, never admits a source
// outside the configured set nor drops a listed one:
//
//  1. the Service is written with the controller's annotations held as they
//     are, and Calico's policies acknowledged (the controller's rules still
//     admit exactly the sources);
//  2. the coarse cover is added (smaller, or with sources widened, where the
//     node group holds the controller's rules: handOverRules);
//  3. handOver writes the hand-over annotations and waits until the
//     controller has moved the NLB onto the ingress's groups and removed its
//     per-source rules; then the widened rules are narrowed, adding before
//     revoking.

// migrate is steps 2 and 3, once the apply has written the Service holding
// the controller's annotations and Calico's policies are acknowledged.
func migrate(ctx context.Context, c client.Client, a ingressAWS, spec ingressSpec, frontend string,
	vpcCIDRs []string, holding, desired []sgRule, diags *diag.Diagnostics) error {
	owner := ruleOwner(spec.Namespace, spec.Name)
	if err := a.reconcileRules(ctx, owner, frontend, spec.NodeSG, vpcCIDRs, holding); err != nil {
		return fmt.Errorf("adding the coarse cover: %w", err)
	}
	if err := handOver(ctx, c, a, spec, frontend, diags); err != nil {
		return err
	}
	if err := a.reconcileRulesWideningFirst(ctx, owner, frontend, spec.NodeSG, vpcCIDRs, desired); err != nil {
		return fmt.Errorf("narrowing the rules held for the hand-over: %w", err)
	}
	return nil
}

// handOver writes the hand-over annotations and waits for the controller.
func handOver(ctx context.Context, c client.Client, a ingressAWS, spec ingressSpec, frontend string, diags *diag.Diagnostics) error {
	if _, err := writeService(ctx, c, spec.service(frontend)); err != nil {
		return err
	}
	var why string
	var tgbUnreadable error
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: spec.Namespace, Name: spec.Name}, svc); err != nil {
			return false, err
		}
		if host := awsnlb.Hostname(svc); host != "" {
			lb, err := a.findLoadBalancer(ctx, host)
			if err != nil {
				return false, err
			}
			if lb != nil {
				want := []string{frontend}
				if !spec.NLBSecurityGroup {
					want = nil
				}
				if !slices.Equal(slices.Sorted(slices.Values(lb.SecurityGroups)), want) {
					why = fmt.Sprintf("the NLB %s has security groups %v, not %v yet", lb.DNSName, lb.SecurityGroups, want)
					return false, nil
				}
			}
		}
		left, err := a.lbcManagedGroupRules(ctx, spec.Namespace, spec.Name)
		if err != nil {
			return false, err
		}
		for g, n := range left {
			if n > 0 {
				why = fmt.Sprintf("its security group %s of the Service still holds %d rules", g, n)
				return false, nil
			}
		}
		pending, err := lbcBindingsWithRules(ctx, c, spec.Namespace, spec.Name)
		switch {
		case apierrors.IsForbidden(err) || meta.IsNoMatchError(err):
			tgbUnreadable = err
		case err != nil:
			return false, err
		case len(pending) > 0:
			why = fmt.Sprintf("its TargetGroupBindings %v still manage node-group rules", pending)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the AWS Load Balancer Controller did not take the per-source rules of Service %s/%s away: %s (%v). "+
			"Calico's policies and the coarse cover are in place, so the listed sources pass and Calico refuses the rest; the "+
			"controller's rules stay until it does. Is it running, and at v2.6 or later? kubectl -n %s describe service %s "+
			"shows its events. Apply again once it has.", spec.Namespace, spec.Name, why, err, spec.Namespace, spec.Name)
	}
	if tgbUnreadable != nil {
		diags.AddWarning("Could not check the TargetGroupBindings", fmt.Sprintf("The NLB uses the ingress's security groups, but "+
			"reading the AWS Load Balancer Controller's TargetGroupBindings of Service %s/%s failed (%v), so whether it has revoked "+
			"its per-source node-group rules is not known. %s Or check the node group's rules described %q.",
			spec.Namespace, spec.Name, tgbUnreadable, targetGroupBindingsAdvice(tgbUnreadable), lbc.RuleDescription))
	}
	return nil
}

// targetGroupBindingsAdvice is the next step when the AWS Load Balancer
// Controller's TargetGroupBindings cannot be read, by cause: the CRD not
// served (no RBAC would help), access refused, or no answer.
func targetGroupBindingsAdvice(err error) string {
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		return "The cluster serves no targetgroupbindings.elbv2.k8s.aws: the AWS Load Balancer Controller's CRDs are " +
			"not installed (install the controller, v2.6 or later, with its CRDs)."
	case apierrors.IsForbidden(err):
		return "Allow get and list on targetgroupbindings.elbv2.k8s.aws to the provider's credentials."
	default:
		return "The API server did not answer the read: apply again once it does."
	}
}

// lbcManagedGroupRules counts, by group, the inbound rules of the security
// groups the AWS Load Balancer Controller made for the Service (its
// frontend groups, where its default mode writes a rule per source and
// listener port).
func (a ingressAWS) lbcManagedGroupRules(ctx context.Context, namespace, name string) (map[string]int, error) {
	out, err := a.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + lbc.StackTag), Values: []string{namespace + "/" + name}}}})
	if err != nil {
		return nil, fmt.Errorf("describing the AWS Load Balancer Controller's security groups of %s/%s: %w", namespace, name, err)
	}
	rules := map[string]int{}
	for _, g := range out.SecurityGroups {
		rules[aws.ToString(g.GroupId)] = awsnlb.InboundRules(g.IpPermissions)
	}
	return rules, nil
}

// lbcBindings lists the Service's TargetGroupBindings.
func lbcBindings(ctx context.Context, c client.Client, namespace, name string) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(lbc.TargetGroupBindingList)
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{lbc.StackNameLabel: name}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(b unstructured.Unstructured) bool {
		ns := b.GetLabels()[lbc.StackNamespaceLabel]
		return ns != "" && ns != namespace
	}), nil
}

// lbcBindingsWithRules names the Service's TargetGroupBindings that still
// tell the AWS Load Balancer Controller to manage node-group rules (where
// its mode without NLB security groups writes a rule per source), or that
// it has not reconciled since they changed.
func lbcBindingsWithRules(ctx context.Context, c client.Client, namespace, name string) ([]string, error) {
	bindings, err := lbcBindings(ctx, c, namespace, name)
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, b := range bindings {
		observed, _, _ := unstructured.NestedInt64(b.Object, "status", "observedGeneration")
		_, networking, _ := unstructured.NestedMap(b.Object, "spec", "networking")
		if networking || observed != b.GetGeneration() {
			pending = append(pending, b.GetName())
		}
	}
	return pending, nil
}

// lbcBindingRules counts the per-source node-group rules the Service's
// TargetGroupBindings ask the controller for: one per port for each peer of
// spec.networking that is one of the sources (health checks from the NLB's
// subnets and rules from its groups left out).
func lbcBindingRules(ctx context.Context, c client.Client, namespace, name string, sources []string) (int, error) {
	bindings, err := lbcBindings(ctx, c, namespace, name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bindings {
		rules, _, _ := unstructured.NestedSlice(b.Object, "spec", "networking", "ingress")
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			from, _, _ := unstructured.NestedSlice(rule, "from")
			ports, _, _ := unstructured.NestedSlice(rule, "ports")
			for _, peer := range from {
				cidr, _, _ := unstructured.NestedString(peer.(map[string]any), "ipBlock", "cidr")
				if cidr != "" && slices.Contains(sources, cidr) {
					n += max(1, len(ports))
				}
			}
		}
	}
	return n, nil
}

// migrationFacts are what decides whether an NLB Service can be adopted in
// place (the read-only check, telemetry_lbc_services).
type migrationFacts struct {
	hasNLB, nlbGroups, migrated bool
	perSource                   int  // the controller's rules for it
	nodeGroupRules              int  // rules in the node group, -1 when not read
	nodeRoom                    bool // room there for the hand-over's coarse cover (nodeRoom), when read
}

// verdict says whether the NLB can stay, with which nlb_security_group, and
// why, in words that do not change with the counts (those are attributes of
// their own, so an output of the reason converges). Without NLB security
// groups the coarse cover joins the controller's rules in the node group
// during the hand-over, as nodeRoom found it fits.
func (f migrationFacts) verdict() (inPlace, nlbSecurityGroup bool, reason string) {
	switch {
	case f.migrated:
		return true, f.nlbGroups || !f.hasNLB, "already migrated: the nlb-policy controller enforces its sources and the controller writes no per-source rule"
	case !f.hasNLB:
		return true, true, "no NLB yet: telemetry_nlb_ingress creates it with its own rules (import the Service first)"
	case f.nlbGroups:
		return true, true, "in place with nlb_security_group = true: the coarse cover goes to a frontend group of its own, " +
			"which the NLB takes over from the controller's groups; their per-source rules then go"
	case f.nodeGroupRules < 0:
		return true, false, "in place with nlb_security_group = false (the NLB has no security group, which AWS cannot add), " +
			"if the node group has room for the coarse cover beside the controller's rules: set node_security_group_id to check it"
	case !f.nodeRoom:
		return false, false, "no room in the node group for the coarse cover beside the controller's rules, even at one prefix " +
			"per port (fullest_group_rules against the quota): raise the quota, free rules, or move the exporters to a new NLB " +
			"beside this one (the two-NLB path)"
	}
	return true, false, "in place with nlb_security_group = false (the NLB has no security group, which AWS cannot add): the " +
		"coarse cover joins the node group during the hand-over, then the controller's per-source rules go"
}

// migrationPlan is what the plan of a migration says before anything
// changes: the steps, or why the NLB cannot stay.
func migrationPlan(prior, plan *ingressModel) (problem, steps string) {
	var replaced []string
	if !plan.NLBSecurityGroup.IsUnknown() && !plan.NLBSecurityGroup.Equal(prior.NLBSecurityGroup) {
		if prior.NLBSecurityGroup.ValueBool() {
			replaced = append(replaced, "the NLB has security groups, which AWS cannot remove all of: set nlb_security_group = true")
		} else {
			replaced = append(replaced, "the NLB was created without security groups, which AWS cannot add to it: set "+
				"nlb_security_group = false (the node group then holds the coarse cover)")
		}
	}
	if !plan.Scheme.IsUnknown() && !plan.Scheme.Equal(prior.Scheme) {
		replaced = append(replaced, fmt.Sprintf("the NLB is %s: set scheme = %q", prior.Scheme.ValueString(), prior.Scheme.ValueString()))
	}
	if !plan.TargetType.IsUnknown() && !plan.TargetType.Equal(prior.TargetType) {
		replaced = append(replaced, fmt.Sprintf("the NLB has %s targets: set target_type = %q", prior.TargetType.ValueString(), prior.TargetType.ValueString()))
	}
	if len(replaced) > 0 {
		return fmt.Sprintf("Service %s is imported with the NLB %s, whose per-source rules the AWS Load Balancer Controller "+
			"manages. This configuration would replace the NLB (a new DNS name, every exporter to re-point):\n- %s\n\nTo keep "+
			"the NLB, change the configuration as above. To get a new NLB anyway, run one beside the old and move the exporters "+
			"over (the two-NLB path in docs/guides/migrating-from-lbc-rules.md).",
			prior.ID.ValueString(), prior.DNSName.ValueString(), strings.Join(replaced, "\n- ")), ""
	}
	return "", fmt.Sprintf("This apply migrates Service %s and its NLB %s in place from the AWS Load Balancer Controller's "+
		"per-source rules: 1. the Service opts in to Calico policies and the apply waits for the nlb-policy controller's "+
		"acknowledgement; 2. the coarse cover is added; 3. the controller is told to stop managing per-source rules, and "+
		"the apply waits until it has moved the NLB onto this ingress's groups and removed its rules. A failed step leaves the "+
		"sources admitted as before it; docs/guides/migrating-from-lbc-rules.md says how to check and roll back each step.",
		prior.ID.ValueString(), prior.DNSName.ValueString())
}

// refuseForeignFrontend refuses at plan time an ingress whose Service (an
// imported one) names a security group the ingress does not own: apply
// would refuse to write its rules, so a plan showing them would never
// converge. The plan says why and what to do instead. AWS not answering is
// left to apply, which checks again.
func (r *nlbIngressResource) refuseForeignFrontend(ctx context.Context, plan *ingressModel, diags *diag.Diagnostics) {
	if r.clients == nil || plan.Namespace.IsUnknown() || plan.Name.IsUnknown() {
		return
	}
	c, ok := r.kube(&diag.Diagnostics{})
	if !ok {
		return
	}
	a, ok := r.aws(ctx, c, &diag.Diagnostics{})
	if !ok {
		return
	}
	o, id := ruleOwner(plan.Namespace.ValueString(), plan.Name.ValueString()), plan.FrontendSecurityGroupID.ValueString()
	if foreign, err := a.frontendForeign(ctx, o, id); err == nil && foreign {
		diags.AddError("The Service names a security group this ingress does not own", notOwnedError(id, o).Error())
	}
}

// nodeRoom says whether the node group has room, beside foreign (its rules
// that are not this ingress's), for the coarse cover during the hand-over of
// the Service's NLB without security groups, within quota rules per group
// and family: what the apply computes (handOverRulesWithin) for the Service
// as an import reads it.
func nodeRoom(ctx context.Context, svc *corev1.Service, nodeSG string, foreign []sgRule, quota int) (bool, error) {
	m := &ingressModel{}
	if d := m.setFromService(ctx, svc); d.HasError() {
		return false, fmt.Errorf("reading Service %s/%s: %v", svc.Namespace, svc.Name, d)
	}
	m.NodeSecurityGroupID = types.StringValue(nodeSG)
	spec, _, d := m.spec(ctx)
	if d.HasError() {
		return false, fmt.Errorf("reading Service %s/%s: %v", svc.Namespace, svc.Name, d)
	}
	spec.NLBSecurityGroup = false // the NLB has none, which AWS cannot add
	spec.NodePorts, spec.HealthCheckNodePort = nodePortsFromService(svc)
	_, err := spec.handOverRulesWithin(foreign, quota)
	return err == nil, nil
}
