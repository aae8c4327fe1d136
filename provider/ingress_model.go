package provider

import (
	"context"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// The telemetry_nlb_ingress model: its Terraform values, their conversion to
// the pure ingressSpec (ingress_spec.go), and back from the Service and the
// NLB the resource reads.

type ingressModel struct {
	ID                       types.String   `tfsdk:"id"`
	Name                     types.String   `tfsdk:"name"`
	Namespace                types.String   `tfsdk:"namespace"`
	Selector                 types.Map      `tfsdk:"selector"`
	Ports                    types.List     `tfsdk:"ports"`
	AllowedSources           types.Set      `tfsdk:"allowed_sources"`
	TargetType               types.String   `tfsdk:"target_type"`
	Scheme                   types.String   `tfsdk:"scheme"`
	Subnets                  types.List     `tfsdk:"subnets"`
	ExternalTrafficPolicy    types.String   `tfsdk:"external_traffic_policy"`
	PolicyBackend            types.String   `tfsdk:"policy_backend"`
	NodeSecurityGroupID      types.String   `tfsdk:"node_security_group_id"`
	NLBSecurityGroup         types.Bool     `tfsdk:"nlb_security_group"`
	NodePortRange            types.String   `tfsdk:"node_port_range"`
	Annotations              types.Map      `tfsdk:"annotations"`
	WaitForLoadBalancer      types.Bool     `tfsdk:"wait_for_load_balancer"`
	Timeouts                 timeouts.Value `tfsdk:"timeouts"`
	SourceRanges             types.List     `tfsdk:"source_ranges"`
	FrontendSecurityGroupID  types.String   `tfsdk:"frontend_security_group_id"`
	SecurityGroupRules       types.List     `tfsdk:"security_group_rules"`
	PerSourceModel           types.Int64    `tfsdk:"security_group_rules_per_source_model"`
	VPCID                    types.String   `tfsdk:"vpc_id"`
	LoadBalancerARN          types.String   `tfsdk:"load_balancer_arn"`
	DNSName                  types.String   `tfsdk:"dns_name"`
	SubnetCIDRs              types.List     `tfsdk:"subnet_cidrs"`
	State                    types.String   `tfsdk:"state"`
	WaitForEnforcement       types.Bool     `tfsdk:"wait_for_enforcement"`
	EnforcementTimeout       types.String   `tfsdk:"enforcement_timeout"`
	PolicyEnforced           types.Bool     `tfsdk:"policy_enforced"`
	ManagedAnnotations       types.Map      `tfsdk:"managed_annotations"`
	LoadBalancerAsConfigured types.Bool     `tfsdk:"load_balancer_as_configured"`
	NodePorts                types.Map      `tfsdk:"node_ports"`
	HealthCheckNodePort      types.Int64    `tfsdk:"health_check_node_port"`
	CoverSize                types.Int64    `tfsdk:"coarse_cover_size"`
	Cover                    types.List     `tfsdk:"coarse_cover"`
	CoverExtra               types.Number   `tfsdk:"coarse_cover_extra_addresses"`
}

type ingressPortModel struct {
	Name       types.String `tfsdk:"name"`
	Protocol   types.String `tfsdk:"protocol"`
	Port       types.Int64  `tfsdk:"port"`
	TargetPort types.Int64  `tfsdk:"target_port"`
}

// serviceAbsent reports a state refreshed while the Service was gone (see
// readWithoutService).
func (m *ingressModel) serviceAbsent() bool { return m.ManagedAnnotations.IsNull() }

// managedAnnotation is one of the provider's annotations as the state has
// it on the Service ("" when absent or unknown).
func (m *ingressModel) managedAnnotation(k string) string {
	if v, ok := m.ManagedAnnotations.Elements()[k].(types.String); ok {
		return v.ValueString()
	}
	return ""
}

// migrationPending: the state holds an NLB whose Service still leaves its
// sources to the AWS Load Balancer Controller's per-source rules (imported
// and not migrated yet, or a migration that stopped half-way).
func (m *ingressModel) migrationPending() bool {
	if m.LoadBalancerARN.ValueString() == "" || m.serviceAbsent() || m.ManagedAnnotations.IsUnknown() {
		return false
	}
	ann := map[string]string{}
	for _, k := range lbcHandOver {
		ann[k] = m.managedAnnotation(k)
	}
	return !handedOver(ann)
}

// fillDefaults sets the optional attributes left unset to their defaults,
// as the plan has them: the configuration validated before a plan (see
// ValidateConfig) then means what the plan will.
func (m *ingressModel) fillDefaults() {
	str := func(v *types.String, def string) {
		if v.IsNull() {
			*v = types.StringValue(def)
		}
	}
	boolean := func(v *types.Bool, def bool) {
		if v.IsNull() {
			*v = types.BoolValue(def)
		}
	}
	str(&m.TargetType, defaultTargetType)
	str(&m.Scheme, defaultScheme)
	str(&m.ExternalTrafficPolicy, defaultETP)
	str(&m.NodePortRange, defaultNodePortRange)
	str(&m.EnforcementTimeout, defaultEnforcementTimeout.String())
	boolean(&m.NLBSecurityGroup, defaultNLBSecurityGroup)
	boolean(&m.WaitForLoadBalancer, defaultWaitForLoadBalancer)
	boolean(&m.WaitForEnforcement, defaultWaitForEnforcement)
	if m.CoverSize.IsNull() {
		m.CoverSize = types.Int64Value(defaultCoverSize)
	}
}

// knownInputs says which parts of a plan are known.
type knownInputs struct{ ports, sources, rest bool }

func (k knownInputs) all() bool { return k.ports && k.sources && k.rest }

// spec converts the model; parts whose values are unknown are left empty
// and reported in knownInputs.
func (m *ingressModel) spec(ctx context.Context) (ingressSpec, knownInputs, diag.Diagnostics) {
	var diags diag.Diagnostics
	var known knownInputs
	s := ingressSpec{
		Name: m.Name.ValueString(), Namespace: m.Namespace.ValueString(),
		TargetType: m.TargetType.ValueString(), Scheme: m.Scheme.ValueString(),
		ETP:           corev1.ServiceExternalTrafficPolicy(m.ExternalTrafficPolicy.ValueString()),
		PolicyBackend: m.PolicyBackend.ValueString(),
		NodeSG:        m.NodeSecurityGroupID.ValueString(), NLBSecurityGroup: m.NLBSecurityGroup.ValueBool(),
		Selector: map[string]string{}, Annotations: map[string]string{},
		CoverSize: int(m.CoverSize.ValueInt64()),
	}
	if m.CoverSize.IsNull() || m.CoverSize.IsUnknown() {
		s.CoverSize = defaultCoverSize
	}
	s.NodePorts, _ = int32Map(ctx, m.NodePorts)
	s.HealthCheckNodePort = int32(m.HealthCheckNodePort.ValueInt64())
	known.rest = !m.TargetType.IsUnknown() && !m.NLBSecurityGroup.IsUnknown() && !m.NodePortRange.IsUnknown()
	if lo, hi, ok := strings.Cut(m.NodePortRange.ValueString(), "-"); ok {
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if a < 1 || b > 65535 || a > b {
			diags.AddAttributeError(path.Root("node_port_range"), "Invalid port range", m.NodePortRange.ValueString()+" is not a port range")
		}
		s.NodePortMin, s.NodePortMax = int32(a), int32(b)
	}
	if !m.Selector.IsUnknown() {
		diags.Append(m.Selector.ElementsAs(ctx, &s.Selector, false)...)
	}
	if !m.Annotations.IsNull() && !m.Annotations.IsUnknown() {
		diags.Append(m.Annotations.ElementsAs(ctx, &s.Annotations, false)...)
	}
	if !m.Subnets.IsNull() && !m.Subnets.IsUnknown() {
		diags.Append(m.Subnets.ElementsAs(ctx, &s.Subnets, false)...)
	}
	if !m.AllowedSources.IsUnknown() {
		s.Sources = parseSources(ctx, m.AllowedSources, &diags)
		known.sources = !slices.ContainsFunc(m.AllowedSources.Elements(), attr.Value.IsUnknown)
	}
	s.Ports, known.ports = m.ports(ctx, &diags)
	return s, known, diags
}

// ports converts the ports (an unset or unknown target port is the port);
// known is false while any name, protocol or port is unknown.
func (m *ingressModel) ports(ctx context.Context, diags *diag.Diagnostics) (out []ingressPort, known bool) {
	if m.Ports.IsUnknown() || m.Ports.IsNull() {
		return nil, !m.Ports.IsUnknown()
	}
	var ports []ingressPortModel
	diags.Append(m.Ports.ElementsAs(ctx, &ports, false)...)
	known = true
	for _, p := range ports {
		if p.Name.IsUnknown() || p.Protocol.IsUnknown() || p.Port.IsUnknown() {
			known = false
		}
		target := p.TargetPort.ValueInt64()
		if p.TargetPort.IsNull() || p.TargetPort.IsUnknown() {
			target = p.Port.ValueInt64()
		}
		out = append(out, ingressPort{Name: p.Name.ValueString(), Protocol: p.Protocol.ValueString(),
			Port: int32(p.Port.ValueInt64()), TargetPort: int32(target)})
	}
	return out, known
}

// lastAppliedAnnotation is kubectl's record of what `kubectl apply` last
// wrote: its bookkeeping, not a user's setting. Import does not adopt it (the
// provider, which does not own it, would never remove it, so a plan showing
// it go would not converge).
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// setFromService refreshes the model from the Service. allowed_sources keeps
// the configured spelling while it aggregates to what the Service holds.
func (m *ingressModel) setFromService(ctx context.Context, svc *corev1.Service) diag.Diagnostics {
	var diags diag.Diagnostics
	// On import the state holds nothing but the ID.
	importing := m.Namespace.IsNull()
	m.ID = types.StringValue(svc.Namespace + "/" + svc.Name)
	m.Name = types.StringValue(svc.Name)
	m.Namespace = types.StringValue(svc.Namespace)
	sel, d := types.MapValueFrom(ctx, types.StringType, svc.Spec.Selector)
	diags.Append(d...)
	m.Selector = sel
	prior, _ := m.ports(ctx, &diags)
	m.Ports = portsValue(portsFromService(svc, prior))
	ranges := lbc.SourceRangesOf(svc)
	current, _ := cidrset.Parse(ranges)
	m.SourceRanges = stringList(current.Strings())
	var configured []string
	if !m.AllowedSources.IsNull() {
		diags.Append(m.AllowedSources.ElementsAs(ctx, &configured, false)...)
	}
	if prior, _ := cidrset.Parse(configured); len(configured) == 0 || !slices.Equal(prior.Strings(), current.Strings()) {
		m.AllowedSources, d = types.SetValueFrom(ctx, types.StringType, ranges)
		diags.Append(d...)
	}
	ann := svc.Annotations
	m.TargetType = types.StringValue(lbc.TargetType(svc))
	m.Scheme = types.StringValue(lbc.SchemeOf(svc))
	if subnets := lbc.SplitList(ann[lbc.Subnets]); len(subnets) > 0 {
		m.Subnets = stringList(subnets)
	} else {
		m.Subnets = types.ListNull(types.StringType)
	}
	m.ExternalTrafficPolicy = types.StringValue(string(svc.Spec.ExternalTrafficPolicy))
	if b, ok := ann[annotations.PolicyBackend]; ok {
		m.PolicyBackend = types.StringValue(b)
	} else {
		m.PolicyBackend = types.StringNull()
	}
	m.setNodePorts(nodePortsFromService(svc))
	// The node group is recorded on the Service by the provider. A Service made
	// by hand has none: imported, the attribute stays null and the plan shows
	// it set; removed by hand, the state keeps it (managed_annotations shows
	// the edit).
	if sg := ann[annotations.NodeSecurityGroup]; sg != "" {
		m.NodeSecurityGroupID = types.StringValue(sg)
	} else if importing {
		m.NodeSecurityGroupID = types.StringNull()
	}
	m.NLBSecurityGroup = types.BoolValue(ann[lbc.DisableNLBSecurityGroup] != "true")
	// A frontend group removed from the annotation by hand is still the
	// ingress's: the state keeps it, and managed_annotations shows the edit.
	if ann[lbc.SecurityGroups] != "" || m.FrontendSecurityGroupID.ValueString() == "" {
		m.FrontendSecurityGroupID = types.StringValue(ann[lbc.SecurityGroups])
	}
	m.ManagedAnnotations = stringMap(managedAnnotationsOf(svc))
	// What the Service does not say is at its default, as a plan would have it.
	m.fillDefaults()
	// User annotations: the keys already tracked, or on import every one the
	// provider does not write itself.
	user := map[string]string{}
	tracked := m.Annotations.Elements()
	for k, v := range ann {
		if slices.Contains(managedServiceAnnotations, k) {
			continue
		}
		if _, ok := tracked[k]; ok || (importing && k != lastAppliedAnnotation) {
			user[k] = v
		}
	}
	if len(user) == 0 && m.Annotations.IsNull() {
		m.Annotations = types.MapNull(types.StringType)
	} else {
		m.Annotations, d = types.MapValueFrom(ctx, types.StringType, user)
		diags.Append(d...)
	}
	return diags
}

// setNodePorts records the Service's allocated NodePorts.
func (m *ingressModel) setNodePorts(ports map[string]int32, health int32) {
	elems := map[string]attr.Value{}
	for k, v := range ports {
		elems[k] = types.Int64Value(int64(v))
	}
	m.NodePorts = types.MapValueMust(types.Int64Type, elems)
	m.HealthCheckNodePort = types.Int64Value(int64(health))
}

// int32Map reads a known map of numbers; nil when null or unknown.
func int32Map(ctx context.Context, m types.Map) (map[string]int32, diag.Diagnostics) {
	if m.IsNull() || m.IsUnknown() {
		return nil, nil
	}
	var raw map[string]int64
	d := m.ElementsAs(ctx, &raw, false)
	out := map[string]int32{}
	for k, v := range raw {
		out[k] = int32(v)
	}
	return out, d
}

// setCover fills the coarse cover of the sources.
func (m *ingressModel) setCover(spec ingressSpec) {
	cover, extra := spec.cover()
	m.Cover = stringList(cover.Strings())
	m.CoverExtra = types.NumberValue(new(big.Float).SetInt(extra))
}

func (m *ingressModel) setLoadBalancer(lb *awsnlb.LoadBalancer) {
	if lb == nil {
		lb = &awsnlb.LoadBalancer{}
	}
	m.LoadBalancerARN = types.StringValue(lb.ARN)
	m.DNSName = types.StringValue(lb.DNSName)
	m.State = types.StringValue(lb.State)
	m.SubnetCIDRs = stringList(lb.SubnetCIDRs)
}

func portsValue(ports []ingressPort) types.List {
	var elems []attr.Value
	for _, p := range ports {
		elems = append(elems, types.ObjectValueMust(ingressPortAttrTypes, map[string]attr.Value{
			"name": types.StringValue(p.Name), "protocol": types.StringValue(p.Protocol),
			"port": types.Int64Value(int64(p.Port)), "target_port": types.Int64Value(int64(p.TargetPort)),
		}))
	}
	return types.ListValueMust(types.ObjectType{AttrTypes: ingressPortAttrTypes}, elems)
}

func stringMap(m map[string]string) types.Map {
	elems := make(map[string]attr.Value, len(m))
	for k, v := range m {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

func stringList(values []string) types.List {
	elems := make([]attr.Value, len(values))
	for i, v := range values {
		elems[i] = types.StringValue(v)
	}
	return types.ListValueMust(types.StringType, elems)
}

// parseSources parses allowed_sources (known), each invalid CIDR an error
// on the attribute.
func parseSources(ctx context.Context, sources types.Set, diags *diag.Diagnostics) cidrset.Set {
	var raw []string
	diags.Append(sources.ElementsAs(ctx, &raw, true)...)
	set, errs := cidrset.Parse(raw)
	for _, err := range errs {
		diags.AddAttributeError(path.Root("allowed_sources"), "Invalid CIDR", err.Error())
	}
	return set
}
