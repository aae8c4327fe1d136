package calicopolicy

import (
	"net/netip"
	"slices"
	"testing"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelectors(t *testing.T) {
	labels := map[string]string{"app": "sfacctd", "projectcalico.org/namespace": "telemetry", "kubernetes.io/hostname": "n1", "tier": "edge-eu"}
	cases := map[string]bool{
		"":                             true,
		"all()":                        true,
		"has(kubernetes.io/hostname)":  true,
		"!has(kubernetes.io/hostname)": false,
		"app == 'sfacctd'":             true,
		`app == "sfacctd"`:             true,
		"app != 'sfacctd'":             false,
		"missing != 'x'":               true,
		"projectcalico.org/namespace == 'telemetry' && app == 'sfacctd'": true,
		"app == 'x' || tier starts with 'edge'":                          true,
		"app in {'a', 'sfacctd'}":                                        true,
		"app not in {'sfacctd'}":                                         false,
		"tier contains 'ge-e' && tier ends with 'eu'":                    true,
		"!(app == 'sfacctd')":                                            false,
		"(app == 'x' || app == 'sfacctd') && !has(other)":                true,
	}
	for sel, want := range cases {
		s, err := ParseSelector(sel)
		if err != nil {
			t.Errorf("%q: %v", sel, err)
			continue
		}
		if got := s.Matches(labels); got != want {
			t.Errorf("%q matches = %v, want %v", sel, got, want)
		}
	}
	for _, bad := range []string{"app ==", "app = 'x'", "has(app", "(app == 'x'", "app == 'x' &&", "app in {'a'", "app == 'x' junk", "'x' == app"} {
		if err := ValidateSelector(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
}

func gnp(name string, order float64, preDNAT bool, sel string, rules ...calicov3.Rule) *calicov3.GlobalNetworkPolicy {
	return &calicov3.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: calicov3.GlobalNetworkPolicySpec{
		Order: &order, PreDNAT: preDNAT, ApplyOnForward: preDNAT, Selector: sel, Ingress: rules,
		Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress}}}
}

func proto(s string) *numorstring.Protocol { p := numorstring.ProtocolFromString(s); return &p }

func TestEvaluate(t *testing.T) {
	udp30000 := calicov3.EntityRule{Ports: []numorstring.Port{numorstring.SinglePort(30000)}}
	allow := gnp("allow", 100, true, "has(host)", calicov3.Rule{Action: calicov3.Allow, Protocol: proto("UDP"),
		Source: calicov3.EntityRule{Nets: []string{"192.0.2.0/24"}}, Destination: udp30000},
		calicov3.Rule{Action: calicov3.Allow, Protocol: proto("UDP"),
			Source: calicov3.EntityRule{Selector: "set == 'x'"}, Destination: udp30000})
	deny := gnp("deny", 101, true, "has(host)", calicov3.Rule{Action: calicov3.Deny, Protocol: proto("UDP"), Destination: udp30000})
	sets := []*calicov3.GlobalNetworkSet{{ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{"set": "x"}},
		Spec: calicov3.GlobalNetworkSetSpec{Nets: []string{"203.0.113.0/24"}}}}
	host := Endpoint{Host: true, Labels: map[string]string{"host": "n1"}}
	cases := []struct {
		name string
		ep   Endpoint
		pkt  Packet
		want Verdict
		by   string
	}{
		{"listed source", host, Packet{Src: netip.MustParseAddr("192.0.2.9"), Protocol: "UDP", DstPort: 30000}, Allowed, "allow rule 0"},
		{"source in network set", host, Packet{Src: netip.MustParseAddr("203.0.113.1"), Protocol: "UDP", DstPort: 30000}, Allowed, "allow rule 1"},
		{"other source denied later", host, Packet{Src: netip.MustParseAddr("198.51.100.1"), Protocol: "UDP", DstPort: 30000}, Denied, "deny rule 0"},
		{"other port untouched", host, Packet{Src: netip.MustParseAddr("198.51.100.1"), Protocol: "UDP", DstPort: 30001}, NoDecision, ""},
		{"other protocol untouched", host, Packet{Src: netip.MustParseAddr("198.51.100.1"), Protocol: "TCP", DstPort: 30000}, NoDecision, ""},
		{"not a host endpoint", Endpoint{Labels: map[string]string{"host": "n1"}}, Packet{Src: netip.MustParseAddr("198.51.100.1"), Protocol: "UDP", DstPort: 30000}, NoDecision, ""},
	}
	// Order, not list position, decides.
	policies := []*calicov3.GlobalNetworkPolicy{deny, allow}
	for _, tc := range cases {
		got, err := Evaluate(policies, sets, tc.ep, tc.pkt, true)
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != tc.want || got.By != tc.by || got.PassedOn() != (tc.by == "nlb-allow rule 0") {
			t.Errorf("%s: got %v by %q (passed on %v), want %v by %q", tc.name, got.Verdict, got.By, got.PassedOn(), tc.want, tc.by)
		}
	}
	// Normal stage: a selected pod with no matching rule is denied at the end of the tier.
	podPolicy := gnp("pods", 100, false, "app == 'a'", calicov3.Rule{Action: calicov3.Allow, Protocol: proto("UDP"), Destination: udp30000})
	pod := Endpoint{Labels: map[string]string{"app": "a"}}
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{podPolicy}, nil, pod, Packet{Src: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", DstPort: 80}, false); r.Verdict != Denied || r.By != "end of tier default" {
		t.Errorf("end of tier: %+v", r)
	}
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{podPolicy}, nil, Endpoint{Labels: map[string]string{"app": "b"}}, Packet{Src: netip.MustParseAddr("192.0.2.1"), Protocol: "TCP", DstPort: 80}, false); r.Verdict != Allowed {
		t.Errorf("unselected pod: %+v", r)
	}
	// IPv6 packets do not match IPv4 rules.
	v4 := 4
	only4 := gnp("v4", 1, true, "", calicov3.Rule{Action: calicov3.Deny, IPVersion: &v4})
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{only4}, nil, host, Packet{Src: netip.MustParseAddr("2001:db8::1"), Protocol: "UDP", DstPort: 1}, true); r.Verdict != NoDecision {
		t.Errorf("ip version: %+v", r)
	}
}

// TestEvaluateTiers: the product's tier passes what it lists on to the
// cluster's own tiers, where an admin's Deny still drops it and an admin's
// Allow still admits what the product did not filter; a Pass in the last
// tier leaves the normal stage to the profile (allowed) and the pre-DNAT
// stage undecided.
func TestEvaluateTiers(t *testing.T) {
	udp := func(p uint16) calicov3.EntityRule {
		return calicov3.EntityRule{Ports: []numorstring.Port{numorstring.SinglePort(p)}}
	}
	inTier := func(p *calicov3.GlobalNetworkPolicy, tier string) *calicov3.GlobalNetworkPolicy {
		p.Spec.Tier = tier
		return p
	}
	node := netip.MustParseAddr("10.0.0.4")
	host := Endpoint{Host: true, Labels: map[string]string{"host": "n1"}, Addrs: []netip.Addr{node}}
	product := []*calicov3.GlobalNetworkPolicy{
		inTier(gnp("nlb-allow", 100, true, "has(host)", calicov3.Rule{Action: calicov3.Pass, Protocol: proto("UDP"),
			Source: calicov3.EntityRule{Nets: []string{"192.0.2.0/24"}}, Destination: udp(30000)}), "telemetry-nlb"),
		inTier(gnp("nlb-deny", 101, true, "has(host)", calicov3.Rule{Action: calicov3.Deny, Protocol: proto("UDP"),
			Destination: calicov3.EntityRule{Selector: "has(host)", Ports: []numorstring.Port{numorstring.SinglePort(30000)}}}), "telemetry-nlb"),
	}
	adminDeny := inTier(gnp("admin-deny", 10, true, "has(host)", calicov3.Rule{Action: calicov3.Deny,
		Source: calicov3.EntityRule{Nets: []string{"192.0.2.66/32"}}}), "default")
	adminAllow := inTier(gnp("admin-allow", 10, true, "has(host)", calicov3.Rule{Action: calicov3.Allow, Protocol: proto("UDP"), Destination: udp(30001)}), "default")
	policies := append(slices.Clone(product), adminDeny, adminAllow)
	pkt := func(src string, port uint16, dst netip.Addr) Packet {
		return Packet{Src: netip.MustParseAddr(src), Protocol: "UDP", DstPort: port, Dst: dst}
	}
	podIP := netip.MustParseAddr("10.0.5.9")
	for _, tc := range []struct {
		name string
		pkt  Packet
		want Verdict
		by   string
	}{
		{"listed source passed on, no admin opinion", pkt("192.0.2.9", 30000, node), NoDecision, "nlb-allow rule 0"},
		{"listed source, admin denies it", pkt("192.0.2.66", 30000, node), Denied, "admin-deny rule 0"},
		{"unlisted source denied by the product", pkt("198.51.100.1", 30000, node), Denied, "nlb-deny rule 0"},
		{"other port: the admin's allow still decides", pkt("198.51.100.1", 30001, node), Allowed, "admin-allow rule 0"},
		{"same port to another address (a pod behind the node): untouched", pkt("198.51.100.1", 30000, podIP), NoDecision, ""},
	} {
		got, err := Evaluate(policies, nil, host, tc.pkt, true)
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != tc.want || got.By != tc.by || got.PassedOn() != (tc.by == "nlb-allow rule 0") {
			t.Errorf("%s: got %v by %q (passed on %v), want %v by %q", tc.name, got.Verdict, got.By, got.PassedOn(), tc.want, tc.by)
		}
	}
	// Normal stage: a Pass in the product's tier goes on to the default tier,
	// whose policies end in Deny; without them, to the profile.
	pod := Endpoint{Labels: map[string]string{"app": "a"}}
	pass := inTier(gnp("nlb-pods", 100, false, "app == 'a'", calicov3.Rule{Action: calicov3.Pass, Protocol: proto("UDP"), Destination: udp(6343)}), "telemetry-nlb")
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{pass}, nil, pod, pkt("192.0.2.1", 6343, podIP), false); r.Verdict != Allowed || !r.PassedOn() {
		t.Errorf("pass with no later tier: %+v", r)
	}
	adminPods := inTier(gnp("admin-pods", 10, false, "app == 'a'", calicov3.Rule{Action: calicov3.Allow, Protocol: proto("TCP")}), "default")
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{pass, adminPods}, nil, pod, pkt("192.0.2.1", 6343, podIP), false); r.Verdict != Denied || r.By != "end of tier default" {
		t.Errorf("pass into a default tier that does not allow it: %+v", r)
	}
	if _, err := Evaluate([]*calicov3.GlobalNetworkPolicy{inTier(gnp("x", 1, false, "", calicov3.Rule{Action: calicov3.Allow}), "nope")}, nil, pod, pkt("192.0.2.1", 1, podIP), false); err == nil {
		t.Error("a policy of an unknown tier was evaluated")
	}
}
