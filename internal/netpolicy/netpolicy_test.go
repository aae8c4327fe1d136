package netpolicy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func policy(name string, sel map[string]string, rules ...networkingv1.NetworkPolicyIngressRule) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, Ingress: rules}}
}

func port(proto corev1.Protocol, p int32, end ...int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Protocol: ptr.To(proto), Port: ptr.To(intstr.FromInt32(p))}
	if len(end) > 0 {
		np.EndPort = ptr.To(end[0])
	}
	return np
}

func block(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func TestEvaluate(t *testing.T) {
	pod := Pod{Namespace: "t", Labels: map[string]string{"app": "sfacctd", "tier": "x"},
		Ports: map[string]NamedPort{"sflow": {corev1.ProtocolUDP, 6343}}}
	sflow := func(src string) Packet {
		return Packet{Src: netip.MustParseAddr(src), Protocol: corev1.ProtocolUDP, Port: 6343}
	}
	allowSources := policy("sources", map[string]string{"app": "sfacctd"}, networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 6343)},
		From:  []networkingv1.NetworkPolicyPeer{block("192.0.2.0/24", "192.0.2.128/25"), block("2001:db8::/64")},
	})
	others := policy("others", map[string]string{"app": "sfacctd"}, networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 1, 6342), port(corev1.ProtocolUDP, 6344, 65535), port(corev1.ProtocolTCP, 1, 65535)},
	})
	named := policy("named", map[string]string{"app": "sfacctd"}, networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromString("sflow"))}},
		From:  []networkingv1.NetworkPolicyPeer{block("198.51.100.0/24")},
	})
	egressOnly := policy("egress", nil)
	egressOnly.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	elsewhere := policy("elsewhere", nil)
	elsewhere.Namespace = "other"
	podPeer := policy("pods", nil, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}})

	for _, tc := range []struct {
		name     string
		policies []networkingv1.NetworkPolicy
		p        Packet
		allowed  bool
		isolated bool
	}{
		{"no policy: open", nil, sflow("203.0.113.1"), true, false},
		{"egress-only and other namespaces do not isolate", []networkingv1.NetworkPolicy{egressOnly, elsewhere}, sflow("203.0.113.1"), true, false},
		{"a listed source", []networkingv1.NetworkPolicy{allowSources}, sflow("192.0.2.1"), true, true},
		{"inside an except", []networkingv1.NetworkPolicy{allowSources}, sflow("192.0.2.200"), false, true},
		{"an IPv6 source", []networkingv1.NetworkPolicy{allowSources}, sflow("2001:db8::5"), true, true},
		{"an IPv6 source outside", []networkingv1.NetworkPolicy{allowSources}, sflow("2001:db8:1::5"), false, true},
		{"an unlisted source", []networkingv1.NetworkPolicy{allowSources, others}, sflow("203.0.113.1"), false, true},
		{"another UDP port, by range", []networkingv1.NetworkPolicy{allowSources, others}, Packet{netip.MustParseAddr("203.0.113.1"), corev1.ProtocolUDP, 9995}, true, true},
		{"TCP to the same number", []networkingv1.NetworkPolicy{allowSources, others}, Packet{netip.MustParseAddr("203.0.113.1"), corev1.ProtocolTCP, 6343}, true, true},
		{"SCTP not listed", []networkingv1.NetworkPolicy{allowSources, others}, Packet{netip.MustParseAddr("203.0.113.1"), corev1.ProtocolSCTP, 9}, false, true},
		{"a named port resolves", []networkingv1.NetworkPolicy{named}, sflow("198.51.100.9"), true, true},
		{"a named port of another number", []networkingv1.NetworkPolicy{named}, Packet{netip.MustParseAddr("198.51.100.9"), corev1.ProtocolUDP, 6344}, false, true},
		{"pod peers never match outside sources", []networkingv1.NetworkPolicy{podPeer}, sflow("203.0.113.1"), false, true},
		{"a union: any policy's rule admits", []networkingv1.NetworkPolicy{named, allowSources}, sflow("198.51.100.9"), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(tc.policies, pod, tc.p)
			if v.Allowed != tc.allowed || v.Isolated != tc.isolated {
				t.Errorf("got %s, want allowed=%v isolated=%v", v, tc.allowed, tc.isolated)
			}
		})
	}
}

// TestCouldSelectIsSound: for random selectors and random pods carrying the
// fixed labels, a selector that selects the pod is always one CouldSelect
// says could; and it is not trivially true (it rules some out).
func TestCouldSelectIsSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys, values := []string{"app", "tier", "team"}, []string{"a", "b", "c"}
	fixed := map[string]string{"app": "a"}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	ruledOut := 0
	for i := 0; i < 20000; i++ {
		var sel metav1.LabelSelector
		for j := rng.IntN(3); j > 0; j-- {
			if sel.MatchLabels == nil {
				sel.MatchLabels = map[string]string{}
			}
			sel.MatchLabels[keys[rng.IntN(3)]] = values[rng.IntN(3)]
		}
		for j := rng.IntN(3); j > 0; j-- {
			e := metav1.LabelSelectorRequirement{Key: keys[rng.IntN(3)], Operator: ops[rng.IntN(4)]}
			if e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpNotIn {
				e.Values = []string{values[rng.IntN(3)], values[rng.IntN(3)]}
			}
			sel.MatchExpressions = append(sel.MatchExpressions, e)
		}
		could := CouldSelect(sel, fixed)
		if !could {
			ruledOut++
		}
		for k := 0; k < 20; k++ {
			podLabels := map[string]string{"app": "a"}
			for _, key := range keys[1:] {
				if rng.IntN(2) == 0 {
					podLabels[key] = values[rng.IntN(3)]
				}
			}
			np := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "t"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: sel}}
			if Selects(&np, "t", podLabels) && !could {
				t.Fatalf("selector %s selects pod %v, but CouldSelect said no", fmt.Sprint(sel), podLabels)
			}
		}
	}
	if ruledOut == 0 {
		t.Fatal("CouldSelect ruled out no selector: the test says nothing")
	}
	t.Logf("%d of 20000 random selectors ruled out", ruledOut)
}
