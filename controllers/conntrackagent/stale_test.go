package conntrackagent

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func udpService(name string, clusterIPs []string, lbIP string, port, nodePort int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: name},
		Spec: corev1.ServiceSpec{ClusterIPs: clusterIPs, ClusterIP: clusterIPs[0], Ports: []corev1.ServicePort{
			{Name: "flows", Protocol: corev1.ProtocolUDP, Port: port, NodePort: nodePort},
			{Name: "admin", Protocol: corev1.ProtocolTCP, Port: 8080},
		}},
	}
	if lbIP != "" {
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}}
	}
	return svc
}

func slice(service string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: service + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(port)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestStale(t *testing.T) {
	v4 := udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 30001)
	v6 := udpService("flows6", []string{"fd00::a"}, "2001:db8::10", 6343, 30002)
	terminating := slice("flows", 16343, "198.51.100.7")
	terminating.Endpoints = append(terminating.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.51.100.8"},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
		discoveryv1.Endpoint{Addresses: []string{"198.51.100.9"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}})
	empty := udpService("empty", []string{"10.96.0.20"}, "", 514, 0)
	// A load balancer that proxies (ipMode Proxy): kube-proxy does not NAT its
	// address on nodes, traffic to it must leave for the load balancer.
	proxied := udpService("proxied", []string{"10.96.0.40"}, "203.0.113.40", 2055, 0)
	proxied.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeProxy)
	table := NewTable(
		[]*corev1.Service{v4, v6, empty, proxied},
		[]*discoveryv1.EndpointSlice{terminating, slice("flows6", 16343, "2001:db8:1::7"), slice("proxied", 12055, "198.51.100.7")},
		[]Tombstone{{Service: types.NamespacedName{Namespace: "telemetry", Name: "gone"}, Addrs: []netip.AddrPort{ap("10.96.0.30:4739")},
			Expires: time.Now().Add(time.Minute)},
			{Service: types.NamespacedName{Namespace: "telemetry", Name: "long-gone"}, Addrs: []netip.AddrPort{ap("10.96.0.31:4739")},
				Expires: time.Now().Add(-time.Minute)}},
		[]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:ffff::1")},
	)
	client := ap("192.0.2.50:40000")
	cases := []struct {
		name  string
		flow  Flow
		stale bool
		svc   string
	}{
		{"never NATed to the LB IP (the bug)", Flow{17, client, ap("203.0.113.10:6343"), ap("203.0.113.10:6343")}, true, "flows"},
		{"never NATed to the ClusterIP", Flow{17, client, ap("10.96.0.10:6343"), ap("10.96.0.10:6343")}, true, "flows"},
		{"NATed to a serving endpoint: one-way, UNREPLIED, correct", Flow{17, client, ap("203.0.113.10:6343"), ap("198.51.100.7:16343")}, false, "flows"},
		{"NATed to a terminating but serving endpoint", Flow{17, client, ap("203.0.113.10:6343"), ap("198.51.100.8:16343")}, false, "flows"},
		{"NATed to an endpoint that is not serving", Flow{17, client, ap("203.0.113.10:6343"), ap("198.51.100.9:16343")}, true, "flows"},
		{"NATed to a dead endpoint", Flow{17, client, ap("203.0.113.10:6343"), ap("198.51.100.99:16343")}, true, "flows"},
		{"right address, wrong port", Flow{17, client, ap("203.0.113.10:6343"), ap("198.51.100.7:6343")}, true, "flows"},
		{"NodePort on a local address, never NATed", Flow{17, client, ap("192.0.2.1:30001"), ap("192.0.2.1:30001")}, true, "flows"},
		{"NodePort on a local address, NATed correctly", Flow{17, client, ap("192.0.2.1:30001"), ap("198.51.100.7:16343")}, false, "flows"},
		{"NodePort number on a foreign address", Flow{17, client, ap("192.0.2.99:30001"), ap("192.0.2.99:30001")}, false, ""},
		{"TCP to the same address and port", Flow{6, client, ap("203.0.113.10:6343"), ap("203.0.113.10:6343")}, false, ""},
		{"another port of the Service (TCP)", Flow{17, client, ap("10.96.0.10:8080"), ap("10.96.0.10:8080")}, false, ""},
		{"not a Service", Flow{17, client, ap("198.18.0.1:53"), ap("198.18.0.1:53")}, false, ""},
		{"IPv6 LB never NATed", Flow{17, ap("[2001:db8:2::5]:40000"), ap("[2001:db8::10]:6343"), ap("[2001:db8::10]:6343")}, true, "flows6"},
		{"IPv6 NATed correctly", Flow{17, ap("[2001:db8:2::5]:40000"), ap("[2001:db8::10]:6343"), ap("[2001:db8:1::7]:16343")}, false, "flows6"},
		{"IPv6 NodePort on a local address", Flow{17, ap("[2001:db8:2::5]:40000"), ap("[2001:db8:ffff::1]:30002"), ap("[2001:db8:ffff::1]:30002")}, true, "flows6"},
		{"IPv4-mapped addresses compare as IPv4", Flow{17, client, ap("[::ffff:203.0.113.10]:6343"), ap("[::ffff:203.0.113.10]:6343")}, true, "flows"},
		{"no endpoint at all: left alone until one comes back", Flow{17, client, ap("10.96.0.20:514"), ap("10.96.0.20:514")}, false, "empty"},
		{"deleted Service: every entry", Flow{17, client, ap("10.96.0.30:4739"), ap("198.51.100.7:4739")}, true, "gone"},
		{"ipMode Proxy LB IP: never NATed on purpose", Flow{17, client, ap("203.0.113.40:2055"), ap("203.0.113.40:2055")}, false, ""},
		{"ipMode Proxy Service's ClusterIP still counts", Flow{17, client, ap("10.96.0.40:2055"), ap("10.96.0.40:2055")}, true, "proxied"},
		{"expired tombstone", Flow{17, client, ap("10.96.0.31:4739"), ap("198.51.100.7:4739")}, false, ""},
	}
	for _, tc := range cases {
		stale, svc := table.Stale(tc.flow)
		if stale != tc.stale || svc.Name != tc.svc {
			t.Errorf("%s: Stale = %v (%s), want %v (%s)", tc.name, stale, svc.Name, tc.stale, tc.svc)
		}
	}
	if table.Keys() != 9 { // 6 live addresses (not the proxied LB IP), 1 unexpired tombstone, 2 NodePorts
		t.Errorf("keys = %d", table.Keys())
	}
}

// TestStalePerFamily: kube-proxy NATs a Service address only to endpoints of
// its own family, so "no serving endpoint" is judged per family: a dual-stack
// Service with IPv4 endpoints only leaves its IPv6 flows alone (they were
// deleted about once a second for as long as they ran), and so does an IPv6
// load-balancer address on a single-stack IPv4 Service; the IPv4 side is
// judged as before, and an IPv6 endpoint coming makes the IPv6 flows stale.
func TestStalePerFamily(t *testing.T) {
	dual := udpService("dual", []string{"10.96.0.50", "fd00::50"}, "203.0.113.50", 6343, 30050)
	dual.Status.LoadBalancer.Ingress = append(dual.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "2001:db8::50"})
	v4only := udpService("v4only", []string{"10.96.0.60"}, "203.0.113.60", 6343, 0)
	v4only.Status.LoadBalancer.Ingress = append(v4only.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "2001:db8::60"})
	local := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:ffff::1")}
	unNATed := func(src, dst string) Flow {
		return Flow{Proto: protoUDP, OrigSrc: ap(src), OrigDst: ap(dst), ReplySrc: ap(dst)}
	}
	table := NewTable([]*corev1.Service{dual, v4only},
		[]*discoveryv1.EndpointSlice{slice("dual", 16343, "198.51.100.7"), slice("v4only", 16343, "198.51.100.8")}, nil, local)
	for _, tc := range []struct {
		name  string
		flow  Flow
		stale bool
	}{
		{"IPv4 LB address, IPv4 endpoint serving", unNATed("192.0.2.9:5000", "203.0.113.50:6343"), true},
		{"IPv6 LB address, no IPv6 endpoint", unNATed("[2001:db8:9::9]:5000", "[2001:db8::50]:6343"), false},
		{"IPv6 ClusterIP, no IPv6 endpoint", unNATed("[2001:db8:9::9]:5000", "[fd00::50]:6343"), false},
		{"IPv6 NodePort, no IPv6 endpoint", unNATed("[2001:db8:9::9]:5000", "[2001:db8:ffff::1]:30050"), false},
		{"IPv4 NodePort, IPv4 endpoint", unNATed("192.0.2.9:5000", "192.0.2.1:30050"), true},
		{"IPv6 address on a single-stack IPv4 Service", unNATed("[2001:db8:9::9]:5000", "[2001:db8::60]:6343"), false},
	} {
		if got, _ := table.Stale(tc.flow); got != tc.stale {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.stale)
		}
	}
	// An IPv6 endpoint arrives: the never-NATed IPv6 flow is stale now.
	table = NewTable([]*corev1.Service{dual}, []*discoveryv1.EndpointSlice{slice("dual", 16343, "198.51.100.7", "2001:db8:1::7")}, nil, local)
	if got, _ := table.Stale(unNATed("[2001:db8:9::9]:5000", "[2001:db8::50]:6343")); !got {
		t.Error("a never-NATed IPv6 flow is not stale once an IPv6 endpoint serves")
	}
}
