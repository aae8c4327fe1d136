package provider

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

func lbSpec(kind string, sources ...string) lbIngressSpec {
	set, _ := cidrset.Parse(sources)
	return lbIngressSpec{Name: "flows", Namespace: "telemetry", Kind: kind, Selector: map[string]string{"app": "sfacctd"},
		Ports: []ingressPort{{Name: "sflow", Protocol: "UDP", Port: 6343, TargetPort: 6343},
			{Name: "ipfix", Protocol: protocolTCPUDP, Port: 4739, TargetPort: 4740}}, Sources: set}
}

// TestLBIngressService: the Service keeps the client's address, carries the
// sources, has exactly the families the sources name (kube-proxy leaves a
// family without sources open at the address), no NodePorts but on GKE, the
// opt-in with the networkpolicy backend, and each kind's own settings.
func TestLBIngressService(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     lbIngressSpec
		families []corev1.IPFamily
		policy   corev1.IPFamilyPolicy
		noPorts  bool
		ann      map[string]string
		class    string
	}{
		{"metallb, both families", func() lbIngressSpec {
			s := lbSpec(lbKindMetalLB, "192.0.2.0/24", "2001:db8:2::/64")
			s.AddressPool, s.SharedIPKey = "exporters", "pop-1"
			s.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8:2::100")}
			return s
		}(), []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, corev1.IPFamilyPolicyRequireDualStack, true,
			map[string]string{metalLBPool: "exporters", metalLBIPs: "192.0.2.100,2001:db8:2::100", metalLBSharedIP: "pop-1"}, ""},
		{"metallb, IPv6 sources alone", lbSpec(lbKindMetalLB, "2001:db8:2::/64"), []corev1.IPFamily{corev1.IPv6Protocol},
			corev1.IPFamilyPolicySingleStack, true, nil, ""},
		{"gke internal", func() lbIngressSpec { s := lbSpec(lbKindGKE, "10.20.0.0/16"); s.Internal = true; return s }(),
			[]corev1.IPFamily{corev1.IPv4Protocol}, corev1.IPFamilyPolicySingleStack, false, map[string]string{gkeLBType: gkeInternal}, ""},
		{"generic with a class", func() lbIngressSpec {
			s := lbSpec(lbKindGeneric, "192.0.2.0/24")
			s.Class = "kube-vip.io/kube-vip-class"
			return s
		}(),
			[]corev1.IPFamily{corev1.IPv4Protocol}, corev1.IPFamilyPolicySingleStack, true, nil, "kube-vip.io/kube-vip-class"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := typedService(tc.spec.service())
			if err != nil {
				t.Fatal(err)
			}
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				t.Errorf("type %s, externalTrafficPolicy %s; want LoadBalancer, Local", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
			}
			if got := strings.Join(svc.Spec.LoadBalancerSourceRanges, ","); got != strings.Join(tc.spec.Sources.Strings(), ",") {
				t.Errorf("loadBalancerSourceRanges %s", got)
			}
			if !equalFamilies(svc.Spec.IPFamilies, tc.families) || svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy != tc.policy {
				t.Errorf("families %v (%v), want %v (%s)", svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy, tc.families, tc.policy)
			}
			noPorts := svc.Spec.AllocateLoadBalancerNodePorts != nil && !*svc.Spec.AllocateLoadBalancerNodePorts
			if noPorts != tc.noPorts {
				t.Errorf("allocateLoadBalancerNodePorts %v, want no NodePorts: %v", svc.Spec.AllocateLoadBalancerNodePorts, tc.noPorts)
			}
			if svc.Annotations[annotations.NLBPolicy] != annotations.Enabled ||
				svc.Annotations[annotations.PolicyBackend] != annotations.PolicyBackendNetworkPolicy {
				t.Errorf("annotations %v: not opted in with the networkpolicy backend", svc.Annotations)
			}
			for k, v := range tc.ann {
				if svc.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, svc.Annotations[k], v)
				}
			}
			if got := lbManagedOf(svc.Annotations); len(got) != 2+len(tc.ann) {
				t.Errorf("the resource's own annotations %v, want the opt-in, the backend and %v", got, tc.ann)
			}
			class := ""
			if svc.Spec.LoadBalancerClass != nil {
				class = *svc.Spec.LoadBalancerClass
			}
			if class != tc.class {
				t.Errorf("loadBalancerClass %q, want %q", class, tc.class)
			}
			if len(svc.Spec.Ports) != 3 {
				t.Errorf("ports %v, want sflow and the two halves of ipfix", svc.Spec.Ports)
			}
			if kind := lbKindOf(svc); kind != tc.spec.Kind && !(tc.spec.Kind == lbKindMetalLB && len(tc.ann) == 0) {
				t.Errorf("the kind read back on import: %s, want %s", kind, tc.spec.Kind)
			}
		})
	}
}

func equalFamilies(a, b []corev1.IPFamily) bool {
	return strings.Join(familyStrings(a), ",") == strings.Join(familyStrings(b), ",")
}

func familyStrings(fs []corev1.IPFamily) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f))
	}
	return out
}

// TestLBIngressProblems: what a kind cannot do is refused at plan time, with
// its fix; an address of a family the sources do not name is refused (the
// Service would have no such family).
func TestLBIngressProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec lbIngressSpec
		want string // "" for none
	}{
		{"metallb as it should be", lbSpec(lbKindMetalLB, "192.0.2.0/24"), ""},
		{"a pool on GKE", func() lbIngressSpec { s := lbSpec(lbKindGKE, "192.0.2.0/24"); s.AddressPool = "x"; return s }(), `address_pool is for kind "metallb"`},
		{"internal on MetalLB", func() lbIngressSpec { s := lbSpec(lbKindMetalLB, "192.0.2.0/24"); s.Internal = true; return s }(), `internal is for kind "gke"`},
		{"a class on MetalLB", func() lbIngressSpec { s := lbSpec(lbKindMetalLB, "192.0.2.0/24"); s.Class = "x"; return s }(), `load_balancer_class is for kind "generic"`},
		{"an IPv6 address without IPv6 sources", func() lbIngressSpec {
			s := lbSpec(lbKindMetalLB, "192.0.2.0/24")
			s.Addresses = []netip.Addr{netip.MustParseAddr("2001:db8:2::100")}
			return s
		}(), "allowed_sources name no IPv6 net"},
		{"two IPv4 addresses", func() lbIngressSpec {
			s := lbSpec(lbKindMetalLB, "192.0.2.0/24")
			s.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101")}
			return s
		}(), "more than one IPv4 address"},
		{"a port twice", func() lbIngressSpec {
			s := lbSpec(lbKindMetalLB, "192.0.2.0/24")
			s.Ports = append(s.Ports, ingressPort{Name: "sflow2", Protocol: "UDP", Port: 6343, TargetPort: 6343})
			return s
		}(), "both claim UDP 6343"},
	} {
		problems := strings.Join(tc.spec.problems(), "; ")
		if (tc.want == "") != (problems == "") || !strings.Contains(problems, tc.want) {
			t.Errorf("%s: problems %q, want %q", tc.name, problems, tc.want)
		}
	}
}

// TestLBIngressReadBackKeepsInternalFalse: a GKE ingress configured with
// internal = false reads back false, not null (null would differ from the
// configuration after every apply); true reads back from the annotation,
// and unset stays unset.
func TestLBIngressReadBackKeepsInternalFalse(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		configured types.Bool
		internal   bool
		want       types.Bool
	}{
		{types.BoolValue(false), false, types.BoolValue(false)},
		{types.BoolValue(true), true, types.BoolValue(true)},
		{types.BoolNull(), false, types.BoolNull()},
	} {
		s := lbSpec(lbKindGKE, "10.20.0.0/16")
		s.Internal = tc.internal
		svc, err := typedService(s.service())
		if err != nil {
			t.Fatal(err)
		}
		m := lbIngressModel{Kind: types.StringValue(lbKindGKE), Internal: tc.configured,
			Ports: types.ListNull(types.ObjectType{AttrTypes: ingressPortAttrTypes}), AllowedSources: types.SetNull(types.StringType)}
		if d := m.setFromService(ctx, svc); d.HasError() {
			t.Fatal(d)
		}
		if !m.Internal.Equal(tc.want) {
			t.Errorf("configured %v: internal read back %v, want %v", tc.configured, m.Internal, tc.want)
		}
	}
}

// TestLBIngressHeld: held, a MetalLB ingress asks for no address (the held
// pool, which no pool can be, no addresses, no shared-IP key) and keeps what
// the controller enforces (sources, ports, selector, the opt-in); the kinds
// without a hold are written as they are.
func TestLBIngressHeld(t *testing.T) {
	s := lbSpec(lbKindMetalLB, "192.0.2.0/24")
	s.AddressPool, s.Addresses, s.SharedIPKey = "exporters", []netip.Addr{netip.MustParseAddr("192.0.2.100")}, "pop"
	h, ok := s.held()
	if !ok {
		t.Fatal("a MetalLB ingress is not held")
	}
	ann := h.annotations()
	if ann[metalLBPool] != metalLBHeldPool || ann[metalLBIPs] != "" || ann[metalLBSharedIP] != "" {
		t.Errorf("held annotations %v: want the held pool alone", ann)
	}
	if !strings.Contains(metalLBHeldPool, "/") {
		t.Errorf("the held pool %q could be a pool's name", metalLBHeldPool)
	}
	svc, held := *s.service(), *h.service()
	if !equalJSON(t, svc.Spec, held.Spec) || ann[annotations.NLBPolicy] != annotations.Enabled {
		t.Errorf("held, the Service's spec or opt-in changed:\n%+v\n%+v", svc.Spec, held.Spec)
	}
	live := &corev1.Service{}
	live.Annotations = ann
	if !stillHeld(live) {
		t.Error("a Service in the held pool does not read as held")
	}
	for _, kind := range []string{lbKindGKE, lbKindGeneric} {
		if _, ok := lbSpec(kind, "192.0.2.0/24").held(); ok {
			t.Errorf("kind %s held: only MetalLB's has a hold", kind)
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
