package provider

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// The defaults of telemetry_nlb_ingress, named once: the schema declares
// them, and fillDefaults gives them to a configuration being validated and
// to a Service being imported.
const (
	defaultIngressTimeout      = 10 * time.Minute
	defaultEnforcementTimeout  = 2 * time.Minute
	defaultNodePortRange       = "30000-32767"
	defaultTargetType          = lbc.TargetInstance
	defaultScheme              = lbc.SchemeInternal
	defaultETP                 = string(corev1.ServiceExternalTrafficPolicyLocal)
	defaultNLBSecurityGroup    = true
	defaultWaitForLoadBalancer = false
	defaultWaitForEnforcement  = true
)

// nlbIngressSchema is the schema of telemetry_nlb_ingress; its defaults are
// the constants above.
func nlbIngressSchema(ctx context.Context) schema.Schema {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	stateForUnknown := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	return schema.Schema{
		MarkdownDescription: "The NLB entry point of the exporters' flows: a Kubernetes Service of type LoadBalancer " +
			"for the AWS Load Balancer Controller, and the few security-group rules it needs.\n\n" +
			"Left to itself, the AWS Load Balancer Controller writes one security-group rule per allowed source " +
			"CIDR per port (plus one per NLB subnet for health checks) and stops at AWS's 60 rules per group. " +
			"This resource switches that off (`manage-backend-security-group-rules: false`, and a frontend security " +
			"group it creates and brings) and writes rules bounded by the ports instead: each listener port from the " +
			"sources' coarse cover (at most `coarse_cover_size` CIDRs per family, never the whole internet unless " +
			"`allowed_sources` says so) on the frontend group, and the frontend group to the NodePort range (or target " +
			"ports) on the node group. Exact per-source filtering happens at the nodes, in Calico GlobalNetworkPolicies " +
			"that the `nlb-policy` controller generates from the Service's `loadBalancerSourceRanges`; the Service opts " +
			"in with `telemetry-platform.io/nlb-policy: enabled`.\n\n" +
			"Every step fails closed: rules no longer wanted are revoked first, then the Service is written, and rules " +
			"are added only once the controller has acknowledged that Calico enforces the Service's current sources " +
			"(`wait_for_enforcement`). With the controller missing or refused, the apply fails with the likely causes " +
			"and the NLB admits nothing new.\n\n" +
			"`security_group_rules` lists what this resource owns in AWS and `security_group_rules_per_source_model` " +
			"what the controller would have written, so the plan shows the saving. Rules changed or deleted outside " +
			"Terraform show as a diff and are restored.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: stateForUnknown,
				MarkdownDescription: "`<namespace>/<name>` of the Service; the import ID."},
			"name": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Name of the Service. Changing it replaces the ingress: a new Service, so a new NLB with a new DNS name (the exporters must follow)."},
			"namespace": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Namespace of the Service (the collectors'). Changing it replaces the ingress: a new Service, so a new NLB with a new DNS name."},
			"selector": schema.MapAttribute{Required: true, ElementType: types.StringType,
				Validators:          []validator.Map{mapvalidator.SizeAtLeast(1)},
				MarkdownDescription: "Labels of the collector pods."},
			"ports": schema.ListNestedAttribute{Required: true,
				Validators:          []validator.List{listvalidator.SizeBetween(1, 50)},
				MarkdownDescription: "Listener ports. Names and port/protocol pairs must be unique.",
				NestedObject:        ingressPortsSchema(),
			},
			"allowed_sources": schema.SetAttribute{Required: true, ElementType: types.StringType,
				Validators: []validator.Set{setvalidator.SizeAtLeast(1), setvalidator.ValueStringsAre(cidrValidator{})},
				MarkdownDescription: "CIDRs allowed to send, typically the union of the sites' `flow_sources`. Aggregated into " +
					"the Service's `loadBalancerSourceRanges`. There is no implicit \"allow all\": write `0.0.0.0/0` to mean it. " +
					"IPv6 sources make the NLB dualstack (`aws-load-balancer-ip-address-type: dualstack`; its subnets need IPv6)."},
			"target_type": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultTargetType),
				Validators: []validator.String{stringvalidator.OneOf(lbc.TargetInstance, lbc.TargetIP)}, PlanModifiers: replace,
				MarkdownDescription: "NLB target type, `instance` (NodePorts) or `ip` (pod IPs). Default `instance`. Changing it " +
					"replaces the ingress: a target group's type is fixed, and the policies filter another hop."},
			"scheme": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultScheme),
				Validators:    []validator.String{stringvalidator.OneOf(lbc.SchemeInternal, lbc.SchemeInternetFacing)},
				PlanModifiers: replace,
				MarkdownDescription: "`internal` or `internet-facing`. Default `internal`, as the AWS Load Balancer Controller's. " +
					"Changing it replaces the ingress: the controller can only change a scheme by replacing the NLB (new DNS name)."},
			"subnets": schema.ListAttribute{Optional: true, ElementType: types.StringType,
				Validators:          []validator.List{listvalidator.ValueStringsAre(stringvalidator.RegexMatches(subnetIDPattern, "must be a subnet ID (subnet-...)"))},
				MarkdownDescription: "Subnet IDs of the NLB; by default the controller picks tagged subnets."},
			"external_traffic_policy": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultETP),
				Validators:          []validator.String{stringvalidator.OneOf("Local", "Cluster")},
				MarkdownDescription: "`Local` (default: no second hop, client IP kept end to end) or `Cluster`."},
			"policy_backend": schema.StringAttribute{Optional: true,
				Validators: []validator.String{stringvalidator.OneOf(annotations.PolicyBackendCalico, annotations.PolicyBackendNetworkPolicy)},
				MarkdownDescription: "What enforces the sources in the cluster: `" + annotations.PolicyBackendCalico + "` (Calico " +
					"GlobalNetworkPolicies) or `" + annotations.PolicyBackendNetworkPolicy + "` (a Kubernetes NetworkPolicy selecting " +
					"the collector pods, for the VPC CNI's network policy agent, Cilium, GKE Dataplane V2, kube-router). Unset: the " +
					"nlb-policy controller's default (`--policy-backend`); a backend its admins do not allow is refused and the " +
					"apply fails naming it. `" + annotations.PolicyBackendNetworkPolicy + "` filters at the pods, so it needs the " +
					"client's address there: `target_type = \"ip\"`, or `external_traffic_policy = \"Local\"`; it refuses a " +
					"namespace where another NetworkPolicy may select the same pods. Changing it switches backends without a gap " +
					"(the new one is enforced before the old goes). See the policy backends guide."},
			"node_security_group_id": schema.StringAttribute{Required: true,
				Validators:          []validator.String{stringvalidator.RegexMatches(sgIDPattern, "must be a security group ID (sg-...)")},
				MarkdownDescription: "The nodes' security group, which gets one rule per protocol."},
			"nlb_security_group": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(defaultNLBSecurityGroup),
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()},
				MarkdownDescription: "Give the NLB a frontend security group (the AWS Load Balancer Controller's default since v2.6). " +
					"When false the NLB has none (`disable-nlb-sg`, controller v2.14+) and the node group admits the clients " +
					"per protocol instead. Default true. Changing it replaces the ingress: AWS cannot add security groups to " +
					"an NLB created without them, nor remove them all."},
			"node_port_range": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultNodePortRange),
				Validators:          []validator.String{stringvalidator.RegexMatches(portRangePattern, `must be "<from>-<to>"`)},
				MarkdownDescription: "The cluster's NodePort range (`--service-node-port-range`). Default `30000-32767`."},
			"annotations": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				Validators:          []validator.Map{mapvalidator.KeysAre(stringvalidator.NoneOf(managedServiceAnnotations...))},
				MarkdownDescription: "Extra Service annotations, e.g. health-check settings of the AWS Load Balancer Controller."},
			"wait_for_load_balancer": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(defaultWaitForLoadBalancer),
				MarkdownDescription: "Wait for the NLB (the Service's status hostname) and read it through ELBv2. Default false."},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
			"source_ranges": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "`allowed_sources` aggregated (overlaps removed, neighbours merged), as written to the Service."},
			"frontend_security_group_id": schema.StringAttribute{Computed: true,
				MarkdownDescription: "The NLB's frontend security group (empty when `nlb_security_group` is false)."},
			"security_group_rules": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "The inbound rules this resource owns, e.g. `frontend: udp 6343 from 192.0.2.0/24`, " +
					"`node: udp 30000-32767 from frontend`."},
			"security_group_rules_per_source_model": schema.Int64Attribute{Computed: true,
				MarkdownDescription: "Rules the AWS Load Balancer Controller would write for the same inputs: " +
					"sources x ports (TCP_UDP twice) + NLB subnets x ports. AWS allows 60 per group by default."},
			"vpc_id": schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{keepWhileSame("node_security_group_id")},
				MarkdownDescription: "VPC of the node security group."},
			"load_balancer_arn": schema.StringAttribute{Computed: true, MarkdownDescription: "ARN of the NLB, once it exists."},
			"dns_name":          schema.StringAttribute{Computed: true, MarkdownDescription: "DNS name of the NLB, once it exists."},
			"subnet_cidrs": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "CIDRs of the NLB's subnets, where its health checks come from."},
			"state": schema.StringAttribute{Computed: true, MarkdownDescription: "State of the NLB (`provisioning`, `active`, ...)."},
			"wait_for_enforcement": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(defaultWaitForEnforcement),
				MarkdownDescription: "Wait until the nlb-policy controller acknowledges on the Service that Calico policies for its " +
					"current sources and ports are in place, and only then add security-group rules, so no apply widens the NLB " +
					"before Calico filters. An apply that is not acknowledged within `enforcement_timeout` fails, naming the likely " +
					"causes, and `policy_enforced` stays false (the next plan shows it). Default true."},
			"enforcement_timeout": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultEnforcementTimeout.String()),
				Validators:          []validator.String{durationValidator{}},
				MarkdownDescription: fmt.Sprintf("How long to wait for the acknowledgement. Default `%s`.", defaultEnforcementTimeout)},
			"policy_enforced": schema.BoolAttribute{Computed: true,
				MarkdownDescription: "Whether the Service carries the nlb-policy controller's acknowledgement of its current spec " +
					"(annotation `" + annotations.Enforced + "`). False after a refresh means the controller has not (yet) enforced " +
					"the sources: the plan then shows an update that waits for it."},
			"load_balancer_as_configured": schema.BoolAttribute{Computed: true,
				MarkdownDescription: "False when the NLB that the AWS Load Balancer Controller built differs from the configuration " +
					"(its security groups, or IPv4 only with IPv6 `allowed_sources`): the plan then shows an update, and apply " +
					"fails with the fix. True while no NLB exists yet."},
			"managed_annotations": schema.MapAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "The Service annotations this resource writes (for the AWS Load Balancer Controller and the " +
					"nlb-policy controller), as they are on the Service: one edited, removed or added by hand shows as a diff, and " +
					"apply restores it."},
			"node_ports": schema.MapAttribute{Computed: true, ElementType: types.Int64Type,
				MarkdownDescription: "The Service's allocated NodePorts by `<protocol>/<port>`, e.g. `udp/6343`. Without an NLB " +
					"security group (instance targets) the node group admits the clients on these ports only, never the whole " +
					"NodePort range; a new port's rules are known after apply."},
			"health_check_node_port": schema.Int64Attribute{Computed: true,
				PlanModifiers: []planmodifier.Int64{keepWhileSame("external_traffic_policy")},
				MarkdownDescription: "The Service's health-check NodePort (`external_traffic_policy = \"Local\"`), where the NLB's " +
					"health checks go; 0 otherwise."},
			"coarse_cover_size": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(defaultCoverSize),
				Validators: []validator.Int64{int64validator.Between(1, rulesPerGroupQuota)},
				MarkdownDescription: fmt.Sprintf("Most CIDRs per address family that the security groups admit on each listener port: the "+
					"coarse fence that holds even when the nlb-policy controller does not. They are the optimal cover of "+
					"`allowed_sources` in that many prefixes (fewest addresses admitted beyond the sources). A plan whose rules "+
					"would pass AWS's default quota of %d per group and family is refused. Default `%d`.", rulesPerGroupQuota, defaultCoverSize)},
			"coarse_cover": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "The CIDRs the security groups admit on the listener ports (see `coarse_cover_size`)."},
			"coarse_cover_extra_addresses": schema.NumberAttribute{Computed: true,
				MarkdownDescription: "How many addresses `coarse_cover` admits beyond `allowed_sources` (IPv4 and IPv6 added up). " +
					"Calico refuses them at the nodes; the security groups alone would not."},
		},
	}
}

var (
	subnetIDPattern  = regexp.MustCompile(`^subnet-[0-9a-f]+$`)
	sgIDPattern      = regexp.MustCompile(`^sg-[0-9a-f]+$`)
	portRangePattern = regexp.MustCompile(`^[0-9]{1,5}-[0-9]{1,5}$`)
)

// ingressPortsSchema is a listener port, the same in telemetry_nlb_ingress
// and telemetry_lb_ingress.
func ingressPortsSchema() schema.NestedAttributeObject {
	return schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
		"name": schema.StringAttribute{Required: true, Validators: []validator.String{dnsLabelValidator{max: 59}},
			MarkdownDescription: "Port name (a TCP_UDP port becomes `<name>-tcp` and `<name>-udp` in the Service)."},
		"protocol": schema.StringAttribute{Required: true,
			Validators:          []validator.String{stringvalidator.OneOf("UDP", "TCP", protocolTCPUDP)},
			MarkdownDescription: "`UDP`, `TCP` or `TCP_UDP` (one NLB listener for both)."},
		"port": schema.Int64Attribute{Required: true, Validators: []validator.Int64{int64validator.Between(1, 65535)},
			MarkdownDescription: "Listener port, e.g. 6343 (sFlow) or 4739 (IPFIX)."},
		"target_port": schema.Int64Attribute{Optional: true, Computed: true,
			Validators:          []validator.Int64{int64validator.Between(1, 65535)},
			MarkdownDescription: "Port of the collector pods. Default `port`."},
	}}
}
