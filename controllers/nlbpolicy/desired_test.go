package nlbpolicy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1fieldvalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

func nlbService(mutate ...func(*corev1.Service)) *corev1.Service {
	class := lbc.LoadBalancerClass
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows", UID: "0a1b",
			Annotations: map[string]string{annotations.NLBPolicy: annotations.Enabled}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Selector:                 map[string]string{"app": "sfacctd"},
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
			HealthCheckNodePort:      31000,
			LoadBalancerSourceRanges: []string{"192.0.2.0/24", "198.51.100.0/25"},
			Ports: []corev1.ServicePort{
				{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343, TargetPort: intstr.FromInt32(6343), NodePort: 30001},
				{Name: "ipfix-tcp", Protocol: corev1.ProtocolTCP, Port: 4739, TargetPort: intstr.FromInt32(4740), NodePort: 30002},
				{Name: "ipfix-udp", Protocol: corev1.ProtocolUDP, Port: 4739, TargetPort: intstr.FromInt32(4740), NodePort: 30002},
			},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

var (
	nodeIP = netip.MustParseAddr("10.0.0.4")
	hostEP = calicopolicy.Endpoint{Host: true, Labels: map[string]string{"kubernetes.io/hostname": "ip-10-0-0-4.ec2.internal"},
		Addrs: []netip.Addr{nodeIP}}
	podEP = calicopolicy.Endpoint{Labels: map[string]string{"app": "sfacctd", "projectcalico.org/namespace": "telemetry"}}
)

type probe struct {
	src      string
	protocol string
	port     uint16
	want     calicopolicy.Verdict
}

// check evaluates probes against the desired objects, as Calico would, with
// no policy of the cluster's own: allowed, pre-DNAT, means a rule of the
// product passed the packet on (and normal processing admits it here).
func check(t *testing.T, out Output, ep calicopolicy.Endpoint, preDNAT bool, probes []probe) {
	t.Helper()
	for _, p := range probes {
		pkt := calicopolicy.Packet{Src: netip.MustParseAddr(p.src), Protocol: p.protocol, DstPort: p.port}
		if len(ep.Addrs) > 0 {
			pkt.Dst = ep.Addrs[0]
		}
		got, err := calicopolicy.Evaluate(out.Policies, out.NetworkSets, ep, pkt, preDNAT)
		if err != nil {
			t.Fatal(err)
		}
		if v := outcome(got, preDNAT); v != p.want {
			t.Errorf("%s %s:%d: %v (by %s), want %v", p.src, p.protocol, p.port, v, got.By, p.want)
		}
	}
}

// outcome is a result as the probes state it: pre-DNAT, a packet the
// product's rules passed on is allowed as far as the product goes.
func outcome(r calicopolicy.Result, preDNAT bool) calicopolicy.Verdict {
	if preDNAT && r.PassedOn() {
		return calicopolicy.Allowed
	}
	return r.Verdict
}

const (
	allowed = calicopolicy.Allowed
	denied  = calicopolicy.Denied
	nothing = calicopolicy.NoDecision
)

func TestDesiredInstanceTargets(t *testing.T) {
	out := Desired(Input{Service: nlbService(), HealthCheckCIDRs: []string{"10.0.0.0/20", "10.0.16.0/20"}}, DefaultOptions())
	if len(out.Problems) != 0 || out.Waiting != "" || len(out.Policies) != 2 || len(out.NetworkSets) != 0 {
		t.Fatalf("%+v", out)
	}
	for _, p := range out.Policies {
		if !p.Spec.PreDNAT || !p.Spec.ApplyOnForward || p.Spec.Selector != "has(kubernetes.io/hostname)" {
			t.Errorf("%s: not a pre-DNAT host endpoint policy: %+v", p.Name, p.Spec)
		}
		if p.Labels[annotations.OwnerUID] != "0a1b" || p.Labels[annotations.ManagedBy] != annotations.NLBPolicyManager {
			t.Errorf("%s: labels %v", p.Name, p.Labels)
		}
	}
	if *out.Policies[0].Spec.Order >= *out.Policies[1].Spec.Order {
		t.Error("the Deny policy must come after the Allow policy")
	}
	check(t, out, hostEP, true, []probe{
		{"192.0.2.7", "UDP", 30001, allowed},      // listed source, sFlow NodePort
		{"198.51.100.100", "UDP", 30002, allowed}, // listed, IPFIX over UDP
		{"198.51.100.100", "TCP", 30002, allowed}, // listed, IPFIX over TCP (TCP_UDP)
		{"198.51.100.200", "UDP", 30001, denied},  // outside the /25
		{"203.0.113.1", "TCP", 30002, denied},     // unlisted
		{"10.0.3.3", "TCP", 31000, allowed},       // health check from an NLB subnet
		{"10.0.3.3", "UDP", 30001, denied},        // health-check CIDRs are not sources
		{"203.0.113.1", "TCP", 31000, denied},     // health-check port closed to others
		{"203.0.113.1", "TCP", 22, nothing},       // other ports are not this policy's business
		{"203.0.113.1", "UDP", 30003, nothing},
	})
	// The same port number forwarded through the node to another address
	// (a pod of another tenant, reached without DNAT) is not touched.
	forwarded, err := calicopolicy.Evaluate(out.Policies, out.NetworkSets, hostEP, calicopolicy.Packet{
		Src: netip.MustParseAddr("203.0.113.1"), Protocol: "UDP", DstPort: 30001, Dst: netip.MustParseAddr("10.0.77.9")}, true)
	if err != nil || forwarded.Verdict != nothing {
		t.Errorf("a packet to another address on the NodePort's number: %+v, %v; want no decision", forwarded, err)
	}
	// Never an Allow: listed sources are passed on to the cluster's own tiers.
	for _, p := range out.Policies {
		for _, r := range p.Spec.Ingress {
			if r.Action != calicov3.Pass && r.Action != calicov3.Deny {
				t.Errorf("%s: a %s rule; the product only passes on or denies", p.Name, r.Action)
			}
		}
	}
}

func TestDesiredIPTargets(t *testing.T) {
	svc := nlbService(func(s *corev1.Service) { s.Annotations[lbc.NLBTargetType] = lbc.TargetIP })
	out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, DefaultOptions())
	if len(out.Policies) != 2 || out.Policies[0].Spec.PreDNAT {
		t.Fatalf("%+v", out)
	}
	if want := "projectcalico.org/namespace == 'telemetry' && app == 'sfacctd'"; out.Policies[0].Spec.Selector != want {
		t.Fatalf("selector %q", out.Policies[0].Spec.Selector)
	}
	check(t, out, podEP, false, []probe{
		{"192.0.2.7", "UDP", 6343, allowed},
		{"192.0.2.7", "TCP", 4740, allowed},
		{"10.0.1.1", "TCP", 4740, allowed}, // health check to the target port
		{"203.0.113.1", "UDP", 6343, denied},
		// Not isolated: the product's tier ends in Pass, so other ports go on
		// to the cluster's own policies (none here: the profile admits).
		{"203.0.113.1", "TCP", 9100, allowed},
	})
	// Pods of another namespace with the same labels are not selected.
	other := calicopolicy.Endpoint{Labels: map[string]string{"app": "sfacctd", "projectcalico.org/namespace": "other"}}
	check(t, out, other, false, []probe{{"203.0.113.1", "UDP", 6343, allowed}})
}

func TestDesiredFailsClosed(t *testing.T) {
	cases := []struct {
		name     string
		mutate   func(*corev1.Service)
		defaults []string
		problem  string
		probes   []probe
	}{
		{"invalid ranges are dropped, the valid part enforced",
			func(s *corev1.Service) {
				s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24", "not-a-cidr", "198.51.100.1/24"}
			}, nil,
			`invalid source range "not-a-cidr"`,
			[]probe{{"192.0.2.1", "UDP", 30001, allowed}, {"198.51.100.1", "UDP", 30001, denied}}},
		{"all ranges invalid: nobody, never the default",
			func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"garbage"} }, []string{"0.0.0.0/0"},
			`invalid source range`,
			[]probe{{"192.0.2.1", "UDP", 30001, denied}, {"10.0.0.1", "TCP", 31000, allowed}}},
		{"no ranges: the default (internet-facing 0.0.0.0/0)",
			func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = nil }, []string{"0.0.0.0/0"}, "",
			[]probe{{"203.0.113.1", "UDP", 30001, allowed}}},
		{"no ranges and no default (internal, VPC unknown): nobody",
			func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = nil }, nil, "no client is allowed",
			[]probe{{"203.0.113.1", "UDP", 30001, denied}}},
		{"annotation source ranges",
			func(s *corev1.Service) {
				s.Spec.LoadBalancerSourceRanges = nil
				s.Annotations[lbc.SourceRanges] = "203.0.113.0/24"
			}, []string{"0.0.0.0/0"}, "",
			[]probe{{"203.0.113.1", "UDP", 30001, allowed}, {"192.0.2.1", "UDP", 30001, denied}}},
		{"invalid host endpoint selector: the default is used",
			func(s *corev1.Service) { s.Annotations[annotations.HostEndpointSelector] = "has(" }, nil, "invalid telemetry-platform.io/host-endpoint-selector",
			[]probe{{"192.0.2.1", "UDP", 30001, allowed}, {"203.0.113.1", "UDP", 30001, denied}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := Desired(Input{Service: nlbService(tc.mutate), HealthCheckCIDRs: []string{"10.0.0.0/20"}, DefaultSources: tc.defaults}, DefaultOptions())
			if tc.problem == "" && len(out.Problems) > 0 || tc.problem != "" && !strings.Contains(strings.Join(out.Problems, "\n"), tc.problem) {
				t.Fatalf("problems %q, want %q", out.Problems, tc.problem)
			}
			check(t, out, hostEP, true, tc.probes)
		})
	}
}

func TestDesiredWaitsForNodePorts(t *testing.T) {
	out := Desired(Input{Service: nlbService(func(s *corev1.Service) { s.Spec.Ports[1].NodePort = 0 })}, DefaultOptions())
	if out.Waiting == "" || len(out.Policies) != 0 {
		t.Fatalf("%+v", out)
	}
}

func TestDesiredNetworkSetPastThreshold(t *testing.T) {
	var ranges []string
	for i := 0; i < 60; i++ {
		ranges = append(ranges, fmt.Sprintf("198.18.%d.0/25", 2*i))
	}
	svc := nlbService(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = ranges })
	out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, DefaultOptions())
	if len(out.NetworkSets) != 1 || len(out.NetworkSets[0].Spec.Nets) != 60 {
		t.Fatalf("network sets: %+v", out.NetworkSets)
	}
	for _, r := range out.Policies[0].Spec.Ingress {
		if len(r.Source.Nets) > 10 {
			t.Fatalf("nets left inline: %d", len(r.Source.Nets))
		}
	}
	check(t, out, hostEP, true, []probe{{"198.18.4.1", "UDP", 30001, allowed}, {"198.18.5.1", "UDP", 30001, denied}})
}

func TestDesiredIPv6(t *testing.T) {
	svc := nlbService(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"2001:db8::/48", "192.0.2.0/24"} })
	out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, DefaultOptions())
	check(t, out, hostEP, true, []probe{
		{"2001:db8::5", "UDP", 30001, allowed}, {"2001:db9::5", "UDP", 30001, denied}, {"192.0.2.5", "UDP", 30001, allowed},
	})
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestBaseName(t *testing.T) {
	a, b := BaseName("a-b", "c"), BaseName("a", "b-c")
	if a == b {
		t.Fatal("names collide")
	}
	long := BaseName(strings.Repeat("n", 63), strings.Repeat("s", 63))
	if len(long+"-sources") > 253 || !nameRE.MatchString(long) || BaseName("a-b", "c") != a {
		t.Fatalf("bad name %q", long)
	}
}

// validObjects checks every generated object the way the API server would:
// a DNS-1123 subdomain name (Calico's rule for policy and set names) and
// valid label keys and values (63 characters, alphanumeric at both ends).
func validObjects(t *testing.T, out Output) {
	t.Helper()
	var metas []metav1.ObjectMeta
	for _, p := range out.Policies {
		metas = append(metas, p.ObjectMeta)
	}
	for _, s := range out.NetworkSets {
		metas = append(metas, s.ObjectMeta)
	}
	for _, m := range metas {
		if errs := metav1validation.NameIsDNSSubdomain(m.Name, false); len(errs) > 0 {
			t.Errorf("name %q: %v", m.Name, errs)
		}
		if errs := metav1fieldvalidation.ValidateLabels(m.Labels, field.NewPath("metadata", "labels")); len(errs) > 0 {
			t.Errorf("%s: %v", m.Name, errs.ToAggregate())
		}
	}
}

// TestDesiredValidForAnyLegalName: a Service whose namespace and name are
// both 63 characters, past the network-set threshold, still gets objects the
// API server accepts (a label value over 63 characters once made it reject the
// network set, so no policy was ever written).
func TestDesiredValidForAnyLegalName(t *testing.T) {
	var ranges []string
	for i := 0; i < 1000; i++ {
		ranges = append(ranges, fmt.Sprintf("198.%d.%d.0/24", 18+i/128, 2*(i%128)))
	}
	for _, n := range []int{1, 25, 50, 63} {
		ns, name := strings.Repeat("n", n), "s"+strings.Repeat("9", n-1)
		svc := nlbService(func(s *corev1.Service) {
			s.Namespace, s.Name = ns, name
			s.Spec.LoadBalancerSourceRanges = ranges
		})
		out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, DefaultOptions())
		if len(out.NetworkSets) != 1 || len(out.Policies) != 2 {
			t.Fatalf("length %d: %d sets, %d policies", n, len(out.NetworkSets), len(out.Policies))
		}
		validObjects(t, out)
		check(t, out, hostEP, true, []probe{{"198.18.4.1", "UDP", 30001, allowed}, {"198.18.5.1", "UDP", 30001, denied}})
	}
}

// TestNetworkSetNotSelectablePods: the source selector that picks the
// generated network set never matches a pod that copies its label.
func TestNetworkSetNotSelectablePods(t *testing.T) {
	var ranges []string
	for i := 0; i < 60; i++ {
		ranges = append(ranges, fmt.Sprintf("198.18.%d.0/25", 2*i))
	}
	out := Desired(Input{Service: nlbService(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = ranges })}, DefaultOptions())
	if len(out.NetworkSets) != 1 {
		t.Fatalf("network sets: %d", len(out.NetworkSets))
	}
	var sel string
	for _, r := range out.Policies[0].Spec.Ingress {
		if r.Source.Selector != "" {
			sel = r.Source.Selector
		}
	}
	pod := maps.Clone(out.NetworkSets[0].Labels)
	pod["projectcalico.org/namespace"] = "attacker"
	parsed, err := calicopolicy.ParseSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.Matches(out.NetworkSets[0].Labels) || parsed.Matches(pod) {
		t.Errorf("selector %q: network set %v, pod %v", sel, parsed.Matches(out.NetworkSets[0].Labels), parsed.Matches(pod))
	}
}

// FuzzDesired: whatever the sources, ports and names, Desired never panics,
// names stay valid, and no source outside the valid listed ranges is ever
// allowed (fail closed).
func FuzzDesired(f *testing.F) {
	f.Add("192.0.2.0/24,198.51.100.0/25", uint16(30001), "flows", "telemetry", "198.51.100.200", false)
	f.Add("garbage", uint16(30001), "a", "b", "192.0.2.1", true)
	f.Add("", uint16(0), "x", "y", "10.0.0.1", false)
	f.Add("0.0.0.0/0,::/0", uint16(65535), "s", "n", "2001:db8::1", true)
	f.Fuzz(func(t *testing.T, ranges string, nodePort uint16, name, namespace, probe string, ipTarget bool) {
		svc := nlbService(func(s *corev1.Service) {
			s.Name, s.Namespace = name, namespace
			s.Spec.LoadBalancerSourceRanges = strings.Split(ranges, ",")
			s.Spec.Ports[0].NodePort = int32(nodePort)
			if ipTarget {
				s.Annotations[lbc.NLBTargetType] = lbc.TargetIP
			}
		})
		out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, DefaultOptions())
		legal := nameRE.MatchString(name) && nameRE.MatchString(namespace) && len(name) <= 63 && len(namespace) <= 63
		for _, p := range out.Policies {
			if strings.Contains(p.Name, ".") && legal {
				t.Fatalf("dotted name %q", p.Name)
			}
		}
		if legal {
			validObjects(t, out)
		}
		src, err := netip.ParseAddr(probe)
		if err != nil || len(out.Policies) == 0 {
			return
		}
		ep, preDNAT, port := hostEP, true, nodePort
		if ipTarget {
			ep, preDNAT, port = podEP, false, 6343
			ep.Labels = map[string]string{"app": "sfacctd", "projectcalico.org/namespace": namespace}
		}
		got, err := calicopolicy.Evaluate(out.Policies, out.NetworkSets, ep, calicopolicy.Packet{Src: src, Protocol: "UDP", DstPort: port, Dst: nodeIP}, preDNAT)
		if err != nil {
			t.Fatal(err)
		}
		if (got.Verdict == calicopolicy.Allowed || got.PassedOn()) && !out.Sources.Contains(src) {
			t.Fatalf("%s allowed on UDP %d but not in the valid sources %v (ranges %q)", src, port, out.Sources.Strings(), ranges)
		}
	})
}

// TestOwnerOfName: every generated object's name leads back to its Service,
// whatever hyphens the namespace and name hold, and no other name does.
func TestOwnerOfName(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	word := func() string {
		parts := []string{"a", "b", "ab", "a-b", "x-1", "nlb", "deny", "sources"}
		s := parts[rng.IntN(len(parts))]
		for rng.IntN(2) == 0 {
			s += "-" + parts[rng.IntN(len(parts))]
		}
		return s
	}
	for i := 0; i < 5000; i++ {
		ns, name := word(), word()
		for _, suffix := range ObjectSuffixes {
			gotNS, gotName, ok := OwnerOfName(BaseName(ns, name) + suffix)
			if !ok || gotNS != ns || gotName != name {
				t.Fatalf("OwnerOfName(%q) = %q, %q, %v; want %q, %q", BaseName(ns, name)+suffix, gotNS, gotName, ok, ns, name)
			}
		}
	}
	for _, other := range []string{"nlb-a-b-00000000-deny", "allow-dns", "nlb-", "nlb-a-b", BaseName("a", "b") + "-other"} {
		if ns, name, ok := OwnerOfName(other); ok {
			t.Errorf("OwnerOfName(%q) = %q, %q: not a generated name", other, ns, name)
		}
	}
}

// TestHostEndpointSelectorOnlyNarrows: a Service's host-endpoint-selector
// annotation picks some of the controller's host endpoints, never others: it
// is ANDed with the controller's selector, and an empty one (Calico's all())
// is refused with a problem. The Deny rules carry the same selector as their
// destination, so they touch only traffic addressed to those nodes.
func TestHostEndpointSelectorOnlyNarrows(t *testing.T) {
	opts := DefaultOptions()
	for _, tc := range []struct {
		annotation, want, problem string
	}{
		{"role == 'edge'", "(has(kubernetes.io/hostname)) && (role == 'edge')", ""},
		{"all()", "(has(kubernetes.io/hostname)) && (all())", ""},
		{"", opts.HostEndpointSelector, "empty telemetry-platform.io/host-endpoint-selector"},
		{"  ", opts.HostEndpointSelector, "empty telemetry-platform.io/host-endpoint-selector"},
	} {
		svc := nlbService(func(s *corev1.Service) { s.Annotations[annotations.HostEndpointSelector] = tc.annotation })
		out := Desired(Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, opts)
		if len(out.Policies) != 2 {
			t.Fatalf("%q: %+v", tc.annotation, out)
		}
		for _, p := range out.Policies {
			if p.Spec.Selector != tc.want {
				t.Errorf("%q: %s selects %q, want %q", tc.annotation, p.Name, p.Spec.Selector, tc.want)
			}
		}
		for _, r := range out.Policies[1].Spec.Ingress {
			if r.Destination.Selector != tc.want {
				t.Errorf("%q: Deny rule's destination %q, want %q", tc.annotation, r.Destination.Selector, tc.want)
			}
		}
		if got := strings.Join(out.Problems, "; "); (tc.problem == "") != (got == "") || !strings.Contains(got, tc.problem) {
			t.Errorf("%q: problems %q, want %q", tc.annotation, got, tc.problem)
		}
		// A host endpoint outside the controller's selector is never touched.
		other := calicopolicy.Endpoint{Host: true, Labels: map[string]string{"role": "edge"}, Addrs: []netip.Addr{nodeIP}}
		check(t, out, other, true, []probe{{"203.0.113.1", "UDP", 30001, nothing}})
	}
}

// Health-check CIDRs a Service's annotation names are bounded by the NLB's
// VPC: a CIDR outside it (0.0.0.0/0 from a tenant) is dropped with a
// problem, one inside kept; while the VPC is not known (before the NLB
// exists, or AWS off without --vpc-cidrs) none is taken.
func TestDesiredHealthChecksBoundedByTheVPC(t *testing.T) {
	vpc := []string{"10.0.0.0/16", "2600:1f18:1::/56"}
	for _, tc := range []struct {
		name    string
		health  []string
		bound   []string
		problem string
		probes  []probe
	}{
		{"a tenant's 0.0.0.0/0: dropped", []string{"0.0.0.0/0"}, vpc, "health-check CIDR 0.0.0.0/0 is outside the load balancer's VPC",
			[]probe{{"203.0.113.1", "TCP", 31000, denied}, {"10.0.3.3", "TCP", 31000, denied}}},
		{"a subnet of the VPC: kept", []string{"10.0.16.0/20"}, vpc, "",
			[]probe{{"10.0.16.9", "TCP", 31000, allowed}, {"203.0.113.1", "TCP", 31000, denied}}},
		{"one in, one across the VPC's edge", []string{"10.0.0.0/20", "10.0.0.0/8"}, vpc, "health-check CIDR 10.0.0.0/8 is outside",
			[]probe{{"10.0.3.3", "TCP", 31000, allowed}, {"10.9.0.1", "TCP", 31000, denied}}},
		{"no bound applies (CIDRs the controller found): as given", []string{"0.0.0.0/0"}, nil, "",
			[]probe{{"203.0.113.1", "TCP", 31000, allowed}}},
		{"the bound not known yet (no NLB, AWS off without --vpc-cidrs): none", []string{"10.0.16.0/20"}, []string{}, "the load balancer's VPC, which bounds it, is not known",
			[]probe{{"10.0.16.9", "TCP", 31000, denied}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := Desired(Input{Service: nlbService(), HealthCheckCIDRs: tc.health, HealthCheckBound: tc.bound}, DefaultOptions())
			got := strings.Join(out.Problems, "\n")
			if tc.problem == "" && got != "" || tc.problem != "" && !strings.Contains(got, tc.problem) {
				t.Fatalf("problems %q, want %q", out.Problems, tc.problem)
			}
			check(t, out, hostEP, true, tc.probes)
		})
	}
}
