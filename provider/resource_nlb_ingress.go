package provider

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

var (
	_ resource.ResourceWithConfigure      = (*nlbIngressResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*nlbIngressResource)(nil)
	_ resource.ResourceWithValidateConfig = (*nlbIngressResource)(nil)
	_ resource.ResourceWithImportState    = (*nlbIngressResource)(nil)
)

// nlbIngressResource is telemetry_nlb_ingress: the NLB entry point of the
// exporters' flows, whose security-group footprint is bounded by its ports.
type nlbIngressResource struct {
	clients *clients
}

func newNLBIngressResource() resource.Resource { return &nlbIngressResource{} }

var ingressPortAttrTypes = map[string]attr.Type{
	"name": types.StringType, "protocol": types.StringType, "port": types.Int64Type, "target_port": types.Int64Type,
}

func (r *nlbIngressResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_nlb_ingress"
}

func (r *nlbIngressResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = nlbIngressSchema(ctx)
}

func (r *nlbIngressResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig refuses, before any plan, what the configuration alone
// shows to be wrong: duplicate ports, IPv6 sources that instance targets
// cannot filter, and more rules than a security group holds. Unset optional
// attributes count at their defaults, as the plan will have them.
func (r *nlbIngressResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var config ingressModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	config.fillDefaults()
	spec, known, d := config.spec(ctx)
	if d.HasError() {
		return // the attributes' validators name the bad values
	}
	if known.ports {
		for _, problem := range portProblems(spec.Ports) {
			resp.Diagnostics.AddAttributeError(path.Root("ports"), "Duplicate ports", problem)
		}
	}
	if known.sources {
		if problem := sourcesProblem(spec.Sources); problem != "" {
			resp.Diagnostics.AddAttributeError(path.Root("allowed_sources"), "Too many sources for one ingress", problem)
		}
	}
	if known.sources && !config.TargetType.IsUnknown() && spec.TargetType == lbc.TargetInstance && len(spec.Sources.V6()) > 0 {
		resp.Diagnostics.AddAttributeError(path.Root("allowed_sources"), "IPv6 sources need ip targets",
			"With instance targets the NLB's target groups are IPv4 and it translates IPv6 clients to its own IPv4 address, "+
				"so the nodes never see the exporters' IPv6 sources and Calico cannot filter them: the only choices would be "+
				"to drop them or to admit the NLB itself (every IPv6 client). Set target_type = \"ip\" (pods receive the "+
				"clients' addresses), or keep IPv6 exporters out of allowed_sources.")
	}
	if spec.PolicyBackend == annotations.PolicyBackendNetworkPolicy && !config.TargetType.IsUnknown() && !config.ExternalTrafficPolicy.IsUnknown() &&
		spec.TargetType == lbc.TargetInstance && spec.ETP != corev1.ServiceExternalTrafficPolicyLocal {
		resp.Diagnostics.AddAttributeError(path.Root("policy_backend"), "The networkpolicy backend needs the client's address at the pods",
			"With instance targets and external_traffic_policy = \"Cluster\" kube-proxy replaces the client's address by a node's "+
				"before the pods, so a NetworkPolicy there cannot filter by source. Set external_traffic_policy = \"Local\" (or "+
				"target_type = \"ip\"), or use policy_backend = \"calico\".")
	}
	if known.all() && !config.CoverSize.IsUnknown() {
		for _, problem := range spec.quotaProblems() {
			resp.Diagnostics.AddAttributeError(path.Root("coarse_cover_size"), "Too many security-group rules", problem)
		}
	}
}

// ModifyPlan computes, without any API call, the source ranges, the
// security-group rules and the per-source model, so the plan shows them and
// AWS drift shows as a diff; it carries over what the prior state fixes
// (NodePorts, the frontend group) and refuses what only the prior state
// shows to be impossible (a migration that cannot be done in place, a
// frontend group the ingress does not own).
func (r *nlbIngressResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan ingressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var prior *ingressModel
	if !req.State.Raw.IsNull() {
		prior = &ingressModel{}
		resp.Diagnostics.Append(req.State.Get(ctx, prior)...)
	}
	spec, known, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	if prior != nil && prior.migrationPending() {
		problem, steps := migrationPlan(prior, &plan)
		if problem != "" {
			resp.Diagnostics.AddError("The NLB cannot be migrated in place", problem)
			return
		}
		resp.Diagnostics.AddWarning("Migration from the AWS Load Balancer Controller's per-source rules", steps)
	}
	if prior != nil && !prior.serviceAbsent() {
		// The Service names the controller by annotation; it stays so.
		spec.TypeAnnotation = prior.managedAnnotation(lbc.Type)
	}
	// NodePorts stay allocated to the same ports across applies: the plan
	// carries them while the ports are the same, and they are unknown for a
	// new port until the API server allocates it.
	// (The health-check NodePort and the VPC are carried by their plan
	// modifiers, keepWhileSame.)
	plan.NodePorts = types.MapUnknown(types.Int64Type)
	spec.NodePorts, spec.HealthCheckNodePort = nil, int32(plan.HealthCheckNodePort.ValueInt64())
	if prior != nil && known.ports {
		priorPorts, _ := int32Map(ctx, prior.NodePorts)
		if priorPorts != nil && slices.Equal(slices.Sorted(maps.Keys(priorPorts)), spec.nodePortKeys()) {
			plan.NodePorts, spec.NodePorts = prior.NodePorts, priorPorts
		}
	}
	if known.ports {
		// Fill target_port defaults in the plan.
		plan.Ports = portsValue(spec.Ports)
	}
	if known.sources {
		plan.SourceRanges = stringList(spec.Sources.Strings())
		if !plan.CoverSize.IsUnknown() {
			plan.setCover(spec)
		}
	}
	if known.all() && !spec.rulesKnown() {
		plan.SecurityGroupRules = types.ListUnknown(types.StringType)
	} else if known.all() {
		plan.SecurityGroupRules = stringList(ruleStrings(spec.desiredRules()))
		recorded := 0
		if prior != nil {
			recorded = len(prior.SubnetCIDRs.Elements())
		}
		if subnets := spec.knownSubnets(nil, recorded); subnets > 0 {
			plan.PerSourceModel = types.Int64Value(int64(spec.perSourceModel(subnets)))
		}
	}
	switch {
	case plan.WaitForEnforcement.ValueBool():
		plan.PolicyEnforced = types.BoolValue(true)
	case prior != nil && !prior.PolicyEnforced.IsNull():
		plan.PolicyEnforced = prior.PolicyEnforced
	}
	if !plan.NLBSecurityGroup.IsUnknown() && !plan.NLBSecurityGroup.ValueBool() {
		plan.FrontendSecurityGroupID = types.StringValue("")
	} else if prior != nil && prior.FrontendSecurityGroupID.ValueString() != "" {
		plan.FrontendSecurityGroupID = prior.FrontendSecurityGroupID
		if prior.Namespace.Equal(plan.Namespace) && prior.Name.Equal(plan.Name) { // else a replacement: a group of its own
			r.refuseForeignFrontend(ctx, &plan, &resp.Diagnostics)
		}
	}
	plan.LoadBalancerAsConfigured = types.BoolValue(true)
	plan.ManagedAnnotations = types.MapUnknown(types.StringType)
	if known.all() && !plan.FrontendSecurityGroupID.IsUnknown() {
		plan.ManagedAnnotations = stringMap(spec.managedAnnotations(plan.FrontendSecurityGroupID.ValueString()))
	}
	if prior != nil && prior.serviceAbsent() {
		// The Service is re-created: its annotations are written anew, the
		// API server allocates new NodePorts and the AWS Load Balancer
		// Controller makes a new NLB.
		plan.ManagedAnnotations = types.MapUnknown(types.StringType)
		plan.NodePorts, plan.HealthCheckNodePort = types.MapUnknown(types.Int64Type), types.Int64Unknown()
		plan.LoadBalancerARN, plan.DNSName, plan.State = types.StringUnknown(), types.StringUnknown(), types.StringUnknown()
		plan.SubnetCIDRs = types.ListUnknown(types.StringType)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *nlbIngressResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan ingressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultIngressTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, ok := r.kube(&resp.Diagnostics)
	if !ok {
		return
	}
	existing := &corev1.Service{}
	err := c.Get(ctx, client.ObjectKey{Namespace: plan.Namespace.ValueString(), Name: plan.Name.ValueString()}, existing)
	if err == nil {
		resp.Diagnostics.AddError(serviceExistsSummary, serviceExists(existing.Namespace, existing.Name, "(made outside this resource)"))
		return
	} else if !apierrors.IsNotFound(err) {
		resp.Diagnostics.AddError("Cannot reach the Kubernetes API server", kubeReachError(r.clients, err))
		return
	}
	r.apply(ctx, c, &plan, nil, &resp.Diagnostics)
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	// apply names the ingress once it starts making AWS objects: before
	// that nothing exists and nothing is saved; after it, what was made is
	// saved (Terraform taints it), so refresh, a retry and destroy find it.
	if !plan.ID.IsUnknown() {
		resp.Diagnostics.Append(savePartial(ctx, &resp.State, &plan)...)
	}
}

func (r *nlbIngressResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state ingressModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultIngressTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, ok := r.kube(&resp.Diagnostics)
	if !ok {
		return
	}
	r.apply(ctx, c, &plan, &state, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// apply converges AWS and the Service on the plan in the fail-closed order
// of ingressApply.steps, and fills the plan's computed attributes.
func (r *nlbIngressResource) apply(ctx context.Context, c client.Client, plan, prior *ingressModel, diags *diag.Diagnostics) {
	spec, _, d := plan.spec(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	a, ok := r.aws(ctx, c, diags)
	if !ok {
		return
	}
	reach := func(err error) string { return kubeReachError(r.clients, err) }
	(&ingressApply{kube: c, aws: a, reach: reach, plan: plan, prior: prior, diags: diags, spec: spec}).run(ctx)
}

func (r *nlbIngressResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state ingressModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid ID", err.Error())
		return
	}
	c, ok := r.kube(&resp.Diagnostics)
	if !ok {
		return
	}
	svc := &corev1.Service{}
	err = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)
	if apierrors.IsNotFound(err) {
		r.readWithoutService(ctx, c, &state, resp)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the Service", kubeReachError(r.clients, err))
		return
	}
	resp.Diagnostics.Append(state.setFromService(ctx, svc)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if spec, _, d := state.spec(ctx); !d.HasError() {
		state.setCover(spec)
	}
	state.PolicyEnforced = types.BoolValue(ack.Current(svc))
	if err := ack.Compatible(svc); err != nil {
		// At refresh, so the plan fails before anything changes.
		resp.Diagnostics.AddError("The provider and the nlb-policy controller are of incompatible releases",
			err.Error()+". Nothing was changed. (To remove the ingress anyway: terraform destroy -refresh=false.)")
		return
	}
	a, ok := r.aws(ctx, c, &resp.Diagnostics)
	if !ok {
		return
	}
	if state.NodeSecurityGroupID.IsNull() {
		// Imported from a Service made without the provider: it owns no rule
		// yet, and the plan shows the node group and rules it will add.
		state.VPCID = types.StringNull()
		state.SecurityGroupRules = stringList(nil)
	} else {
		vpcID, vpcCIDRs, err := a.vpcOf(ctx, state.NodeSecurityGroupID.ValueString())
		if err != nil {
			resp.Diagnostics.AddError("Cannot read the node security group", err.Error())
			return
		}
		state.VPCID = types.StringValue(vpcID)
		rules, err := a.actualRules(ctx, ruleOwner(ns, name), state.FrontendSecurityGroupID.ValueString(),
			state.NodeSecurityGroupID.ValueString(), vpcCIDRs)
		if err != nil {
			resp.Diagnostics.AddError("Cannot read the security-group rules", err.Error())
			return
		}
		state.SecurityGroupRules = stringList(ruleStrings(sortedRules(rules)))
	}
	spec, known, _ := state.spec(ctx)
	lb, err := a.loadBalancer(ctx, c, spec, false)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the load balancer", err.Error())
		return
	}
	state.setLoadBalancer(lb)
	if lb != nil && !handedOver(svc.Annotations) {
		// Not migrated yet: the NLB says whether it has security groups (AWS
		// can neither add them to an NLB made without nor remove them all),
		// so a configuration that needs another NLB shows in the plan.
		state.NLBSecurityGroup = types.BoolValue(len(lb.SecurityGroups) > 0)
		spec.NLBSecurityGroup = state.NLBSecurityGroup.ValueBool()
	}
	state.LoadBalancerAsConfigured = types.BoolValue(len(spec.loadBalancerProblems(state.FrontendSecurityGroupID.ValueString(), lb)) == 0)
	if state.PerSourceModel.IsNull() && known.all() {
		state.PerSourceModel = types.Int64Value(int64(spec.perSourceModel(spec.knownSubnets(lb, 0))))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// readWithoutService refreshes an ingress whose Service is gone (deleted by
// hand, or released by a finalizer after a destroy timed out). While AWS
// objects the ingress made remain, the resource stays in the state, so a
// destroy still removes them and an apply re-creates the Service in place;
// managed_annotations is null then, which the plan reads as "Service absent".
// With nothing left in AWS, the resource is gone.
func (r *nlbIngressResource) readWithoutService(ctx context.Context, c client.Client, state *ingressModel, resp *resource.ReadResponse) {
	if state.NodeSecurityGroupID.ValueString() == "" { // an import of a Service that does not exist
		resp.State.RemoveResource(ctx)
		return
	}
	a, ok := r.aws(ctx, c, &resp.Diagnostics)
	if !ok {
		return
	}
	ns, name, _ := splitID(state.ID.ValueString())
	frontend, rules, err := a.leftovers(ctx, ruleOwner(ns, name), state.FrontendSecurityGroupID.ValueString(), state.NodeSecurityGroupID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Cannot read what the ingress owns in AWS", fmt.Sprintf("Service %s/%s is gone; "+
			"looking for its security group and rules: %v. Fix what the error names, then refresh again.", ns, name, err))
		return
	}
	if frontend == "" && len(rules) == 0 {
		resp.State.RemoveResource(ctx)
		return
	}
	state.FrontendSecurityGroupID = types.StringValue(frontend)
	state.SecurityGroupRules = stringList(ruleStrings(sortedRules(rules)))
	state.ManagedAnnotations = types.MapNull(types.StringType)
	state.PolicyEnforced = types.BoolValue(false)
	state.NodePorts, state.HealthCheckNodePort = types.MapNull(types.Int64Type), types.Int64Null()
	state.setLoadBalancer(nil)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *nlbIngressResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state ingressModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := state.Timeouts.Delete(ctx, defaultIngressTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid ID", err.Error())
		return
	}
	c, ok := r.kube(&resp.Diagnostics)
	if !ok {
		return
	}
	del := &ingressDelete{kube: c, state: &state, owner: ruleOwner(ns, name), diags: &resp.Diagnostics}
	del.aws = func() (ingressAWS, bool) { return r.aws(ctx, c, &resp.Diagnostics) }
	del.run(ctx)
}

func (r *nlbIngressResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if _, _, err := splitID(req.ID); err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

func (r *nlbIngressResource) kube(diags *diag.Diagnostics) (client.Client, bool) {
	c, _, ok := r.clients.kubeOrDiag(diags)
	return c, ok
}

// aws returns the AWS side of the ingress, with the identity of the cluster
// (the UID of its kube-system namespace) that its groups are tagged with.
func (r *nlbIngressResource) aws(ctx context.Context, c client.Client, diags *diag.Diagnostics) (ingressAWS, bool) {
	if r.clients == nil {
		diags.AddError("Provider not configured", "the telemetry provider was not configured")
		return ingressAWS{}, false
	}
	kubeSystem := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, kubeSystem); err != nil {
		diags.AddError("Cannot identify the cluster", "reading namespace kube-system, whose UID tags the security groups "+
			"this cluster's ingresses own: "+kubeReachError(r.clients, err))
		return ingressAWS{}, false
	}
	ec, err := r.clients.EC2(ctx)
	if err != nil {
		diags.AddError("AWS configuration", err.Error())
		return ingressAWS{}, false
	}
	elb, err := r.clients.ELBv2(ctx)
	if err != nil {
		diags.AddError("AWS configuration", err.Error())
		return ingressAWS{}, false
	}
	return ingressAWS{ec2: ec, elb: elb, cluster: string(kubeSystem.UID)}, true
}
