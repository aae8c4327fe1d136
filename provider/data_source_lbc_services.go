package provider

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

var _ datasource.DataSourceWithConfigure = (*lbcServicesDataSource)(nil)

// lbcServicesDataSource is telemetry_lbc_services: the read-only check to
// run before migrating from the AWS Load Balancer Controller's per-source
// rules (docs/guides/migrating-from-lbc-rules.md).
type lbcServicesDataSource struct {
	clients *clients
}

func newLBCServicesDataSource() datasource.DataSource { return &lbcServicesDataSource{} }

type lbcServicesModel struct {
	Namespace           types.String `tfsdk:"namespace"`
	NodeSecurityGroupID types.String `tfsdk:"node_security_group_id"`
	RulesQuota          types.Int64  `tfsdk:"rules_per_group_quota"`
	Services            types.List   `tfsdk:"services"`
}

var lbcServiceType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"id": types.StringType, "load_balancer_arn": types.StringType, "dns_name": types.StringType,
	"security_groups": types.ListType{ElemType: types.StringType}, "per_source_rules": types.Int64Type,
	"fullest_group": types.StringType, "fullest_group_rules": types.Int64Type,
	"migrated": types.BoolType, "migratable_in_place": types.BoolType, "nlb_security_group": types.BoolType, "reason": types.StringType,
}}

func (d *lbcServicesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_lbc_services"
}

func (d *lbcServicesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The NLB Services of the cluster that the AWS Load Balancer Controller manages, with the " +
			"per-source security-group rules it writes for each, the fullest group against AWS's quota, and whether " +
			"`telemetry_nlb_ingress` can adopt each in place (same NLB, same DNS name) or only beside a new NLB. " +
			"Read-only: run it before a migration (see the guide *Migrating from the AWS Load Balancer Controller's " +
			"rules*). It reads Services and TargetGroupBindings from the cluster, and load balancers and security " +
			"groups from AWS.",
		Attributes: map[string]schema.Attribute{
			"namespace": schema.StringAttribute{Optional: true, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Only Services of this namespace. Default: every namespace."},
			"node_security_group_id": schema.StringAttribute{Optional: true,
				Validators: []validator.String{stringvalidator.RegexMatches(sgIDPattern, "must be a security group ID (sg-...)")},
				MarkdownDescription: "The nodes' security group: for NLBs without security groups, where both the " +
					"controller's rules and the coarse cover go, the check counts its room. Without it that room is not checked."},
			"rules_per_group_quota": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.AtLeast(1)},
				MarkdownDescription: fmt.Sprintf("Inbound rules per security group allowed in the account (per address "+
					"family). Default `%d`, AWS's default quota.", rulesPerGroupQuota)},
			"services": schema.ListAttribute{Computed: true, ElementType: lbcServiceType,
				MarkdownDescription: "One object per NLB Service, ordered by `id` (`<namespace>/<name>`, the import ID " +
					"of `telemetry_nlb_ingress`): `load_balancer_arn` and `dns_name` (empty before the NLB exists), " +
					"`security_groups` of the NLB, `per_source_rules` the controller holds for it (its frontend groups' " +
					"rules, and the node-group rules its TargetGroupBindings ask for), `fullest_group` and " +
					"`fullest_group_rules` (the group of those with the most inbound rules, all of them counted), `migrated` " +
					"(already handed over to the nlb-policy controller), `migratable_in_place`, `nlb_security_group` (the " +
					"value of `telemetry_nlb_ingress.nlb_security_group` that keeps the NLB) and `reason`."},
		},
	}
}

func (d *lbcServicesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *lbcServicesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m lbcServicesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	quota := rulesPerGroupQuota
	if !m.RulesQuota.IsNull() {
		quota = int(m.RulesQuota.ValueInt64())
	}
	c, _, ok := d.clients.kubeOrDiag(&resp.Diagnostics)
	if !ok {
		return
	}
	var opts []client.ListOption
	if ns := m.Namespace.ValueString(); ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	var services corev1.ServiceList
	if err := c.List(ctx, &services, opts...); err != nil {
		resp.Diagnostics.AddError("Cannot list the Services", kubeReachError(d.clients, err))
		return
	}
	ec, err := d.clients.EC2(ctx)
	if err != nil {
		resp.Diagnostics.AddError("AWS configuration", err.Error())
		return
	}
	elb, err := d.clients.ELBv2(ctx)
	if err != nil {
		resp.Diagnostics.AddError("AWS configuration", err.Error())
		return
	}
	a := ingressAWS{ec2: ec, elb: elb}
	nodeGroupRules := -1
	if sg := m.NodeSecurityGroupID.ValueString(); sg != "" {
		if nodeGroupRules, err = groupRuleCount(ctx, ec, sg); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("node_security_group_id"), "Cannot read the node security group", err.Error())
			return
		}
	}
	slices.SortFunc(services.Items, func(x, y corev1.Service) int {
		return strings.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
	})
	var bindingsUnreadable error
	out := []attr.Value{}
	for i := range services.Items {
		svc := &services.Items[i]
		if !lbc.IsNLB(svc) {
			continue
		}
		f := migrationFacts{migrated: handedOver(svc.Annotations) &&
			svc.Annotations[annotations.NLBPolicy] == annotations.Enabled, nodeGroupRules: nodeGroupRules}
		var lb *awsnlb.LoadBalancer
		if host := awsnlb.Hostname(svc); host != "" {
			if lb, err = a.findLoadBalancer(ctx, host); err != nil {
				resp.Diagnostics.AddError("Cannot read the load balancers", err.Error())
				return
			}
		}
		f.hasNLB = lb != nil
		groups := []string{}
		if lb != nil {
			groups = lb.SecurityGroups
			f.nlbGroups = len(groups) > 0
		}
		front, err := a.lbcManagedGroupRules(ctx, svc.Namespace, svc.Name)
		if err != nil {
			resp.Diagnostics.AddError("Cannot read the controller's security groups", err.Error())
			return
		}
		fullest, fullestRules := "", 0
		for _, g := range slices.Sorted(maps.Keys(front)) {
			f.perSource += front[g]
			if front[g] > fullestRules {
				fullest, fullestRules = g, front[g]
			}
		}
		backend, err := lbcBindingRules(ctx, c, svc.Namespace, svc.Name, lbc.SourceRangesOf(svc))
		switch {
		case apierrors.IsForbidden(err) || meta.IsNoMatchError(err):
			bindingsUnreadable = err
		case err != nil:
			resp.Diagnostics.AddError("Cannot read the TargetGroupBindings", err.Error())
			return
		}
		f.perSource += backend
		if sg := m.NodeSecurityGroupID.ValueString(); sg != "" && f.hasNLB && !f.nlbGroups && !f.migrated {
			foreign, err := a.foreignNodeRules(ctx, ruleOwner(svc.Namespace, svc.Name), sg)
			if err == nil {
				f.nodeRoom, err = nodeRoom(ctx, svc, sg, foreign, quota)
			}
			if err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("node_security_group_id"), "Cannot check the node security group's room", err.Error())
				return
			}
		}
		if !f.nlbGroups && nodeGroupRules > fullestRules {
			fullest, fullestRules = m.NodeSecurityGroupID.ValueString(), nodeGroupRules
		}
		ok, nlbSG, reason := f.verdict()
		out = append(out, types.ObjectValueMust(lbcServiceType.AttrTypes, map[string]attr.Value{
			"id":                  types.StringValue(svc.Namespace + "/" + svc.Name),
			"load_balancer_arn":   types.StringValue(lbOr(lb, func(l *awsnlb.LoadBalancer) string { return l.ARN })),
			"dns_name":            types.StringValue(lbOr(lb, func(l *awsnlb.LoadBalancer) string { return l.DNSName })),
			"security_groups":     stringList(groups),
			"per_source_rules":    types.Int64Value(int64(f.perSource)),
			"fullest_group":       types.StringValue(fullest),
			"fullest_group_rules": types.Int64Value(int64(fullestRules)),
			"migrated":            types.BoolValue(f.migrated),
			"migratable_in_place": types.BoolValue(ok),
			"nlb_security_group":  types.BoolValue(nlbSG),
			"reason":              types.StringValue(reason),
		}))
	}
	if bindingsUnreadable != nil {
		resp.Diagnostics.AddWarning("TargetGroupBindings not read", fmt.Sprintf("Reading the AWS Load Balancer Controller's "+
			"TargetGroupBindings failed (%v), so per_source_rules leaves out the node-group rules of NLBs without security "+
			"groups. %s", bindingsUnreadable, targetGroupBindingsAdvice(bindingsUnreadable)))
	}
	m.Services = types.ListValueMust(lbcServiceType, out)
	if m.RulesQuota.IsNull() {
		m.RulesQuota = types.Int64Null()
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func lbOr(lb *awsnlb.LoadBalancer, f func(*awsnlb.LoadBalancer) string) string {
	if lb == nil {
		return ""
	}
	return f(lb)
}

// groupRuleCount counts a group's inbound rules (awsnlb.InboundRules).
func groupRuleCount(ctx context.Context, ec *ec2.Client, group string) (int, error) {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		return 0, fmt.Errorf("describing security group %s: %w", group, err)
	}
	n := 0
	for _, g := range out.SecurityGroups {
		n += awsnlb.InboundRules(g.IpPermissions)
	}
	return n, nil
}
