package calicopolicy

import (
	"net/netip"
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
		{"listed source", host, Packet{netip.MustParseAddr("192.0.2.9"), "UDP", 30000}, Allowed, "allow rule 0"},
		{"source in network set", host, Packet{netip.MustParseAddr("203.0.113.1"), "UDP", 30000}, Allowed, "allow rule 1"},
		{"other source denied later", host, Packet{netip.MustParseAddr("198.51.100.1"), "UDP", 30000}, Denied, "deny rule 0"},
		{"other port untouched", host, Packet{netip.MustParseAddr("198.51.100.1"), "UDP", 30001}, NoDecision, ""},
		{"other protocol untouched", host, Packet{netip.MustParseAddr("198.51.100.1"), "TCP", 30000}, NoDecision, ""},
		{"not a host endpoint", Endpoint{Labels: map[string]string{"host": "n1"}}, Packet{netip.MustParseAddr("198.51.100.1"), "UDP", 30000}, NoDecision, ""},
	}
	// Order, not list position, decides.
	policies := []*calicov3.GlobalNetworkPolicy{deny, allow}
	for _, tc := range cases {
		got, err := Evaluate(policies, sets, tc.ep, tc.pkt, true)
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != tc.want || got.By != tc.by {
			t.Errorf("%s: got %v by %q, want %v by %q", tc.name, got.Verdict, got.By, tc.want, tc.by)
		}
	}
	// Normal stage: a selected pod with no matching rule is denied at the end of the tier.
	podPolicy := gnp("pods", 100, false, "app == 'a'", calicov3.Rule{Action: calicov3.Allow, Protocol: proto("UDP"), Destination: udp30000})
	pod := Endpoint{Labels: map[string]string{"app": "a"}}
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{podPolicy}, nil, pod, Packet{netip.MustParseAddr("192.0.2.1"), "TCP", 80}, false); r.Verdict != Denied || r.By != "end of tier" {
		t.Errorf("end of tier: %+v", r)
	}
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{podPolicy}, nil, Endpoint{Labels: map[string]string{"app": "b"}}, Packet{netip.MustParseAddr("192.0.2.1"), "TCP", 80}, false); r.Verdict != Allowed {
		t.Errorf("unselected pod: %+v", r)
	}
	// IPv6 packets do not match IPv4 rules.
	v4 := 4
	only4 := gnp("v4", 1, true, "", calicov3.Rule{Action: calicov3.Deny, IPVersion: &v4})
	if r, _ := Evaluate([]*calicov3.GlobalNetworkPolicy{only4}, nil, host, Packet{netip.MustParseAddr("2001:db8::1"), "UDP", 1}, true); r.Verdict != NoDecision {
		t.Errorf("ip version: %+v", r)
	}
}
