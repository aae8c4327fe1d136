// Package annotations names the labels and annotations through which the
// provider, the nlb-policy controller and the conntrack agent speak to each
// other and to users. They are this product's API on Kubernetes objects:
// renaming one breaks objects already in clusters.
package annotations

const prefix = "telemetry-platform.io/"

// On Services (read by the nlb-policy controller; written by telemetry_nlb_ingress).
const (
	// NLBPolicy opts a Service in ("enabled") or out ("disabled") of Calico
	// policy generation.
	NLBPolicy = prefix + "nlb-policy"
	// HealthCheckCIDRs lists, comma-separated, the CIDRs the NLB's health
	// checks come from, for when the controller has no AWS access.
	HealthCheckCIDRs = prefix + "health-check-cidrs"
	// HostEndpointSelector overrides the controller's Calico selector of the
	// nodes' host endpoints for this Service (instance targets).
	HostEndpointSelector = prefix + "host-endpoint-selector"
	// PolicyBackend picks what enforces this Service's sources, among the
	// backends the controller's admins allow (--allowed-policy-backends):
	// PolicyBackendCalico or PolicyBackendNetworkPolicy. Unset: the
	// controller's default (--policy-backend).
	PolicyBackend = prefix + "policy-backend"
	// NodeSecurityGroup records the node security group telemetry_nlb_ingress
	// writes rules to (read back on import).
	NodeSecurityGroup = prefix + "node-security-group"
)

// NLBPolicyFinalizer holds a managed Service until the nlb-policy controller
// has deleted its policies.
const NLBPolicyFinalizer = prefix + "nlb-policy"

// Enforced is the nlb-policy controller's acknowledgement on a Service (JSON,
// see internal/ack): the digest of the spec whose policies are in place, their
// names, when, and any problem. telemetry_nlb_ingress waits for it.
const Enforced = prefix + "enforced"

// Values of NLBPolicy.
// The values of PolicyBackend.
const (
	PolicyBackendCalico        = "calico"
	PolicyBackendNetworkPolicy = "networkpolicy"
)

const (
	Enabled  = "enabled"
	Disabled = "disabled"
)

// On KafkaTopics written by telemetry_site: what the topic does not carry in
// its spec but import and drift detection need.
const (
	Site                   = prefix + "site"
	FlowSources            = prefix + "flow-sources"
	ExpectedFlowsPerSecond = prefix + "expected-flows-per-second"
)

// On generated objects (GlobalNetworkPolicies, GlobalNetworkSets), pointing at
// the Service they were generated for.
const (
	OwnerNamespace = prefix + "owner-namespace"
	OwnerName      = prefix + "owner-name"
	OwnerUID       = prefix + "owner-uid"
)

// NetSet labels a generated GlobalNetworkSet with a hashed value that its
// policies select it by.
const NetSet = prefix + "netset"

// Tags on the AWS security groups telemetry_nlb_ingress creates: the ingress
// ("<namespace>/<name>") and the cluster (its kube-system namespace's UID).
// The provider changes or deletes only a group carrying both for itself.
const (
	IngressTag = prefix + "ingress"
	ClusterTag = prefix + "cluster"
)

// ManagedBy is the well-known label naming the manager of an object.
const ManagedBy = "app.kubernetes.io/managed-by"

// Managers, the values of ManagedBy and the server-side apply field managers.
const (
	ProviderManager  = "terraform-provider-telemetry"
	NLBPolicyManager = "telemetry-nlb-policy"
)
