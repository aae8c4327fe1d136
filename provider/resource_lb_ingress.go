package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// telemetry_lb_ingress: the exporters' entry point behind a load balancer
// other than the AWS NLB (MetalLB, GKE's passthrough NLB, any class). No
// cloud rules to write: the Service (lb_ingress_spec.go) is written, the
// nlb-policy controller's acknowledgement waited for (its NetworkPolicy
// enforced at the pods), then the load balancer's addresses.

const (
	defaultLBEnforcementTimeout = 2 * time.Minute
	// lbHeld says what stays closed while the acknowledgement is awaited.
	lbHeld = "The Service is written: kube-proxy refuses new flows of unlisted sources at its load-balancer address, " +
		"but the pods are not filtered until the policy is enforced."
)

type lbIngressModel struct {
	ID                    types.String `tfsdk:"id"`
	Name                  types.String `tfsdk:"name"`
	Namespace             types.String `tfsdk:"namespace"`
	Kind                  types.String `tfsdk:"kind"`
	Selector              types.Map    `tfsdk:"selector"`
	Ports                 types.List   `tfsdk:"ports"`
	AllowedSources        types.Set    `tfsdk:"allowed_sources"`
	AddressPool           types.String `tfsdk:"address_pool"`
	Addresses             types.List   `tfsdk:"addresses"`
	SharedIPKey           types.String `tfsdk:"shared_ip_key"`
	LoadBalancerClass     types.String `tfsdk:"load_balancer_class"`
	Internal              types.Bool   `tfsdk:"internal"`
	EnforcementTimeout    types.String `tfsdk:"enforcement_timeout"`
	WaitForAddresses      types.Bool   `tfsdk:"wait_for_addresses"`
	SourceRanges          types.List   `tfsdk:"source_ranges"`
	LoadBalancerAddresses types.List   `tfsdk:"load_balancer_addresses"`
	PolicyEnforced        types.Bool   `tfsdk:"policy_enforced"`
}

type lbIngressResource struct{ clients *clients }

var (
	_ resource.ResourceWithConfigure      = &lbIngressResource{}
	_ resource.ResourceWithImportState    = &lbIngressResource{}
	_ resource.ResourceWithValidateConfig = &lbIngressResource{}
	_ resource.ResourceWithModifyPlan     = &lbIngressResource{}
)

func newLBIngressResource() resource.Resource { return &lbIngressResource{} }

func (r *lbIngressResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_lb_ingress"
}

func (r *lbIngressResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = lbIngressSchema()
}

// lbIngressSchema is the schema of telemetry_lb_ingress.
func lbIngressSchema() schema.Schema {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	return schema.Schema{
		MarkdownDescription: "The exporters' entry point behind a load balancer other than the AWS NLB: MetalLB (bare metal, " +
			"L2 or BGP), GKE's passthrough NLB, or any `loadBalancerClass`. A Kubernetes Service of type LoadBalancer with " +
			"`externalTrafficPolicy: Local` (the client's address reaches the pods), the sources as `loadBalancerSourceRanges`, " +
			"only the address families the sources name, and no NodePorts (except on GKE); the `nlb-policy` controller filters " +
			"every source at the collector pods with a Kubernetes NetworkPolicy (its `networkpolicy` backend, which must be " +
			"among its allowed backends), and the apply waits for its acknowledgement.\n\n" +
			"There is no cloud firewall on bare metal: the address is what lets exporters in. With MetalLB a new Service is " +
			"written in a pool no pool can be (`" + metalLBHeldPool + "`), so it gets no address and nothing is announced, " +
			"until the controller has acknowledged its policy; then it is released to its pool. On an edit (the Service has " +
			"its address) the promise is \"acknowledged before reported ready\": until the controller acknowledges, kube-proxy " +
			"(which implements `loadBalancerSourceRanges` at the load balancer's address) refuses new flows of unlisted sources " +
			"at the address, but a source removed from the list keeps its running flow. Other kinds have no hold (a generic " +
			"class's controller is unknown; GKE's firewall follows the sources). See the policy backends' page for what was " +
			"measured with real MetalLB, kube-proxy and kube-router. GKE is rendered and validated only (no GCP API runs in " +
			"this project's tests).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "`<namespace>/<name>` of the Service; the import ID."},
			"name": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Name of the Service. Changing it replaces the ingress (a new Service, a new address)."},
			"namespace": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Namespace of the Service (the collectors'). Changing it replaces the ingress."},
			"kind": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{stringvalidator.OneOf(lbKinds...)},
				MarkdownDescription: "Which load balancer gives the Service its address: `" + lbKindMetalLB + "`, `" + lbKindGKE +
					"` (rendered and validated only) or `" + lbKindGeneric + "` (any other, e.g. kube-vip, chosen by `load_balancer_class`). " +
					"Changing it replaces the ingress."},
			"selector": schema.MapAttribute{Required: true, ElementType: types.StringType,
				Validators:          []validator.Map{mapvalidator.SizeAtLeast(1)},
				MarkdownDescription: "Labels of the collector pods."},
			"ports": schema.ListNestedAttribute{Required: true,
				Validators:          []validator.List{listvalidator.SizeBetween(1, 50)},
				MarkdownDescription: "Listener ports. Names and port/protocol pairs must be unique.",
				NestedObject:        ingressPortsSchema()},
			"allowed_sources": schema.SetAttribute{Required: true, ElementType: types.StringType,
				Validators: []validator.Set{setvalidator.SizeAtLeast(1), setvalidator.ValueStringsAre(cidrValidator{})},
				MarkdownDescription: "CIDRs allowed to send (IPv4 and IPv6). Aggregated into the Service's " +
					"`loadBalancerSourceRanges`; the Service gets the families these name and no other (kube-proxy leaves a family " +
					"without sources open at the address). There is no implicit \"allow all\": write `0.0.0.0/0` to mean it."},
			"address_pool": schema.StringAttribute{Optional: true, Validators: []validator.String{dnsLabelValidator{max: 253}},
				MarkdownDescription: "`" + lbKindMetalLB + "` only: the IPAddressPool to take the address from (`" + metalLBPool + "`)."},
			"addresses": schema.ListAttribute{Optional: true, ElementType: types.StringType,
				Validators:          []validator.List{listvalidator.SizeBetween(1, 2), listvalidator.ValueStringsAre(ipValidator{})},
				MarkdownDescription: "`" + lbKindMetalLB + "` only: the addresses to ask for, one per family at most (`" + metalLBIPs + "`)."},
			"shared_ip_key": schema.StringAttribute{Optional: true,
				MarkdownDescription: "`" + lbKindMetalLB + "` only: Services with the same key may share an address (`" + metalLBSharedIP + "`)."},
			"load_balancer_class": schema.StringAttribute{Optional: true, PlanModifiers: replace,
				MarkdownDescription: "`" + lbKindGeneric + "` only: `spec.loadBalancerClass` (fixed once written: changing it replaces the ingress)."},
			"internal": schema.BoolAttribute{Optional: true,
				MarkdownDescription: "`" + lbKindGKE + "` only: an internal passthrough NLB (`" + gkeLBType + ": " + gkeInternal + "`)."},
			"enforcement_timeout": schema.StringAttribute{Optional: true, Computed: true,
				Default: stringdefault.StaticString(formatDuration(defaultLBEnforcementTimeout)), Validators: []validator.String{durationValidator{}},
				MarkdownDescription: "How long to wait for the nlb-policy controller's acknowledgement, then for the addresses. Default `" +
					formatDuration(defaultLBEnforcementTimeout) + "`."},
			"wait_for_addresses": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				MarkdownDescription: "Wait until the load balancer gives the Service an address of each family. Default `true`."},
			"source_ranges": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "`allowed_sources` aggregated, as written to the Service."},
			"load_balancer_addresses": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "The addresses the load balancer gave the Service (its status), where the exporters send."},
			"policy_enforced": schema.BoolAttribute{Computed: true,
				MarkdownDescription: "Whether the nlb-policy controller acknowledges the Service's current sources and ports."},
		},
	}
}

func (r *lbIngressResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

// spec converts the model; ok is false while a value it needs is unknown.
func (m *lbIngressModel) spec(ctx context.Context, diags *diag.Diagnostics) (s lbIngressSpec, known bool) {
	s = lbIngressSpec{Name: m.Name.ValueString(), Namespace: m.Namespace.ValueString(), Kind: m.Kind.ValueString(),
		AddressPool: m.AddressPool.ValueString(), SharedIPKey: m.SharedIPKey.ValueString(),
		Class: m.LoadBalancerClass.ValueString(), Internal: m.Internal.ValueBool(), Selector: map[string]string{}}
	known = !m.Kind.IsUnknown() && !m.Selector.IsUnknown() && !m.AllowedSources.IsUnknown() && !m.Addresses.IsUnknown() &&
		!slices.ContainsFunc(m.AllowedSources.Elements(), attr.Value.IsUnknown)
	if !m.Selector.IsUnknown() {
		diags.Append(m.Selector.ElementsAs(ctx, &s.Selector, false)...)
	}
	if !m.AllowedSources.IsUnknown() {
		s.Sources = parseSources(ctx, m.AllowedSources, diags)
	}
	if !m.Addresses.IsNull() && !m.Addresses.IsUnknown() {
		var raw []string
		diags.Append(m.Addresses.ElementsAs(ctx, &raw, true)...)
		for _, a := range raw {
			if ip, err := netip.ParseAddr(a); err == nil {
				s.Addresses = append(s.Addresses, ip)
			}
		}
	}
	ports, portsKnown := (&ingressModel{Ports: m.Ports}).ports(ctx, diags)
	s.Ports = ports
	return s, known && portsKnown
}

// ValidateConfig refuses, before any plan, what the configuration alone
// shows to be wrong, each with its fix.
func (r *lbIngressResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var config lbIngressModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	s, known := config.spec(ctx, &resp.Diagnostics)
	if !known || resp.Diagnostics.HasError() {
		return
	}
	for _, p := range s.problems() {
		resp.Diagnostics.AddError("Invalid load-balancer ingress", p)
	}
}

// ModifyPlan replaces the ingress when the Service's first address family
// would change (the API server refuses to change a Service's primary
// family), and marks what the apply recomputes.
func (r *lbIngressResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || req.State.Raw.IsNull() {
		return
	}
	var plan, state lbIngressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var d diag.Diagnostics
	want, known := plan.spec(ctx, &d)
	have, _ := state.spec(ctx, &d)
	if !known {
		return
	}
	if wf, hf := want.families(), have.families(); len(wf) > 0 && len(hf) > 0 && wf[0] != hf[0] {
		resp.RequiresReplace = append(resp.RequiresReplace, path.Root("allowed_sources"))
	}
	if !plan.AllowedSources.Equal(state.AllowedSources) {
		plan.SourceRanges = types.ListUnknown(types.StringType)
	}
	if !plan.AllowedSources.Equal(state.AllowedSources) || !plan.Ports.Equal(state.Ports) || !plan.Selector.Equal(state.Selector) {
		plan.PolicyEnforced = types.BoolUnknown()
		plan.LoadBalancerAddresses = types.ListUnknown(types.StringType)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *lbIngressResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan lbIngressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.apply(ctx, &plan, &resp.State, &resp.Diagnostics)
}

func (r *lbIngressResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan lbIngressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.apply(ctx, &plan, &resp.State, &resp.Diagnostics)
}

// stateSetter is the part of a response's state apply writes.
type stateSetter interface {
	Set(context.Context, any) diag.Diagnostics
}

// apply writes the Service, then waits for the acknowledgement and the
// addresses. Once the Service is written the state records it whatever
// follows, so a failed wait leaves nothing Terraform does not know of (the
// next apply waits again, a destroy deletes it).
func (r *lbIngressResource) apply(ctx context.Context, plan *lbIngressModel, state stateSetter, diags *diag.Diagnostics) {
	s, _ := plan.spec(ctx, diags)
	for _, p := range s.problems() {
		diags.AddError("Invalid load-balancer ingress", p)
	}
	if diags.HasError() {
		return
	}
	c, _, ok := r.clients.kubeOrDiag(diags)
	if !ok {
		return
	}
	// A new Service (or one a failed apply left held) gets no address until
	// the controller has acknowledged it (held), then is released.
	write, hold := s.held()
	if hold {
		live := &corev1.Service{}
		switch err := c.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Name}, live); {
		case err == nil:
			hold = stillHeld(live)
		case !apierrors.IsNotFound(err):
			diags.AddError("Cannot read the Service", err.Error())
			return
		}
	}
	if !hold {
		write = s
	}
	if _, err := applyService(ctx, c, write.service(), lbManagedOf); err != nil {
		diags.AddError("Cannot write the Service", err.Error())
		return
	}
	timeout, _ := parseDuration(plan.EnforcementTimeout.ValueString())
	waitErr := waitForAcknowledgement(ctx, c, s.Namespace, s.Name, timeout, lbHeld)
	switch {
	case waitErr == nil && hold:
		// Acknowledged: MetalLB may give it its address now.
		if _, err := applyService(ctx, c, s.service(), lbManagedOf); err != nil {
			waitErr = fmt.Errorf("the controller acknowledged the Service, but releasing it to MetalLB's pool %q failed: %w", s.AddressPool, err)
		}
	case hold:
		waitErr = fmt.Errorf("%w. The Service stays without an address (in the pool %q, which MetalLB has not) until the "+
			"controller acknowledges it; the next apply releases it then", waitErr, metalLBHeldPool)
	}
	if waitErr == nil && plan.WaitForAddresses.ValueBool() {
		waitErr = waitForAddresses(ctx, c, s, timeout)
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Name}, svc); err != nil {
		diags.AddError("Cannot read the Service back", err.Error())
		return
	}
	diags.Append(plan.setFromService(ctx, svc)...)
	diags.Append(state.Set(ctx, plan)...)
	if waitErr != nil {
		diags.AddError("Load-balancer ingress not ready", waitErr.Error())
	}
}

// waitForAddresses waits until the Service's status has an address of each
// of its families.
func waitForAddresses(ctx context.Context, c client.Client, s lbIngressSpec, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	svc := &corev1.Service{}
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Name}, svc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		have := map[bool]bool{}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				have[a.Is6()] = true
			}
		}
		return len(have) == len(s.families()), nil
	})
	if err != nil {
		return fmt.Errorf("Service %s/%s has no address of each family %v from its load balancer within %s (it has %v). The "+
			"policy is enforced. Likely causes: the load balancer (%s) is not installed or has no free address in its pool "+
			"(kubectl -n %s describe service %s shows its events). Fix it and apply again, or set wait_for_addresses = false.",
			s.Namespace, s.Name, s.families(), timeout, svc.Status.LoadBalancer.Ingress, s.Kind, s.Namespace, s.Name)
	}
	return nil
}

// setFromService refreshes the model from the Service. allowed_sources keeps
// the configured spelling while it aggregates to what the Service holds.
func (m *lbIngressModel) setFromService(ctx context.Context, svc *corev1.Service) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID = types.StringValue(svc.Namespace + "/" + svc.Name)
	m.Name, m.Namespace = types.StringValue(svc.Name), types.StringValue(svc.Namespace)
	if m.Kind.IsNull() || m.Kind.IsUnknown() {
		m.Kind = types.StringValue(lbKindOf(svc))
	}
	sel, d := types.MapValueFrom(ctx, types.StringType, svc.Spec.Selector)
	diags.Append(d...)
	m.Selector = sel
	prior, _ := (&ingressModel{Ports: m.Ports}).ports(ctx, &diags)
	m.Ports = portsValue(portsFromService(svc, prior))
	ranges := lbc.SourceRangesOf(svc)
	current, _ := cidrset.Parse(ranges)
	m.SourceRanges = stringList(current.Strings())
	var configured []string
	if !m.AllowedSources.IsNull() && !m.AllowedSources.IsUnknown() {
		diags.Append(m.AllowedSources.ElementsAs(ctx, &configured, false)...)
	}
	if prior, _ := cidrset.Parse(configured); len(configured) == 0 || !slices.Equal(prior.Strings(), current.Strings()) {
		m.AllowedSources, d = types.SetValueFrom(ctx, types.StringType, ranges)
		diags.Append(d...)
	}
	ann := svc.Annotations
	optional := func(v string) types.String {
		if v == "" {
			return types.StringNull()
		}
		return types.StringValue(v)
	}
	m.AddressPool, m.SharedIPKey = optional(ann[metalLBPool]), optional(ann[metalLBSharedIP])
	m.Addresses = types.ListNull(types.StringType)
	if ips := lbc.SplitList(ann[metalLBIPs]); len(ips) > 0 {
		m.Addresses = stringList(ips)
	}
	m.LoadBalancerClass = types.StringNull()
	if c := svc.Spec.LoadBalancerClass; c != nil && m.Kind.ValueString() == lbKindGeneric {
		m.LoadBalancerClass = types.StringValue(*c)
	}
	// Unset stays unset unless the Service is internal; a configured false
	// reads back false.
	switch internal := ann[gkeLBType] == gkeInternal; {
	case internal:
		m.Internal = types.BoolValue(true)
	case m.Internal.IsNull() || m.Internal.IsUnknown():
		m.Internal = types.BoolNull()
	default:
		m.Internal = types.BoolValue(false)
	}
	if m.EnforcementTimeout.IsNull() || m.EnforcementTimeout.IsUnknown() {
		m.EnforcementTimeout = types.StringValue(formatDuration(defaultLBEnforcementTimeout))
	}
	if m.WaitForAddresses.IsNull() || m.WaitForAddresses.IsUnknown() {
		m.WaitForAddresses = types.BoolValue(true)
	}
	var addrs []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			addrs = append(addrs, in.IP)
		}
	}
	m.LoadBalancerAddresses = stringList(addrs)
	m.PolicyEnforced = types.BoolValue(ack.Current(svc))
	return diags
}

func (r *lbIngressResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ns, name, c, ok := r.open(ctx, req.State.Get, &resp.Diagnostics)
	if !ok {
		return
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			resp.State.RemoveResource(ctx)
			return
		}
		resp.Diagnostics.AddError("Cannot read the Service", err.Error())
		return
	}
	if err := ack.Compatible(svc); err != nil {
		resp.Diagnostics.AddError("Incompatible nlb-policy controller", err.Error())
		return
	}
	resp.Diagnostics.Append(state.setFromService(ctx, svc)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// open reads the state, its Service's namespace and name, and the
// Kubernetes client; ok is false (with the diagnostics) when one fails.
func (r *lbIngressResource) open(ctx context.Context, get func(context.Context, any) diag.Diagnostics, diags *diag.Diagnostics) (
	state lbIngressModel, ns, name string, c client.Client, ok bool) {
	if diags.Append(get(ctx, &state)...); diags.HasError() {
		return state, "", "", nil, false
	}
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		diags.AddError("Invalid ID", err.Error())
		return state, "", "", nil, false
	}
	c, _, ok = r.clients.kubeOrDiag(diags)
	return state, ns, name, c, ok
}

// Delete deletes the Service and waits until it is gone: the nlb-policy
// controller's finalizer holds it until its NetworkPolicy is deleted.
func (r *lbIngressResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	state, ns, name, c, ok := r.open(ctx, req.State.Get, &resp.Diagnostics)
	if !ok {
		return
	}
	timeout, _ := parseDuration(state.EnforcementTimeout.ValueString())
	ctx, cancel := context.WithTimeout(ctx, max(timeout, defaultLBEnforcementTimeout))
	defer cancel()
	del := &ingressDelete{kube: c, owner: ruleOwner(ns, name), diags: &resp.Diagnostics}
	del.deleteService(ctx)
}

func (r *lbIngressResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if _, _, err := splitID(req.ID); err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}
