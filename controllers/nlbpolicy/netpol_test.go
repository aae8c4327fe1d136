package nlbpolicy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netpolicy"
)

func ipTargets(s *corev1.Service) { s.Annotations[lbc.NLBTargetType] = lbc.TargetIP }

func TestDesiredNetworkPolicy(t *testing.T) {
	in := func(svc *corev1.Service) Input {
		return Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/24", "fd00:10::/64"}}
	}
	pod := netpolicy.Pod{Namespace: "telemetry", Labels: map[string]string{"app": "sfacctd", "pod-template-hash": "x"}}
	pkt := func(src string, proto corev1.Protocol, port uint16) netpolicy.Packet {
		return netpolicy.Packet{Src: netip.MustParseAddr(src), Protocol: proto, Port: port}
	}
	for _, tc := range []struct {
		name  string
		svc   *corev1.Service
		allow []netpolicy.Packet
		deny  []netpolicy.Packet
	}{
		{"ip targets", nlbService(ipTargets, func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = append(s.Spec.LoadBalancerSourceRanges, "2001:db8::/48")
		}),
			[]netpolicy.Packet{pkt("192.0.2.9", "UDP", 6343), pkt("198.51.100.1", "TCP", 4740), pkt("2001:db8::1", "UDP", 4740),
				pkt("10.0.0.7", "TCP", 6343), pkt("fd00:10::7", "TCP", 4740), // health checks, TCP to the target ports
				pkt("203.0.113.1", "TCP", 9100), pkt("203.0.113.1", "UDP", 6344), pkt("203.0.113.1", "UDP", 4739), pkt("203.0.113.1", "SCTP", 6343)},
			[]netpolicy.Packet{pkt("203.0.113.1", "UDP", 6343), pkt("198.51.100.200", "UDP", 6343), pkt("2001:db9::1", "UDP", 4740),
				pkt("10.0.0.7", "UDP", 6343), pkt("203.0.113.1", "TCP", 6343)}},
		{"instance targets with externalTrafficPolicy Local: no health rule (kube-proxy answers them)", nlbService(),
			[]netpolicy.Packet{pkt("192.0.2.9", "UDP", 6343), pkt("203.0.113.1", "TCP", 6343), pkt("203.0.113.1", "TCP", 10256)},
			[]netpolicy.Packet{pkt("203.0.113.1", "UDP", 6343), pkt("10.0.0.7", "UDP", 4740), pkt("10.0.0.7", "TCP", 4740)}},
		{"an edge port: 1 and 65535", nlbService(ipTargets, func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Protocol: "UDP", Port: 1}, {Name: "b", Protocol: "UDP", Port: 65535}}
		}),
			[]netpolicy.Packet{pkt("192.0.2.9", "UDP", 1), pkt("192.0.2.9", "UDP", 65535), pkt("203.0.113.1", "UDP", 2), pkt("203.0.113.1", "UDP", 65534)},
			[]netpolicy.Packet{pkt("203.0.113.1", "UDP", 1), pkt("203.0.113.1", "UDP", 65535)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := DesiredNetworkPolicy(in(tc.svc), nil)
			if out.Policy == nil || out.Refused != "" || out.Waiting != "" {
				t.Fatalf("no policy: refused %q, waiting %q", out.Refused, out.Waiting)
			}
			ps := []networkingv1.NetworkPolicy{*out.Policy}
			for _, p := range tc.allow {
				if v := netpolicy.Evaluate(ps, pod, p); !v.Allowed {
					t.Errorf("%v: %s, want allowed", p, v)
				}
			}
			for _, p := range tc.deny {
				if v := netpolicy.Evaluate(ps, pod, p); v.Allowed {
					t.Errorf("%v: %s, want denied", p, v)
				}
			}
			if got := out.Policy.OwnerReferences; len(got) != 1 || got[0].Kind != "Service" || got[0].UID != tc.svc.UID {
				t.Errorf("owner references %v, want the Service", got)
			}
		})
	}
}

func TestDesiredNetworkPolicyRefuses(t *testing.T) {
	other := func(name string, sel metav1.LabelSelector, types ...networkingv1.PolicyType) networkingv1.NetworkPolicy {
		return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types}}
	}
	for _, tc := range []struct {
		name   string
		svc    *corev1.Service
		others []networkingv1.NetworkPolicy
		want   string // in Refused; "" for a policy
	}{
		{"externalTrafficPolicy Cluster with instance targets loses the client", nlbService(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}), nil, "externalTrafficPolicy: Local"},
		{"a namespace's default deny", nlbService(ipTargets), []networkingv1.NetworkPolicy{other("default-deny", metav1.LabelSelector{})}, "default-deny"},
		{"a policy that may select the pods", nlbService(ipTargets), []networkingv1.NetworkPolicy{
			other("monitoring", metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}})}, "monitoring"},
		{"a policy of other pods", nlbService(ipTargets), []networkingv1.NetworkPolicy{
			other("web", metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}})}, ""},
		{"pods excluded by expression", nlbService(ipTargets), []networkingv1.NetworkPolicy{
			other("deny-but-collectors", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"sfacctd"}}}})}, ""},
		{"egress only", nlbService(ipTargets), []networkingv1.NetworkPolicy{
			other("egress", metav1.LabelSelector{}, networkingv1.PolicyTypeEgress)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := DesiredNetworkPolicy(Input{Service: tc.svc, HealthCheckCIDRs: []string{"10.0.0.0/24"}}, tc.others)
			switch {
			case tc.want == "" && (out.Policy == nil || out.Refused != ""):
				t.Fatalf("refused (%q), want a policy", out.Refused)
			case tc.want != "" && (out.Policy != nil || !strings.Contains(out.Refused, tc.want)):
				t.Fatalf("policy %v, refused %q; want refused, naming %q", out.Policy != nil, out.Refused, tc.want)
			}
		})
	}
}

func TestBackendOf(t *testing.T) {
	both := Options{Backend: BackendCalico, Backends: []Backend{BackendCalico, BackendNetworkPolicy}}
	only := Options{Backend: BackendNetworkPolicy}
	with := func(v string) *corev1.Service {
		return nlbService(func(s *corev1.Service) { s.Annotations[annotations.PolicyBackend] = v })
	}
	for _, tc := range []struct {
		svc     *corev1.Service
		opts    Options
		want    Backend
		problem string
	}{
		{nlbService(), Options{}, BackendCalico, ""},
		{nlbService(), only, BackendNetworkPolicy, ""},
		{with("networkpolicy"), both, BackendNetworkPolicy, ""},
		{with("calico"), only, "", "not among the backends"},
		{with("cilium"), both, "", "unknown policy backend"},
	} {
		got, problem := BackendOf(tc.svc, tc.opts)
		if got != tc.want || (tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
			t.Errorf("%v with %+v: %q, %q; want %q, %q", tc.svc.Annotations[annotations.PolicyBackend], tc.opts, got, problem, tc.want, tc.problem)
		}
	}
}

// TestNetworkPolicyProperty: for random Services (ports, protocols, target
// ports, IPv4 and IPv6 sources, target types) beside random policies of
// their namespace, and random packets: the policy is written only where no
// other policy could select the pods; written, it never admits what the
// namespace admitted without it not, admits on a filtered port exactly the
// sources (and with ip targets the health checks over TCP), and cuts no TCP,
// UDP or SCTP port it was not asked to filter.
func TestNetworkPolicyProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	addrs := []netip.Addr{}
	for i := 0; i < 8; i++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{192, 0, 2, byte(i * 32)}), netip.AddrFrom4([4]byte{10, 0, byte(i), 1}),
			netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i)))
	}
	written, refused, checked := 0, 0, 0
	for i := 0; i < 2000; i++ {
		svc := nlbService(func(s *corev1.Service) {
			s.Spec.Ports = nil
			for j := rng.IntN(3) + 1; j > 0; j-- {
				p := int32(rng.IntN(5) + 6340)
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint(j), Protocol: protos[rng.IntN(2)], Port: p,
					TargetPort: intstr.FromInt32(int32(rng.IntN(3)) * p)}) // 0: the port itself
			}
			s.Spec.LoadBalancerSourceRanges = nil
			for j := rng.IntN(4); j > 0; j-- {
				a := addrs[rng.IntN(len(addrs))]
				s.Spec.LoadBalancerSourceRanges = append(s.Spec.LoadBalancerSourceRanges, netip.PrefixFrom(a, a.BitLen()-rng.IntN(9)).Masked().String())
			}
			if rng.IntN(2) == 0 {
				ipTargets(s)
			}
		})
		var others []networkingv1.NetworkPolicy
		for j := rng.IntN(3); j > 0; j-- {
			sel := metav1.LabelSelector{MatchLabels: map[string]string{}}
			if rng.IntN(2) == 0 {
				sel.MatchLabels["app"] = []string{"sfacctd", "web"}[rng.IntN(2)]
			}
			ns := []string{"telemetry", "other"}[rng.IntN(2)]
			others = append(others, networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("p", j)},
				Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}})
		}
		in := Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/16", "fd00::/8"}, DefaultSources: []string{"0.0.0.0/0", "::/0"}}
		out := DesiredNetworkPolicy(in, others)
		could := slices.ContainsFunc(others, func(np networkingv1.NetworkPolicy) bool {
			return np.Namespace == svc.Namespace && netpolicy.CouldSelect(np.Spec.PodSelector, svc.Spec.Selector)
		})
		if out.Policy == nil {
			if !could || out.Refused == "" {
				t.Fatalf("no policy for %v beside %v: refused %q, waiting %q", svc.Spec, others, out.Refused, out.Waiting)
			}
			refused++
			continue
		}
		if could {
			t.Fatalf("a policy written beside one that could select the pods: %v", others)
		}
		written++
		sources, health, _ := admitted(in, true)
		filtered := map[corev1.Protocol][]uint16{}
		for _, sp := range svc.Spec.Ports {
			n := uint16(sp.TargetPort.IntVal)
			if n == 0 {
				n = uint16(sp.Port)
			}
			filtered[sp.Protocol] = append(filtered[sp.Protocol], n)
		}
		ip := lbc.TargetType(svc) == lbc.TargetIP
		pod := netpolicy.Pod{Namespace: svc.Namespace, Labels: maps.Clone(svc.Spec.Selector)}
		if rng.IntN(2) == 0 {
			pod.Labels["team"] = "x"
		}
		all := append(slices.Clone(others), *out.Policy)
		for k := 0; k < 100; k++ {
			p := netpolicy.Packet{Src: addrs[rng.IntN(len(addrs))], Protocol: protos[rng.IntN(3)], Port: uint16(rng.IntN(8) + 6338)}
			before, after := netpolicy.Evaluate(others, pod, p), netpolicy.Evaluate(all, pod, p)
			checked++
			if after.Allowed && !before.Allowed {
				t.Fatalf("%v: admitted with the policy (%s), not without (%s)", p, after, before)
			}
			onHealth := ip && p.Protocol == corev1.ProtocolTCP && slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
				return slices.Contains(filtered[sp.Protocol], p.Port)
			})
			switch {
			case slices.Contains(filtered[p.Protocol], p.Port) || onHealth:
				want := (slices.Contains(filtered[p.Protocol], p.Port) && sources.Contains(p.Src)) || (onHealth && health.Contains(p.Src))
				if after.Allowed != want {
					t.Fatalf("%v to a filtered port (sources %s, health %v): %s, want allowed=%v", p, sources.Strings(), onHealth, after, want)
				}
			case after.Allowed != before.Allowed:
				t.Fatalf("%v to a port not filtered: %s with the policy, %s without", p, after, before)
			}
		}
	}
	t.Logf("%d Services: %d policies written, %d refused; %d packets checked", written+refused, written, refused, checked)
	if written == 0 || refused == 0 {
		t.Fatal("the random cases never wrote or never refused: the test says nothing")
	}
}

// TestNetworkPolicySiblings: two Services over the same pods (an NLB
// brought up beside another, or one per protocol), each with its own
// sources on its own port. The second's policy is held (written, not
// acknowledged) while the first's still opens its port to anyone; once the
// first is recomputed beside it, neither holds, and the two policies
// together admit on each port exactly that Service's sources, leave every
// other port open, and never admit what one of them alone would not filter.
// flowCase is a packet to the collector pod and whether policies admit it.
type flowCase struct {
	src   string
	proto corev1.Protocol
	port  uint16
	want  bool
}

// judgeFlows checks what policies admit to a pod labelled app=sfacctd in
// namespace telemetry, by the model (internal/netpolicy).
func judgeFlows(t *testing.T, ps []networkingv1.NetworkPolicy, cases []flowCase) {
	t.Helper()
	pod := netpolicy.Pod{Namespace: "telemetry", Labels: map[string]string{"app": "sfacctd"}}
	for _, c := range cases {
		p := netpolicy.Packet{Src: netip.MustParseAddr(c.src), Protocol: c.proto, Port: c.port}
		if v := netpolicy.Evaluate(ps, pod, p); v.Allowed != c.want {
			t.Errorf("%v: %s, want allowed=%v", p, v, c.want)
		}
	}
}

// TestNetworkPolicyNamedTargetPorts: a named target port is filtered on the
// numbers it resolves to on the pods (from the Service's EndpointSlices, as
// Input.TargetPortNumbers), every one of them (pods of two templates during
// a rollout), and those numbers are left out of the open rule; until it
// resolves to none, nothing is written and the Service waits.
func TestNetworkPolicyNamedTargetPorts(t *testing.T) {
	svc := nlbService(ipTargets, func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "sflow", Protocol: "UDP", Port: 6343, TargetPort: intstr.FromString("sflow")},
			{Name: "ipfix", Protocol: "UDP", Port: 4739, TargetPort: intstr.FromInt32(4740)}}
	})
	in := func(numbers map[string][]uint16) Input {
		return Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/24"},
			TargetPortNumbers: map[string]map[string][]uint16{svc.Name: numbers}}
	}
	for _, numbers := range []map[string][]uint16{nil, {}, {"ipfix": {4740}}, {"sflow": nil}} {
		out := DesiredNetworkPolicy(in(numbers), nil)
		if out.Policy != nil || out.Refused != "" || !strings.Contains(out.Waiting, `"sflow"`) {
			t.Errorf("resolved %v: policy %v, refused %q, waiting %q; want waiting for the name", numbers, out.Policy != nil, out.Refused, out.Waiting)
		}
	}
	out := DesiredNetworkPolicy(in(map[string][]uint16{"sflow": {16343, 26343}}), nil)
	if out.Policy == nil || out.Refused != "" || out.Waiting != "" {
		t.Fatalf("no policy: refused %q, waiting %q", out.Refused, out.Waiting)
	}
	judgeFlows(t, []networkingv1.NetworkPolicy{*out.Policy}, []flowCase{
		{"192.0.2.7", "UDP", 16343, true}, {"192.0.2.7", "UDP", 26343, true}, {"192.0.2.7", "UDP", 4740, true},
		{"203.0.113.1", "UDP", 16343, false}, {"203.0.113.1", "UDP", 26343, false}, {"203.0.113.1", "UDP", 4740, false},
		{"10.0.0.9", "TCP", 16343, true}, {"203.0.113.1", "TCP", 26343, false}, // health checks
		{"203.0.113.1", "UDP", 6343, true}, {"203.0.113.1", "UDP", 16344, true}, // the Service's port is not a target port
	})
	// A sibling with a named target port is genuine on the numbers its
	// own name resolves to, and not trusted before they are known.
	sib := svc.DeepCopy()
	sib.Name, sib.UID, sib.Finalizers = "named", "named-uid", []string{Finalizer}
	sibPolicy := DesiredNetworkPolicy(Input{Service: sib, HealthCheckCIDRs: []string{"10.0.0.0/24"},
		TargetPortNumbers: map[string]map[string][]uint16{sib.Name: {"sflow": {16343}}}}, nil).Policy
	other := nlbService(ipTargets, func(s *corev1.Service) {
		s.Name, s.Spec.Ports = "other", []corev1.ServicePort{{Name: "x", Protocol: "UDP", Port: 9995}}
	})
	for _, tc := range []struct {
		numbers map[string][]uint16
		held    bool
	}{{map[string][]uint16{"sflow": {16343}}, false}, {nil, true}, {map[string][]uint16{"sflow": {26343}}, true}} {
		out := DesiredNetworkPolicy(Input{Service: other, HealthCheckCIDRs: []string{"10.0.0.0/24"}, Services: map[string]*corev1.Service{sib.Name: sib},
			TargetPortNumbers: map[string]map[string][]uint16{sib.Name: tc.numbers}}, []networkingv1.NetworkPolicy{*sibPolicy})
		if held := strings.Contains(out.Hold, "not trusted"); held != tc.held {
			t.Errorf("the sibling's name resolving to %v: held %v (%q), want %v", tc.numbers, held, out.Hold, tc.held)
		}
	}
}

func TestNetworkPolicySiblings(t *testing.T) {
	mk := func(name string, port int32, sources ...string) *corev1.Service {
		return nlbService(ipTargets, func(s *corev1.Service) {
			s.Name, s.UID = name, types.UID(name+"-uid")
			s.Finalizers = []string{Finalizer}
			s.Spec.LoadBalancerSourceRanges = sources
			s.Spec.Ports = []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolUDP, Port: port}}
		})
	}
	a, b := mk("sflow", 6343, "192.0.2.0/24"), mk("ipfix", 4739, "198.51.100.0/24", "2001:db8::/32")
	services := map[string]*corev1.Service{a.Name: a, b.Name: b}
	desired := func(svc *corev1.Service, others ...*networkingv1.NetworkPolicy) NetworkPolicyOutput {
		var os []networkingv1.NetworkPolicy
		for _, o := range others {
			os = append(os, *o)
		}
		return DesiredNetworkPolicy(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/24"}, Services: services}, os)
	}
	first := desired(a)
	second := desired(b, first.Policy)
	if second.Policy == nil || second.Hold == "" || !strings.Contains(second.Hold, " 4739 ") {
		t.Fatalf("the second Service beside the first, which opens its port: policy %v, hold %q", second.Policy != nil, second.Hold)
	}
	firstAgain := desired(a, second.Policy)
	secondAgain := desired(b, firstAgain.Policy)
	if firstAgain.Hold != "" || secondAgain.Hold != "" {
		t.Fatalf("still held once both are recomputed: %q, %q", firstAgain.Hold, secondAgain.Hold)
	}
	if !equality.Semantic.DeepEqual(secondAgain.Policy.Spec, second.Policy.Spec) {
		t.Error("the second Service's policy changed when the first narrowed: it would not converge in one step")
	}
	judgeFlows(t, []networkingv1.NetworkPolicy{*firstAgain.Policy, *secondAgain.Policy}, []flowCase{
		{"192.0.2.7", "UDP", 6343, true}, {"198.51.100.7", "UDP", 6343, false}, {"2001:db8::7", "UDP", 6343, false},
		{"198.51.100.7", "UDP", 4739, true}, {"2001:db8::7", "UDP", 4739, true}, {"192.0.2.7", "UDP", 4739, false},
		{"10.0.0.9", "TCP", 6343, true}, {"10.0.0.9", "TCP", 4739, true}, {"203.0.113.1", "TCP", 4739, false},
		{"203.0.113.1", "UDP", 9995, true}, {"203.0.113.1", "TCP", 9100, true},
	})
	pod := netpolicy.Pod{Namespace: "telemetry", Labels: map[string]string{"app": "sfacctd"}}
	// Either Service gone: the other's policy, recomputed alone, opens the
	// port again (it was open before that Service).
	alone := desired(a)
	if v := netpolicy.Evaluate([]networkingv1.NetworkPolicy{*alone.Policy}, pod, netpolicy.Packet{Src: netip.MustParseAddr("203.0.113.1"),
		Protocol: "UDP", Port: 4739}); !v.Allowed {
		t.Errorf("the first Service alone again still closes the second's port: %s", v)
	}
}

// TestNetworkPolicyForgedSibling: a policy labelled, named and owned as the
// controller's for another Service, but admitting what that Service does
// not ask for (everyone on this Service's port), or for a Service the
// controller does not manage, holds this Service unacknowledged: the union
// with it would admit more than this Service's sources.
func TestNetworkPolicyForgedSibling(t *testing.T) {
	owner := nlbService(ipTargets, func(s *corev1.Service) {
		s.Name, s.UID, s.Finalizers = "ipfix", "ipfix-uid", []string{Finalizer}
		s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"}
		s.Spec.Ports = []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolUDP, Port: 4739}}
	})
	svc := nlbService(ipTargets)
	in := func(services map[string]*corev1.Service) Input {
		return Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/24"}, Services: services}
	}
	genuinePolicy := DesiredNetworkPolicy(Input{Service: owner, HealthCheckCIDRs: []string{"10.0.0.0/24"}}, nil).Policy
	everyone := genuinePolicy.DeepCopy()
	everyone.Spec.Ingress[0].From = append(everyone.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}})
	onOurPort := genuinePolicy.DeepCopy()
	onOurPort.Spec.Ingress[0].Ports = append(onOurPort.Spec.Ingress[0].Ports, exactPorts(corev1.ProtocolUDP, []uint16{6343})...)
	unmanaged := owner.DeepCopy()
	unmanaged.Finalizers = nil
	for _, tc := range []struct {
		name     string
		policy   *networkingv1.NetworkPolicy
		services map[string]*corev1.Service
		held     bool
	}{
		{"what the controller writes for it", genuinePolicy, map[string]*corev1.Service{"ipfix": owner}, false},
		{"a source its Service does not list", everyone, map[string]*corev1.Service{"ipfix": owner}, true},
		{"a port its Service does not have", onOurPort, map[string]*corev1.Service{"ipfix": owner}, true},
		{"its Service not managed", genuinePolicy, map[string]*corev1.Service{"ipfix": unmanaged}, true},
		{"its Service gone", genuinePolicy, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := DesiredNetworkPolicy(in(tc.services), []networkingv1.NetworkPolicy{*tc.policy})
			if out.Policy == nil || out.Refused != "" {
				t.Fatalf("no policy (refused %q)", out.Refused)
			}
			if held := strings.Contains(out.Hold, "not trusted"); held != tc.held {
				t.Errorf("held %v (%q), want %v", held, out.Hold, tc.held)
			}
		})
	}
}
