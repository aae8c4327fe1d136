// Package netpolicy is the semantics of Kubernetes NetworkPolicy
// (networking.k8s.io/v1) for traffic from outside the cluster to a pod: which
// policies isolate a pod, what they admit, and whether a policy could select
// a pod that carries given labels. The nlb-policy controller's NetworkPolicy
// backend decides with it (a NetworkPolicy only adds to the others that
// select a pod, so the backend must know whether any other could), and the
// tests judge what the controller writes with Evaluate, kept honest by a
// differential test against real enforcers.
//
// Scope: ingress only; sources outside the cluster, so podSelector and
// namespaceSelector peers (which match pods) never match; named ports
// resolved through the pod's declared container ports.
package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Pod is what Evaluate needs of a pod.
type Pod struct {
	Namespace string
	Labels    map[string]string
	// Ports are the pod's named container ports, for policies that name one.
	Ports map[string]NamedPort
}

// NamedPort is a named container port.
type NamedPort struct {
	Protocol corev1.Protocol
	Port     uint16
}

// Packet is a packet from outside the cluster to the pod.
type Packet struct {
	Src      netip.Addr
	Protocol corev1.Protocol
	Port     uint16
}

// Verdict is what the policies decide for a packet.
type Verdict struct {
	Allowed bool
	// Isolated: some policy selects the pod for ingress. Not isolated, every
	// packet is allowed.
	Isolated bool
	// By names the policy whose rule allowed the packet, or the policies
	// that isolate the pod when none did.
	By []string
}

func (v Verdict) String() string {
	switch {
	case !v.Isolated:
		return "allowed (not isolated)"
	case v.Allowed:
		return fmt.Sprintf("allowed by %v", v.By)
	}
	return fmt.Sprintf("denied (isolated by %v)", v.By)
}

// AppliesToIngress reports whether a policy governs ingress: policyTypes
// lists Ingress, or is empty (the API server's default then includes it).
func AppliesToIngress(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// Selects reports whether np selects a pod of the namespace with these labels.
func Selects(np *networkingv1.NetworkPolicy, namespace string, podLabels map[string]string) bool {
	if np.Namespace != namespace {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return false // the API server refuses such a selector
	}
	return sel.Matches(labels.Set(podLabels))
}

// CouldSelect reports whether a pod carrying at least the fixed labels
// (and any others) could be selected by sel: false only when one of sel's
// requirements contradicts a fixed label. A Service's pods carry its
// selector and whatever else their owners add, so a policy that could select
// them has to be counted as selecting them.
func CouldSelect(sel metav1.LabelSelector, fixed map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if have, ok := fixed[k]; ok && have != v {
			return false
		}
	}
	for _, e := range sel.MatchExpressions {
		have, ok := fixed[e.Key]
		if !ok {
			continue // the pod may carry the label or not, with any value
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			if !slices.Contains(e.Values, have) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if slices.Contains(e.Values, have) {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			return false
		}
	}
	return true
}

// Evaluate decides a packet to pod under the policies: allowed when no
// policy of the pod's namespace selects it for ingress, else when a rule of
// one that does admits it (NetworkPolicies are a union of allows).
func Evaluate(policies []networkingv1.NetworkPolicy, pod Pod, p Packet) Verdict {
	var v Verdict
	var isolating []string
	for i := range policies {
		np := &policies[i]
		if !AppliesToIngress(np) || !Selects(np, pod.Namespace, pod.Labels) {
			continue
		}
		v.Isolated = true
		isolating = append(isolating, np.Name)
		for _, rule := range np.Spec.Ingress {
			if portsMatch(rule.Ports, pod, p) && peersMatch(rule.From, p.Src) {
				v.Allowed = true
				v.By = append(v.By, np.Name)
				break
			}
		}
	}
	if !v.Isolated {
		v.Allowed = true
	}
	if !v.Allowed {
		v.By = isolating
	}
	return v
}

// portsMatch: no ports match every port of every protocol; a port without a
// number every port of its protocol (TCP when unset).
func portsMatch(ports []networkingv1.NetworkPolicyPort, pod Pod, p Packet) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		proto := corev1.ProtocolTCP
		if np.Protocol != nil {
			proto = *np.Protocol
		}
		if proto != p.Protocol {
			continue
		}
		switch {
		case np.Port == nil:
			return true
		case np.Port.StrVal != "":
			if named, ok := pod.Ports[np.Port.StrVal]; ok && named.Protocol == proto && named.Port == p.Port {
				return true
			}
		default:
			lo, hi := np.Port.IntVal, np.Port.IntVal
			if np.EndPort != nil {
				hi = *np.EndPort
			}
			if int32(p.Port) >= lo && int32(p.Port) <= hi {
				return true
			}
		}
	}
	return false
}

// peersMatch: no peers match every source; of the peers, only ipBlocks
// match a source outside the cluster.
func peersMatch(peers []networkingv1.NetworkPolicyPeer, src netip.Addr) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peer.IPBlock != nil && BlockContains(peer.IPBlock, src) {
			return true
		}
	}
	return false
}

// BlockContains reports whether an ipBlock admits src: inside its CIDR and
// outside each of its excepts.
func BlockContains(b *networkingv1.IPBlock, src netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(src) {
		return false
	}
	for _, e := range b.Except {
		if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(src) {
			return false
		}
	}
	return true
}
