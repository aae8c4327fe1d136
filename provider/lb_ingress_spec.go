package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// telemetry_lb_ingress, the pure part: the Service it renders for a load
// balancer other than the AWS NLB, what the configuration cannot do, and the
// kind read back from a Service on import.

// The kinds of load balancer, one constant each for the schema's validator
// and its description.
const (
	lbKindMetalLB = "metallb"
	lbKindGKE     = "gke"
	lbKindGeneric = "generic"
)

var lbKinds = []string{lbKindMetalLB, lbKindGKE, lbKindGeneric}

// The load balancers' own annotations the resource writes (MetalLB's, as in
// its controller/service.go; GKE's internal passthrough NLB).
const (
	metalLBPool     = "metallb.io/address-pool"
	metalLBIPs      = "metallb.io/loadBalancerIPs"
	metalLBSharedIP = "metallb.io/allow-shared-ip"
	gkeLBType       = "networking.gke.io/load-balancer-type"
	gkeInternal     = "Internal"
)

// metalLBHeldPool is the address pool a MetalLB Service names until the
// nlb-policy controller has acknowledged it: no pool can have it (a pool's
// name is an object name, without "/"), so MetalLB gives the Service no
// address and its speaker announces none, while the Service's selector,
// sources and ports are already those the controller enforces. There is no
// cloud firewall on bare metal: the address is what lets exporters in.
const metalLBHeldPool = "telemetry-platform.io/held-until-acknowledged"

// held is the ingress as written until its first acknowledgement: for
// MetalLB, in the held pool with no address asked for; other kinds have no
// such hold (a generic class's controller is unknown, GKE fences the address
// with its own firewall from the sources).
func (s lbIngressSpec) held() (lbIngressSpec, bool) {
	if s.Kind != lbKindMetalLB {
		return s, false
	}
	s.AddressPool, s.Addresses, s.SharedIPKey = metalLBHeldPool, nil, ""
	return s, true
}

// stillHeld says whether a live Service is held (held) and not yet released.
func stillHeld(svc *corev1.Service) bool { return svc.Annotations[metalLBPool] == metalLBHeldPool }

// lbIngressSpec is a telemetry_lb_ingress as configured.
type lbIngressSpec struct {
	Name, Namespace, Kind string
	Selector              map[string]string
	Ports                 []ingressPort
	Sources               cidrset.Set
	AddressPool           string       // metallb
	Addresses             []netip.Addr // metallb: asked for, one per family at most
	SharedIPKey           string       // metallb
	Class                 string       // generic: spec.loadBalancerClass
	Internal              bool         // gke
}

// families are the address families of the Service: those of the sources,
// IPv4 first. kube-proxy filters a family at the load balancer's address
// only when the source list names a net of it (a dual-stack Service listing
// IPv4 nets alone admits every IPv6 source there, measured in
// TestNetworkPolicyBackendWithMetalLB): so the Service has no family its
// sources do not name.
func (s lbIngressSpec) families() []corev1.IPFamily {
	var out []corev1.IPFamily
	for _, fam := range []struct {
		is6    bool
		family corev1.IPFamily
	}{{false, corev1.IPv4Protocol}, {true, corev1.IPv6Protocol}} {
		if slices.ContainsFunc(s.Sources.Prefixes(), func(p netip.Prefix) bool { return p.Addr().Is6() == fam.is6 }) {
			out = append(out, fam.family)
		}
	}
	return out
}

// annotations are the Service annotations the resource writes.
func (s lbIngressSpec) annotations() map[string]string {
	out := map[string]string{
		annotations.NLBPolicy:     annotations.Enabled,
		annotations.PolicyBackend: annotations.PolicyBackendNetworkPolicy,
	}
	switch s.Kind {
	case lbKindMetalLB:
		if s.AddressPool != "" {
			out[metalLBPool] = s.AddressPool
		}
		if len(s.Addresses) > 0 {
			var ips []string
			for _, a := range s.Addresses {
				ips = append(ips, a.String())
			}
			out[metalLBIPs] = strings.Join(ips, ",")
		}
		if s.SharedIPKey != "" {
			out[metalLBSharedIP] = s.SharedIPKey
		}
	case lbKindGKE:
		if s.Internal {
			out[gkeLBType] = gkeInternal
		}
	}
	return out
}

// service renders the Service: type LoadBalancer, the client's address kept
// (externalTrafficPolicy Local, which the NetworkPolicy backend needs), the
// sources as loadBalancerSourceRanges (which kube-proxy also enforces at the
// load balancer's address), the families of the sources alone, no NodePorts
// where the load balancer does not use them (MetalLB, a generic class: on
// bare metal nothing else fences them), and the nlb-policy controller opted
// in with the networkpolicy backend (the only one for these load balancers).
func (s lbIngressSpec) service() *corev1ac.ServiceApplyConfiguration {
	families := s.families()
	policy := corev1.IPFamilyPolicySingleStack
	if len(families) > 1 {
		policy = corev1.IPFamilyPolicyRequireDualStack
	}
	spec := corev1ac.ServiceSpec().
		WithType(corev1.ServiceTypeLoadBalancer).
		WithSelector(s.Selector).
		WithExternalTrafficPolicy(corev1.ServiceExternalTrafficPolicyLocal).
		WithLoadBalancerSourceRanges(s.Sources.Strings()...).
		WithIPFamilyPolicy(policy).
		WithIPFamilies(families...)
	if s.Kind != lbKindGKE {
		spec = spec.WithAllocateLoadBalancerNodePorts(false)
	}
	if s.Kind == lbKindGeneric && s.Class != "" {
		spec = spec.WithLoadBalancerClass(s.Class)
	}
	for _, p := range servicePorts(s.Ports) {
		spec = spec.WithPorts(corev1ac.ServicePort().WithName(p.Name).WithProtocol(p.Protocol).WithPort(p.Port).WithTargetPort(p.TargetPort))
	}
	return corev1ac.Service(s.Name, s.Namespace).
		WithAnnotations(s.annotations()).
		WithLabels(map[string]string{annotations.ManagedBy: annotations.ProviderManager}).
		WithSpec(spec)
}

// problems lists what the configuration cannot do, each with its fix.
func (s lbIngressSpec) problems() []string {
	problems := portProblems(s.Ports)
	only := func(set bool, attr, kind string) {
		if set && s.Kind != kind {
			problems = append(problems, fmt.Sprintf("%s is for kind %q only (this ingress is %q): remove it", attr, kind, s.Kind))
		}
	}
	only(s.AddressPool != "", "address_pool", lbKindMetalLB)
	only(len(s.Addresses) > 0, "addresses", lbKindMetalLB)
	only(s.SharedIPKey != "", "shared_ip_key", lbKindMetalLB)
	only(s.Internal, "internal", lbKindGKE)
	only(s.Class != "", "load_balancer_class", lbKindGeneric)
	families := s.families()
	seen := map[bool]bool{}
	for _, a := range s.Addresses {
		family := corev1.IPv4Protocol
		if a.Is6() {
			family = corev1.IPv6Protocol
		}
		if seen[a.Is6()] {
			problems = append(problems, fmt.Sprintf("addresses: more than one %s address (MetalLB gives a Service one per family)", family))
		}
		seen[a.Is6()] = true
		if !slices.Contains(families, family) {
			problems = append(problems, fmt.Sprintf("addresses: %s is %s, but allowed_sources name no %s net, so the Service has no "+
				"%s address (a family without sources would be open to every source at the load balancer's address): add its "+
				"sources or remove the address", a, family, family, family))
		}
	}
	if p := sourcesProblem(s.Sources); p != "" {
		problems = append(problems, p)
	}
	return problems
}

// lbManagedAnnotations are the annotation keys telemetry_lb_ingress writes
// (the others on its Service are someone else's).
var lbManagedAnnotations = []string{annotations.NLBPolicy, annotations.PolicyBackend, metalLBPool, metalLBIPs, metalLBSharedIP, gkeLBType}

// lbKindOf reads the kind back from a Service being imported: MetalLB's or
// GKE's annotations name theirs; anything else is generic.
func lbKindOf(svc *corev1.Service) string {
	ann := svc.Annotations
	switch {
	case ann[metalLBPool] != "" || ann[metalLBIPs] != "" || ann[metalLBSharedIP] != "":
		return lbKindMetalLB
	case ann[gkeLBType] != "" || (svc.Spec.LoadBalancerClass != nil && strings.HasPrefix(*svc.Spec.LoadBalancerClass, "networking.gke.io/")):
		return lbKindGKE
	}
	return lbKindGeneric
}

// lbManagedOf keeps the resource's own keys of a Service's annotations.
func lbManagedOf(ann map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range lbManagedAnnotations {
		if v, ok := ann[k]; ok {
			out[k] = v
		}
	}
	return out
}
