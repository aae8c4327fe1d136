package nlbpolicy

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Siblings: the NetworkPolicies the controller wrote for other Services of
// the same namespace whose pods may be the same. Each opens every port but
// its Service's own to anyone (its "other ports" rule), and NetworkPolicies
// add up: so each Service's policy also leaves its siblings' ports out of
// that rule, and a Service is acknowledged only once no sibling opens its
// ports any more.

// isSibling reports whether np is labelled as the controller's, for another
// Service of svc's namespace.
func isSibling(np *networkingv1.NetworkPolicy, svc *corev1.Service) bool {
	l := np.Labels
	return l[annotations.ManagedBy] == annotations.NLBPolicyManager && l[annotations.OwnerNamespace] == svc.Namespace &&
		l[annotations.OwnerName] != "" && l[annotations.OwnerName] != svc.Name
}

// genuine reports whether a sibling is what the controller makes for its
// owner: named and owned so, the owner managed, and admitting nothing the
// owner does not ask for (its sources and health checks, on its ports). A
// policy written by someone else in the controller's likeness could admit
// anything on this Service's ports: until it is genuine, the Service is not
// acknowledged. (Its owner's policy a moment before the owner's own
// reconcile, after an edit of its sources, is not genuine either: the hold
// lasts until that reconcile.) health are this Service's own health-check
// CIDRs (siblings are behind NLBs in the same subnets, as a rule; a sibling
// whose health checks come from elsewhere holds, closed). resolved are the
// numbers the owner's named target ports resolve to (Input.TargetPortNumbers).
func genuine(np *networkingv1.NetworkPolicy, owner *corev1.Service, resolved map[string][]uint16, health cidrset.Set) bool {
	if owner == nil || !controllerutil.ContainsFinalizer(owner, Finalizer) || np.Name != NetworkPolicyName(owner.Namespace, owner.Name) ||
		len(np.OwnerReferences) != 1 || np.OwnerReferences[0].UID != owner.UID || np.OwnerReferences[0].Kind != "Service" {
		return false
	}
	ranges := lbc.SourceRangesOf(owner)
	sources, _ := cidrset.Parse(ranges)
	ports, unresolved := targetPorts(owner, resolved)
	if unresolved != "" {
		return false
	}
	for _, ps := range slices.Collect(maps.Values(ports)) {
		ports[corev1.ProtocolTCP] = append(ports[corev1.ProtocolTCP], ps...) // health checks
	}
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			if len(r.Ports) == 0 {
				return false // admits everything, on every port
			}
			continue // the open rule: what it opens is weighed by opensAny
		}
		for _, p := range r.Ports {
			if p.Protocol == nil || p.Port == nil || p.Port.StrVal != "" || p.EndPort != nil ||
				!slices.Contains(ports[*p.Protocol], uint16(p.Port.IntVal)) {
				return false
			}
		}
		if len(r.Ports) == 0 {
			return false
		}
		for _, peer := range r.From {
			if peer.IPBlock == nil || peer.PodSelector != nil || peer.NamespaceSelector != nil || len(peer.IPBlock.Except) > 0 {
				return false
			}
			cidr, err := cidrset.ParsePrefix(peer.IPBlock.CIDR)
			if err != nil {
				return false
			}
			// A Service listing no range has its NLB's default sources,
			// which the controller resolves and this check cannot: taken as
			// its own.
			if len(ranges) > 0 && !within(cidr, sources) && !within(cidr, health) {
				return false
			}
		}
	}
	return true
}

// within reports whether every address of p is in s.
func within(p netip.Prefix, s cidrset.Set) bool {
	return slices.ContainsFunc(s.Prefixes(), func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) })
}

// openRanges are the port ranges a policy of the controller's opens to
// anyone: its rule without peers (none in a closed policy).
func openRanges(np *networkingv1.NetworkPolicy) []networkingv1.NetworkPolicyPort {
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 && len(r.Ports) > 0 {
			return r.Ports
		}
	}
	return nil
}

// inRange reports whether a port of a protocol is in one of the ranges.
func inRange(ranges []networkingv1.NetworkPolicyPort, proto corev1.Protocol, port uint16) bool {
	return slices.ContainsFunc(ranges, func(r networkingv1.NetworkPolicyPort) bool {
		if r.Protocol == nil || *r.Protocol != proto || r.Port == nil || r.Port.StrVal != "" {
			return false
		}
		lo, hi := r.Port.IntVal, r.Port.IntVal
		if r.EndPort != nil {
			hi = *r.EndPort
		}
		return int32(port) >= lo && int32(port) <= hi
	})
}

// opensAny reports a port of filtered that the sibling opens to anyone.
func opensAny(sib *networkingv1.NetworkPolicy, filtered map[corev1.Protocol][]uint16) (corev1.Protocol, uint16, bool) {
	open := openRanges(sib)
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, p := range filtered[proto] {
			if inRange(open, proto, p) {
				return proto, p, true
			}
		}
	}
	return "", 0, false
}

// filteredBy are the ports a sibling filters: those its open rule leaves
// out, per protocol. A closed sibling (no open rule) admits nothing and
// filters nothing of its own.
func filteredBy(sib *networkingv1.NetworkPolicy) map[corev1.Protocol][]uint16 {
	open := openRanges(sib)
	out := map[corev1.Protocol][]uint16{}
	if len(open) == 0 {
		return out
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		// The gaps between the ranges, in port order.
		var ranges [][2]int32
		for _, r := range open {
			if r.Protocol == nil || *r.Protocol != proto || r.Port == nil || r.Port.StrVal != "" {
				continue
			}
			hi := r.Port.IntVal
			if r.EndPort != nil {
				hi = *r.EndPort
			}
			ranges = append(ranges, [2]int32{r.Port.IntVal, hi})
		}
		slices.SortFunc(ranges, func(a, b [2]int32) int { return int(a[0] - b[0]) })
		next := int32(1)
		for _, r := range ranges {
			for p := next; p < r[0]; p++ {
				out[proto] = append(out[proto], uint16(p))
			}
			next = max(next, r[1]+1)
		}
		for p := next; p <= 65535; p++ {
			out[proto] = append(out[proto], uint16(p))
		}
	}
	return out
}
