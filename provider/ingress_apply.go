package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// ingressApply is one create or update of telemetry_nlb_ingress. Its run
// method is the one place that states the ingress's fail-closed order; each
// step does one job and leaves what it learned in the fields below for the
// steps after it. The Kubernetes client and the AWS side are interfaces, so
// the order is table-tested against fakes (ingress_apply_test.go) as well as
// through terraform against moto and a real API server.
type ingressApply struct {
	kube  client.Client
	aws   ingressAWS
	reach func(error) string // explains an API-server error (kubeReachError)
	plan  *ingressModel      // filled with the computed attributes
	prior *ingressModel      // nil on create
	diags *diag.Diagnostics

	spec     ingressSpec
	owner    ingressOwner
	vpcID    string
	vpcCIDRs []string
	frontend string          // the frontend group ("" without one)
	live     *corev1.Service // the Service as the apply found it; nil when absent
	handOver bool            // the Service's sources are still the LBC's per-source rules
	holding  []sgRule        // the rules held while the LBC hands over
	lb       *awsnlb.LoadBalancer
	ensured  bool // the frontend step has run: AWS may have changed since
}

// applyStep is one step of the order.
type applyStep struct {
	name string
	do   func(context.Context) *stepError
}

// stepError is a step that failed: the diagnostic that stops the apply.
type stepError struct {
	summary, detail string
	attribute       *path.Path
}

func failed(summary string, err error) *stepError {
	return &stepError{summary: summary, detail: err.Error()}
}

// steps is the order. Nothing widens what the NLB admits before Calico
// enforces the Service's current sources: unwanted rules go first (narrowing
// is always safe), then the Service is written, and rules are added only once
// the nlb-policy controller has acknowledged the policies for exactly what
// was written.
func (a *ingressApply) steps() []applyStep {
	return []applyStep{
		{"locate the node group's VPC", a.locateVPC},
		{"ensure the frontend group", a.ensureFrontend},
		{"read the Service", a.readService},
		{"revoke the rules no longer wanted", a.revokeUnwanted},
		{"write the Service", a.writeService},
		{"wait for enforcement", a.waitForEnforcement},
		{"add the rules, or migrate from the LBC's", a.addRules},
		{"read the NLB", a.readLoadBalancer},
	}
}

// run takes the steps in order and stops at the first that fails. From the
// revocation on, a failure records in the plan what AWS then holds, so the
// state (saved for a create that failed part-way) says what is there.
func (a *ingressApply) run(ctx context.Context) {
	for _, s := range a.steps() {
		// With TF_LOG=DEBUG a user sees which step an apply is in (waiting
		// for the controller's acknowledgement, say).
		tflog.Debug(ctx, "telemetry_nlb_ingress: "+s.name, map[string]any{"service": a.spec.Namespace + "/" + a.spec.Name})
		err := s.do(ctx)
		if err == nil {
			continue
		}
		if err.attribute != nil {
			a.diags.AddAttributeError(*err.attribute, err.summary, err.detail)
		} else {
			a.diags.AddError(err.summary, err.detail)
		}
		if a.ensured {
			a.recordWhatAWSHolds(ctx)
		}
		return
	}
}

// locateVPC finds the node group's VPC (its CIDRs are the "vpc" source of
// health-check rules) and names the ingress: from here on it may make AWS
// objects, which a failed create saves.
func (a *ingressApply) locateVPC(ctx context.Context) *stepError {
	vpcID, cidrs, err := a.aws.vpcOf(ctx, a.spec.NodeSG)
	if err != nil {
		at := path.Root("node_security_group_id")
		return &stepError{summary: "Cannot use the node security group", detail: err.Error(), attribute: &at}
	}
	a.vpcID, a.vpcCIDRs = vpcID, cidrs
	a.owner = ruleOwner(a.spec.Namespace, a.spec.Name)
	a.plan.VPCID = types.StringValue(vpcID)
	a.plan.ID = types.StringValue(a.spec.Namespace + "/" + a.spec.Name)
	return nil
}

// ensureFrontend finds or makes the frontend group: the Service names it.
func (a *ingressApply) ensureFrontend(ctx context.Context) *stepError {
	if a.spec.NLBSecurityGroup {
		known := ""
		if a.prior != nil {
			known = a.prior.FrontendSecurityGroupID.ValueString()
		}
		frontend, err := a.aws.ensureFrontend(ctx, a.owner, a.vpcID, known)
		if err != nil {
			return failed("Cannot use the frontend security group", err)
		}
		a.frontend = frontend
	}
	a.ensured = true
	a.plan.FrontendSecurityGroupID = types.StringValue(a.frontend)
	a.plan.SourceRanges = stringList(a.spec.Sources.Strings())
	a.plan.setCover(a.spec)
	a.plan.Ports = portsValue(a.spec.Ports)
	return nil
}

// readService reads the Service as it is, if it exists: its NodePorts, how
// it names the AWS Load Balancer Controller, and whether its sources are
// still the controller's per-source rules (an imported Service, or one
// edited by hand), which the controller is told to drop only once Calico and
// the coarse cover hold (migrate).
func (a *ingressApply) readService(ctx context.Context) *stepError {
	live := &corev1.Service{}
	err := a.kube.Get(ctx, client.ObjectKey{Namespace: a.spec.Namespace, Name: a.spec.Name}, live)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return &stepError{summary: "Cannot read the Service", detail: a.reach(err)}
	}
	a.live = live
	a.spec.NodePorts, a.spec.HealthCheckNodePort = nodePortsFromService(live)
	a.spec.TypeAnnotation = live.Annotations[lbc.Type]
	a.spec.Classless = live.Spec.LoadBalancerClass == nil && a.spec.TypeAnnotation != ""
	if a.handOver = a.spec.handOverPending(live, a.frontend); !a.handOver {
		return nil
	}
	foreign, err := a.aws.foreignNodeRules(ctx, a.owner, a.spec.NodeSG)
	if err == nil {
		a.holding, err = a.spec.handOverRules(foreign)
	}
	if err != nil {
		return failed("Cannot migrate the NLB from the AWS Load Balancer Controller's rules", err)
	}
	return nil
}

// revokeUnwanted revokes the owned rules the spec does not want, adding none.
func (a *ingressApply) revokeUnwanted(ctx context.Context) *stepError {
	if err := a.aws.revokeUnwanted(ctx, a.owner, a.frontend, a.spec.NodeSG, a.vpcCIDRs, a.spec.desiredRules()); err != nil {
		return failed("Cannot revoke security-group rules", err)
	}
	return nil
}

// writeService creates the Service (a create, not an apply: of two
// resources for one Service, the API server lets one have it and the other
// saves nothing, so it can never take the Service over or delete it), then
// applies it, holding the LBC's annotations while a hand-over is pending.
func (a *ingressApply) writeService(ctx context.Context) *stepError {
	if a.prior == nil {
		svc, err := typedService(a.spec.service(a.frontend))
		if err == nil {
			err = createOwned(ctx, a.kube, svc)
		}
		if apierrors.IsAlreadyExists(err) {
			a.plan.ID = types.StringUnknown()
			return &stepError{summary: serviceExistsSummary, detail: serviceExists(a.spec.Namespace, a.spec.Name,
				"(created by someone else, or by another resource in this or a concurrent apply)")}
		}
		if err != nil {
			return &stepError{summary: "Cannot write the Service",
				detail: fmt.Sprintf("creating Service %s/%s: %v", a.spec.Namespace, a.spec.Name, err)}
		}
	}
	first := a.spec.service(a.frontend)
	if a.handOver {
		first = a.spec.serviceHoldingLBC(a.frontend, a.live)
	}
	written, err := writeService(ctx, a.kube, first)
	if err != nil {
		return failed("Cannot write the Service", err)
	}
	a.plan.ManagedAnnotations = stringMap(written)
	return nil
}

// waitForEnforcement waits for the nlb-policy controller's acknowledgement
// of the Service as written (or, when told not to wait, records whether it
// is there), then reads the NodePorts the API server allocated, which the
// rules of an NLB without a security group name.
func (a *ingressApply) waitForEnforcement(ctx context.Context) *stepError {
	if a.plan.WaitForEnforcement.ValueBool() {
		timeout, _ := parseDuration(a.plan.EnforcementTimeout.ValueString())
		if err := waitForEnforcement(ctx, a.kube, a.spec.Namespace, a.spec.Name, timeout); err != nil {
			a.plan.PolicyEnforced = types.BoolValue(false)
			return failed("Policies not acknowledged", err)
		}
		a.plan.PolicyEnforced = types.BoolValue(true)
	}
	svc := &corev1.Service{}
	if err := a.kube.Get(ctx, client.ObjectKey{Namespace: a.spec.Namespace, Name: a.spec.Name}, svc); err != nil {
		return &stepError{summary: "Cannot read the Service", detail: a.reach(err)}
	}
	if a.plan.PolicyEnforced.IsUnknown() {
		a.plan.PolicyEnforced = types.BoolValue(ack.Current(svc))
	}
	a.spec.NodePorts, a.spec.HealthCheckNodePort = nodePortsFromService(svc)
	a.plan.setNodePorts(a.spec.NodePorts, a.spec.HealthCheckNodePort)
	if !a.spec.rulesKnown() {
		return &stepError{summary: "NodePorts not allocated", detail: fmt.Sprintf("Service %s/%s has no NodePort for every "+
			"port (is allocateLoadBalancerNodePorts false?): without an NLB security group the node group needs them",
			a.spec.Namespace, a.spec.Name)}
	}
	return nil
}

// addRules adds the rules Calico now backs and revokes any left, or, for a
// Service the LBC still admits per source, migrates (ingress_migration.go).
func (a *ingressApply) addRules(ctx context.Context) *stepError {
	desired := a.spec.desiredRules()
	if a.handOver {
		if err := migrate(ctx, a.kube, a.aws, a.spec, a.frontend, a.vpcCIDRs, a.holding, desired, a.diags); err != nil {
			return failed("The migration from the AWS Load Balancer Controller's rules did not complete", err)
		}
	} else if err := a.aws.reconcileRules(ctx, a.owner, a.frontend, a.spec.NodeSG, a.vpcCIDRs, desired); err != nil {
		return failed("Cannot write the security-group rules", err)
	}
	a.plan.ManagedAnnotations = stringMap(a.spec.managedAnnotations(a.frontend))
	a.plan.SecurityGroupRules = stringList(ruleStrings(desired))
	return nil
}

// readLoadBalancer reads the NLB (waiting for it when asked), checks it is
// as configured, and fills the per-source model's figure.
func (a *ingressApply) readLoadBalancer(ctx context.Context) *stepError {
	lb, err := a.aws.loadBalancer(ctx, a.kube, a.spec, a.plan.WaitForLoadBalancer.ValueBool())
	if err != nil {
		return failed("Load balancer not ready", err)
	}
	a.lb = lb
	a.plan.setLoadBalancer(lb)
	a.plan.LoadBalancerAsConfigured = types.BoolValue(true)
	if problems := a.spec.loadBalancerProblems(a.frontend, lb); len(problems) > 0 {
		a.plan.LoadBalancerAsConfigured = types.BoolValue(false)
		return &stepError{summary: "The NLB is not as configured", detail: strings.Join(problems, "\n\n")}
	}
	if !a.plan.PerSourceModel.IsUnknown() {
		return nil
	}
	subnets := a.spec.knownSubnets(lb, 0)
	if subnets == 0 {
		n, err := a.aws.taggedSubnetCount(ctx, a.vpcID, a.spec.Scheme)
		if err != nil {
			a.diags.AddWarning("The per-source model's figure leaves out health checks",
				fmt.Sprintf("Counting the subnets tagged for the NLB's scheme failed (%v), so security_group_rules_per_source_model "+
					"counts no health-check rule. It is a comparison only: nothing the NLB admits depends on it. "+
					"Allow ec2:DescribeSubnets to the provider's credentials for the full figure.", err))
		}
		subnets = n
	}
	a.plan.PerSourceModel = types.Int64Value(int64(a.spec.perSourceModel(subnets)))
	return nil
}

// recordWhatAWSHolds fills, after a failed step, the plan's values that the
// apply did not reach with what is so: the rules AWS holds, no NodePorts, not
// enforced, not as configured.
func (a *ingressApply) recordWhatAWSHolds(ctx context.Context) {
	if a.plan.NodePorts.IsUnknown() {
		a.plan.NodePorts, a.plan.HealthCheckNodePort = types.MapNull(types.Int64Type), types.Int64Null()
	}
	if a.plan.PolicyEnforced.IsUnknown() {
		a.plan.PolicyEnforced = types.BoolValue(false)
	}
	if a.plan.LoadBalancerAsConfigured.IsUnknown() {
		a.plan.LoadBalancerAsConfigured = types.BoolValue(false)
	}
	if rules, err := a.aws.actualRules(ctx, a.owner, a.frontend, a.spec.NodeSG, a.vpcCIDRs); err == nil {
		a.plan.SecurityGroupRules = stringList(ruleStrings(sortedRules(rules)))
	}
}

// serviceExistsSummary and serviceExists are the one diagnostic for a
// Service that the ingress would create but someone else has: found before
// the create, or lost to a concurrent one.
const serviceExistsSummary = "Service already exists"

func serviceExists(namespace, name, how string) string {
	return fmt.Sprintf("Service %s/%s already exists %s. To manage it with this resource, import it: "+
		"terraform import <address> %s/%s; if another resource manages it, remove one of the two.",
		namespace, name, how, namespace, name)
}
