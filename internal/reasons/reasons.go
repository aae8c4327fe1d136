// Package reasons names the reasons of the Kubernetes Events the controllers
// record, in one place: users select on them (kubectl get events
// --field-selector reason=PoliciesNotApplied), the provider's diagnostics
// point at them, and alerts are written against them, so each is part of the
// product's contract and never renamed lightly.
package reasons

// The nlb-policy controller's, on the Service.
const (
	// PoliciesApplied: the Service's policies (Calico's, or its NetworkPolicy)
	// are in place (Normal).
	PoliciesApplied = "PoliciesApplied"
	// PoliciesNotApplied: they could not be written or enforced; the
	// acknowledgement says nothing is (Warning).
	PoliciesNotApplied = "PoliciesNotApplied"
	// InvalidInput: some of the Service's sources or annotations were
	// refused and left out (Warning).
	InvalidInput = "InvalidInput"
	// NamespaceNotAllowed: the Service asks for policies in a namespace the
	// controller is not allowed to serve (Warning).
	NamespaceNotAllowed = "NamespaceNotAllowed"
	// BackendRefused: the Service's policy backend cannot enforce its
	// sources here (another NetworkPolicy selects its pods, a backend the
	// admins do not allow, ...); nothing is acknowledged (Warning).
	BackendRefused = "BackendRefused"
)

// The conntrack agent's.
const (
	// StaleConntrackEntries: the kernel deleted stale entries, on the
	// Service (Normal).
	StaleConntrackEntries = "StaleConntrackEntries"
	// StaleConntrackDeleteFailed: the kernel refused some deletions, on the
	// Service (Warning).
	StaleConntrackDeleteFailed = "StaleConntrackDeleteFailed"
	// ConntrackAgentDataplane: what the agent found of the node's service
	// proxy, on the Node (Normal, or Warning where it cannot help).
	ConntrackAgentDataplane = "ConntrackAgentDataplane"
	// RevokedConnections: connections of removed sources closed, on the
	// Service (Normal).
	RevokedConnections = "RevokedConnections"
)
