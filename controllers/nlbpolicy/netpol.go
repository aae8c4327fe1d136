package nlbpolicy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netpolicy"
)

// The NetworkPolicy backend's model: for clusters whose dataplane enforces
// the standard networking.k8s.io/v1 NetworkPolicy (the VPC CNI's agent,
// Cilium and GKE's Dataplane V2, kube-router, Calico), one NetworkPolicy per
// Service, in its namespace, selecting its pods.
//
// A NetworkPolicy can only allow, and the policies selecting a pod add up:
// one that selects pods nothing else selects isolates them, so it narrows
// (from everything to what it lists); one written beside others can only
// widen what they admit. So the backend writes its policy only where no other
// NetworkPolicy of the namespace could select the Service's pods, and
// refuses, unacknowledged, elsewhere. Its policy admits the sources (and the
// health checks, with ip targets) on the Service's target ports, and every
// other TCP, UDP and SCTP port from anywhere, so that isolating the pods cuts
// nothing it was not asked to filter; protocols a NetworkPolicy cannot name
// (ICMP) are cut.

// Backend is what enforces a Service's sources.
type Backend string

const (
	// BackendCalico writes Calico GlobalNetworkPolicies in the product's
	// tier (Desired).
	BackendCalico Backend = annotations.PolicyBackendCalico
	// BackendNetworkPolicy writes a Kubernetes NetworkPolicy in the
	// Service's namespace (DesiredNetworkPolicy).
	BackendNetworkPolicy Backend = annotations.PolicyBackendNetworkPolicy
)

// Backends are the backends the controller has, in the order flags list them.
var Backends = []Backend{BackendCalico, BackendNetworkPolicy}

// ParseBackend reads a backend's name.
func ParseBackend(s string) (Backend, error) {
	if b := Backend(s); slices.Contains(Backends, b) {
		return b, nil
	}
	return "", fmt.Errorf("unknown policy backend %q: one of %s", s, joinBackends(Backends))
}

func joinBackends(bs []Backend) string {
	var names []string
	for _, b := range bs {
		names = append(names, string(b))
	}
	return strings.Join(names, ", ")
}

// allowed are the backends a Service may choose: Options.Backends, or the
// default alone.
func (o Options) allowed() []Backend {
	if len(o.Backends) == 0 {
		return []Backend{o.backend()}
	}
	return o.Backends
}

func (o Options) backend() Backend {
	if o.Backend == "" {
		return BackendCalico
	}
	return o.Backend
}

// Allows reports whether a backend is among those the controller runs.
func (o Options) Allows(b Backend) bool { return slices.Contains(o.allowed(), b) }

// BackendOf is the backend a Service is enforced with: its annotation's,
// when the admins allow it, else the controller's default. A choice that is
// unknown or not allowed is a problem: the Service is refused (no backend
// writes for it and it is not acknowledged), since either backend might admit
// what the other would not.
func BackendOf(svc *corev1.Service, opts Options) (Backend, string) {
	v, ok := svc.Annotations[annotations.PolicyBackend]
	if !ok {
		return opts.backend(), ""
	}
	b, err := ParseBackend(v)
	if err != nil {
		return "", fmt.Sprintf("%s: %v", annotations.PolicyBackend, err)
	}
	if !opts.Allows(b) {
		return "", fmt.Sprintf("%s %q is not among the backends this cluster's nlb-policy controller runs (%s): "+
			"remove the annotation or ask the cluster's admins to allow it (--allowed-policy-backends)",
			annotations.PolicyBackend, v, joinBackends(opts.allowed()))
	}
	return b, ""
}

// suffixNetworkPolicy ends the name of a Service's NetworkPolicy.
const suffixNetworkPolicy = "-np"

// NetworkPolicyName is the name of a Service's NetworkPolicy, in its namespace.
func NetworkPolicyName(namespace, name string) string {
	return BaseName(namespace, name) + suffixNetworkPolicy
}

// NetworkPolicyOutput is the NetworkPolicy backend's desired state for one
// Service.
type NetworkPolicyOutput struct {
	// Policy is the Service's NetworkPolicy; nil when none may be written
	// (Refused, Waiting).
	Policy   *networkingv1.NetworkPolicy
	Problems []string
	// Waiting says why nothing can be computed yet (as Output.Waiting).
	Waiting string
	// Hold says why the Policy, written, does not enforce the sources yet
	// (a sibling still opens the Service's ports): no acknowledgement until
	// it does.
	Hold string
	// Siblings are the other Services whose policies may select the same
	// pods: their writes count for this one's programming grace too.
	Siblings []string
	// Refused says why this backend cannot enforce the Service's sources:
	// no policy of its is written, the Service is not acknowledged.
	Refused string
	// Beside: refused because another NetworkPolicy could select the pods.
	// The Service's policy, beside it, could only widen what it admits, so
	// one it had is replaced by Closed: the same pods isolated, nothing
	// admitted. Deleting it instead would open the pods wide the moment the
	// other policy goes, until the controller writes its own again.
	Beside  bool
	Closed  *networkingv1.NetworkPolicy
	Sources cidrset.Set
}

// DesiredNetworkPolicy computes a Service's NetworkPolicy. others are the
// NetworkPolicies of the Service's namespace not written for it: the
// controller's own for other Services (siblings: several Services over the
// same pods, e.g. an NLB brought up beside another, share them, each
// filtering its own ports and leaving the others' closed), and any other
// (beside which it refuses).
func DesiredNetworkPolicy(in Input, others []networkingv1.NetworkPolicy) NetworkPolicyOutput {
	svc := in.Service
	var out NetworkPolicyOutput
	ipTargets := ipTargetsOf(svc)
	sources, health, problems := admitted(in, ipTargets)
	out.Sources, out.Problems = sources, problems
	if len(svc.Spec.Selector) == 0 {
		out.Waiting = "the Service has no selector: no pods to protect"
		return out
	}
	if !ipTargets && svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		// With instance targets (any load balancer but the AWS NLB with ip
		// targets) and externalTrafficPolicy Cluster, kube-proxy masquerades
		// the client: the pod sees a node's address, which no source range
		// names.
		if lbc.IsNLB(svc) {
			out.Refused = "instance targets with externalTrafficPolicy Cluster: the pods see a node's address, not the client's, " +
				"so a NetworkPolicy cannot filter by source; set externalTrafficPolicy: Local (or ip targets), or use the calico backend"
		} else {
			out.Refused = "externalTrafficPolicy Cluster: kube-proxy masquerades the client, so the pods see a node's address and a " +
				"NetworkPolicy cannot filter by source; set externalTrafficPolicy: Local"
		}
		return out
	}
	if !lbc.IsNLB(svc) && slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.NodePort != 0 }) {
		// No cloud firewall fences them: the NodePorts admit anyone who
		// reaches a node before the policy is enforced and after the
		// Service is gone (measured in TestNetworkPolicyBackendWithMetalLB).
		out.Problems = append(out.Problems, "the Service has NodePorts, which no cloud firewall fences here: they admit any source "+
			"that reaches a node until the policy is enforced and once the Service is deleted; set "+
			"spec.allocateLoadBalancerNodePorts: false (MetalLB and kube-vip do not use them)")
	}
	var siblings []*networkingv1.NetworkPolicy
	for i := range others {
		np := &others[i]
		if np.Namespace != svc.Namespace || !netpolicy.AppliesToIngress(np) || !netpolicy.CouldSelect(np.Spec.PodSelector, svc.Spec.Selector) {
			continue
		}
		if isSibling(np, svc) {
			owner := np.Labels[annotations.OwnerName]
			if !genuine(np, in.Services[owner], in.TargetPortNumbers[owner], health) && out.Hold == "" {
				out.Hold = fmt.Sprintf("the NetworkPolicy %s, labelled as the controller's for Service %s over the same pods, is not "+
					"what the controller writes for that Service (it admits what the Service does not ask for, or the Service is "+
					"not managed): not trusted until it is", np.Name, owner)
			}
			siblings = append(siblings, np)
			out.Siblings = append(out.Siblings, owner)
			continue
		}
		out.Refused = fmt.Sprintf("NetworkPolicy %s/%s selects (or may select) the Service's pods: NetworkPolicies only add to "+
			"each other, so another policy here could only widen what it admits or open what it closes; exclude the pods "+
			"from it (e.g. a matchExpressions NotIn on one of the Service's selector labels), or use the calico backend",
			np.Namespace, np.Name)
		out.Beside = true
		out.Closed = networkPolicy(svc, nil)
		return out
	}

	// The target ports, per protocol: what the pods receive, with ip
	// targets from the NLB, with instance targets after kube-proxy's DNAT.
	ports, unresolved := targetPorts(svc, in.TargetPortNumbers[svc.Name])
	if unresolved != "" {
		out.Waiting = unresolved
		return out
	}
	if len(ports) == 0 {
		out.Waiting = "the Service has no ports"
		return out
	}

	var rules []networkingv1.NetworkPolicyIngressRule
	filtered := map[corev1.Protocol][]uint16{}
	for _, proto := range slices.Sorted(maps.Keys(ports)) {
		ps := ports[proto]
		slices.Sort(ps)
		filtered[proto] = append(filtered[proto], ps...)
		if sources.Len() > 0 {
			rules = append(rules, networkingv1.NetworkPolicyIngressRule{Ports: exactPorts(proto, ps), From: ipBlocks(sources)})
		}
	}
	if ipTargets {
		// The NLB's health checks are TCP, to the target ports.
		var hp []uint16
		for _, ps := range ports {
			hp = append(hp, ps...)
		}
		slices.Sort(hp)
		hp = slices.Compact(hp)
		filtered[corev1.ProtocolTCP] = append(filtered[corev1.ProtocolTCP], hp...)
		if health.Len() > 0 {
			rules = append(rules, networkingv1.NetworkPolicyIngressRule{Ports: exactPorts(corev1.ProtocolTCP, hp), From: ipBlocks(health)})
		}
	}
	// Another Service's policy over the same pods opens every port but its
	// own to anyone: until it stops opening this Service's ports, this one
	// filters nothing there. Its own ports stay closed here in turn.
	for _, sib := range siblings {
		if proto, port, ok := opensAny(sib, filtered); ok && out.Hold == "" {
			out.Hold = fmt.Sprintf("the NetworkPolicy %s of another Service over the same pods still admits %s %d from anywhere "+
				"(the controller narrows it next)", sib.Name, proto, port)
		}
		for proto, ps := range filteredBy(sib) {
			filtered[proto] = append(filtered[proto], ps...)
		}
	}
	var rest []networkingv1.NetworkPolicyPort
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		rest = append(rest, portsOutside(proto, filtered[proto])...)
	}
	rules = append(rules, networkingv1.NetworkPolicyIngressRule{Ports: rest})

	out.Policy = networkPolicy(svc, rules)
	return out
}

// networkPolicy is the Service's NetworkPolicy with these rules: none
// admits nothing, and still isolates the pods.
func networkPolicy(svc *corev1.Service, rules []networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: NetworkPolicyName(svc.Namespace, svc.Name), Labels: ownerLabels(svc),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr(true)}},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: maps.Clone(svc.Spec.Selector)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     rules,
		},
	}
}

// targetPorts are a Service's target ports per protocol: a number as it
// is; a name as every number it resolves to on the pods (resolved, by
// Service port name: pods of two templates may differ). unresolved says
// which name resolves to no number yet: its pods are not up, or name no
// such port, and the pods' other ports cannot be told from it.
func targetPorts(svc *corev1.Service, resolved map[string][]uint16) (ports map[corev1.Protocol][]uint16, unresolved string) {
	ports = map[corev1.Protocol][]uint16{}
	add := func(proto corev1.Protocol, n uint16) {
		if !slices.Contains(ports[proto], n) {
			ports[proto] = append(ports[proto], n)
		}
	}
	for _, sp := range svc.Spec.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		switch {
		case sp.TargetPort.StrVal != "":
			if len(resolved[sp.Name]) == 0 {
				return nil, fmt.Sprintf("port %q has the named target port %q, which no endpoint of the Service resolves to a "+
					"number yet (its EndpointSlices): the networkpolicy backend filters the numbers the pods give the name; "+
					"it is written once a pod naming the port is up", sp.Name, sp.TargetPort.StrVal)
			}
			for _, n := range resolved[sp.Name] {
				add(proto, n)
			}
		case sp.TargetPort.IntVal != 0:
			add(proto, uint16(sp.TargetPort.IntVal))
		default:
			add(proto, uint16(sp.Port))
		}
	}
	for _, ps := range ports {
		slices.Sort(ps)
	}
	return ports, ""
}

// hasNamedTargetPort reports whether a port of svc targets a container
// port by name.
func hasNamedTargetPort(svc *corev1.Service) bool {
	return slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.TargetPort.StrVal != "" })
}

// resolvedPorts are the numbers a Service's EndpointSlices give its ports,
// by Service port name: each slice holds endpoints whose pods resolve every
// named target port alike, so pods of two templates make two slices.
// Slices without endpoints (a Service with none keeps a placeholder) name no
// port.
func resolvedPorts(eps []discoveryv1.EndpointSlice) map[string][]uint16 {
	out := map[string][]uint16{}
	for _, es := range eps {
		if len(es.Endpoints) == 0 {
			continue
		}
		for _, p := range es.Ports {
			if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if n := uint16(*p.Port); !slices.Contains(out[name], n) {
				out[name] = append(out[name], n)
			}
		}
	}
	return out
}

func exactPorts(proto corev1.Protocol, ps []uint16) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range ps {
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: ptr(proto), Port: ptr(intstr.FromInt32(int32(p)))})
	}
	return out
}

// portsOutside are the port ranges of a protocol (1-65535) that none of
// ports is in.
func portsOutside(proto corev1.Protocol, ports []uint16) []networkingv1.NetworkPolicyPort {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	var out []networkingv1.NetworkPolicyPort
	add := func(lo, hi int32) {
		if lo > hi {
			return
		}
		p := networkingv1.NetworkPolicyPort{Protocol: ptr(proto), Port: ptr(intstr.FromInt32(lo))}
		if hi > lo {
			p.EndPort = ptr(hi)
		}
		out = append(out, p)
	}
	next := int32(1)
	for _, p := range ps {
		add(next, int32(p)-1)
		next = int32(p) + 1
	}
	add(next, 65535)
	return out
}

// ipBlocks is one peer per net, IPv4 then IPv6.
func ipBlocks(s cidrset.Set) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, p := range s.Prefixes() {
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: p.String()}})
	}
	return out
}
