package provider

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

func baseIngress() ingressSpec {
	return ingressSpec{
		Name: "flows", Namespace: "telemetry", Selector: map[string]string{"app": "sfacctd"},
		Ports: []ingressPort{
			{Name: "sflow", Protocol: "UDP", Port: 6343, TargetPort: 6343},
			{Name: "ipfix", Protocol: protocolTCPUDP, Port: 4739, TargetPort: 4739},
		},
		Sources:    cidrset.MustParse("192.0.2.0/24", "198.51.100.0/24"),
		TargetType: lbc.TargetInstance, Scheme: lbc.SchemeInternetFacing, ETP: corev1.ServiceExternalTrafficPolicyLocal,
		NodeSG: "sg-0node", NLBSecurityGroup: true, NodePortMin: 30000, NodePortMax: 32767, CoverSize: defaultCoverSize,
	}
}

func TestDesiredRules(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*ingressSpec)
		want   []string
	}{
		{"frontend mode, instance targets: listeners admit the coarse cover only", func(*ingressSpec) {}, []string{
			"frontend: tcp 4739 from 192.0.2.0/24",
			"frontend: tcp 4739 from 198.51.100.0/24",
			"frontend: udp 4739 from 192.0.2.0/24",
			"frontend: udp 4739 from 198.51.100.0/24",
			"frontend: udp 6343 from 192.0.2.0/24",
			"frontend: udp 6343 from 198.51.100.0/24",
			"node: tcp 30000-32767 from frontend",
			"node: udp 30000-32767 from frontend",
		}},
		{"a cover of one prefix per family", func(s *ingressSpec) {
			s.CoverSize = 1
			s.Ports = s.Ports[:1]
		}, []string{
			"frontend: udp 6343 from 192.0.0.0/5",
			"node: tcp 30000-32767 from frontend",
			"node: udp 30000-32767 from frontend",
		}},
		{"frontend mode, ip targets: per target port, TCP for health checks", func(s *ingressSpec) {
			s.TargetType = lbc.TargetIP
			s.Ports[0].TargetPort = 16343
			s.Sources = cidrset.MustParse("192.0.2.0/24")
		}, []string{
			"frontend: tcp 4739 from 192.0.2.0/24",
			"frontend: udp 4739 from 192.0.2.0/24",
			"frontend: udp 6343 from 192.0.2.0/24",
			"node: tcp 16343 from frontend",
			"node: tcp 4739 from frontend",
			"node: udp 16343 from frontend",
			"node: udp 4739 from frontend",
		}},
		{"IPv6 sources: their own cover", func(s *ingressSpec) {
			s.Sources = cidrset.MustParse("2001:db8::/48", "2001:db8:2::/48")
			s.Ports = s.Ports[:1]
		}, []string{
			"frontend: udp 6343 from 2001:db8:2::/48",
			"frontend: udp 6343 from 2001:db8::/48",
			"node: tcp 30000-32767 from frontend",
			"node: udp 30000-32767 from frontend",
		}},
		{"node mode: the Service's own NodePorts from the cover, health checks to its health-check NodePort", func(s *ingressSpec) {
			s.NLBSecurityGroup = false
			s.Sources = cidrset.MustParse("192.0.2.0/24")
			s.NodePorts = map[string]int32{"udp/6343": 30001, "tcp/4739": 30002, "udp/4739": 30003}
			s.HealthCheckNodePort = 31000
		}, []string{
			"node: tcp 30002 from 192.0.2.0/24",
			"node: tcp 31000 from vpc",
			"node: udp 30001 from 192.0.2.0/24",
			"node: udp 30003 from 192.0.2.0/24",
		}},
		{"node mode, externalTrafficPolicy Cluster: health checks to the traffic NodePorts", func(s *ingressSpec) {
			s.NLBSecurityGroup = false
			s.ETP = corev1.ServiceExternalTrafficPolicyCluster
			s.Ports = s.Ports[:1]
			s.Sources = cidrset.MustParse("192.0.2.0/24")
			s.NodePorts = map[string]int32{"udp/6343": 30001}
		}, []string{
			"node: tcp 30001 from vpc",
			"node: udp 30001 from 192.0.2.0/24",
		}},
		{"node mode, ip targets: the target ports", func(s *ingressSpec) {
			s.NLBSecurityGroup = false
			s.TargetType = lbc.TargetIP
			s.Ports = s.Ports[:1]
			s.Sources = cidrset.MustParse("192.0.2.0/24")
		}, []string{
			"node: tcp 6343 from vpc",
			"node: udp 6343 from 192.0.2.0/24",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := baseIngress()
			tc.mutate(&s)
			if got := ruleStrings(s.desiredRules()); !slices.Equal(got, tc.want) {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestRulesKnown(t *testing.T) {
	s := baseIngress()
	if !s.rulesKnown() {
		t.Fatal("frontend mode needs no NodePort")
	}
	s.NLBSecurityGroup = false
	if s.rulesKnown() {
		t.Fatal("node mode without NodePorts taken as known")
	}
	s.NodePorts = map[string]int32{"udp/6343": 30001, "tcp/4739": 30002, "udp/4739": 30003}
	if s.rulesKnown() {
		t.Fatal("known without the health-check NodePort of externalTrafficPolicy Local")
	}
	s.HealthCheckNodePort = 31000
	if !s.rulesKnown() {
		t.Fatal("all NodePorts known, rules not")
	}
	s.Ports = append(s.Ports, ingressPort{Name: "new", Protocol: "UDP", Port: 9995, TargetPort: 9995})
	if s.rulesKnown() {
		t.Fatal("a new port's NodePort taken as known")
	}
}

// The footprint is bounded by ports and the cover size: sources do not
// change it, and no rule admits the whole internet.
func TestRulesDoNotGrowWithSources(t *testing.T) {
	s := baseIngress()
	var many []string
	for i := 0; i < 1000; i++ {
		many = append(many, fmt.Sprintf("10.%d.%d.0/24", i/128, (i%128)*2))
	}
	s.Sources = cidrset.MustParse(many...)
	if s.Sources.Len() != 1000 {
		t.Fatalf("test sources aggregated to %d", s.Sources.Len())
	}
	rules := s.desiredRules()
	// 3 listener protocol-ports x 10 cover prefixes, 2 node rules.
	if got := len(rules); got != 3*defaultCoverSize+2 {
		t.Fatalf("%d rules with 1000 sources", got)
	}
	for _, r := range rules {
		if r.Source == "0.0.0.0/0" || r.Source == "::/0" {
			t.Fatalf("rule %s admits everyone", r)
		}
	}
	// What the AWS Load Balancer Controller would need: 1000 x (1 + 2) + 3 x 2.
	if got := s.perSourceModel(3); got != 3006 {
		t.Fatalf("per-source model = %d", got)
	}
}

func TestServiceRendering(t *testing.T) {
	s := baseIngress()
	s.Subnets = []string{"subnet-a", "subnet-b"}
	s.Annotations = map[string]string{"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "10"}
	ac := s.service("sg-0front")
	ann := ac.Annotations
	for k, want := range map[string]string{
		lbc.SecurityGroups: "sg-0front", lbc.ManageBackendSecurityGroupRule: "false", lbc.TargetGroupAttributes: lbc.PreserveClientIP,
		lbc.Subnets: "subnet-a,subnet-b", "telemetry-platform.io/nlb-policy": "enabled", lbc.Scheme: lbc.SchemeInternetFacing,
		"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "10",
	} {
		if ann[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[k], want)
		}
	}
	if _, ok := ann[lbc.DisableNLBSecurityGroup]; ok {
		t.Error("frontend mode must not disable the NLB security group")
	}
	if *ac.Spec.LoadBalancerClass != lbc.LoadBalancerClass || len(ac.Spec.Ports) != 3 ||
		!slices.Equal(ac.Spec.LoadBalancerSourceRanges, []string{"192.0.2.0/24", "198.51.100.0/24"}) {
		t.Fatalf("spec: %+v", ac.Spec)
	}
	if _, ok := ann[lbc.IPAddressType]; ok {
		t.Error("IPv4 sources only: no dualstack")
	}
	if _, ok := ann[annotations.PolicyBackend]; ok {
		t.Error("no policy_backend: the annotation must be absent (the controller's default applies)")
	}
	s.PolicyBackend = annotations.PolicyBackendNetworkPolicy
	if got := s.service("sg-0front").Annotations[annotations.PolicyBackend]; got != "networkpolicy" {
		t.Errorf("policy_backend networkpolicy rendered as %q", got)
	}
	if got := s.managedAnnotations("sg-0front")[annotations.PolicyBackend]; got != "networkpolicy" {
		t.Errorf("the backend annotation is not among the managed ones (drift would not show): %q", got)
	}
	s.PolicyBackend = ""
	s.NLBSecurityGroup = false
	if ann := s.service("").Annotations; ann[lbc.DisableNLBSecurityGroup] != "true" || ann[lbc.SecurityGroups] != "" {
		t.Errorf("node mode annotations: %v", ann)
	}
	s.Sources = cidrset.MustParse("192.0.2.0/24", "2001:db8::/32")
	if got := s.service("").Annotations[lbc.IPAddressType]; got != lbc.IPAddressTypeDualStack {
		t.Errorf("IPv6 sources need a dualstack NLB, got %q", got)
	}
}

func TestPortsRoundTrip(t *testing.T) {
	s := baseIngress()
	s.Ports = append(s.Ports, ingressPort{Name: "metrics-tcp", Protocol: "TCP", Port: 9000, TargetPort: 9100})
	ac := s.service("sg-0front")
	svc := &corev1.Service{}
	for _, p := range ac.Spec.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: *p.Name, Protocol: *p.Protocol, Port: *p.Port, TargetPort: *p.TargetPort})
	}
	if got := portsFromService(svc, nil); !slices.Equal(got, s.Ports) {
		t.Fatalf("got %+v\nwant %+v", got, s.Ports)
	}
	// A lone "-tcp" port is not half of a TCP_UDP pair; an unset target port means the port.
	svc.Spec.Ports = []corev1.ServicePort{{Name: "x-tcp", Protocol: "TCP", Port: 1, TargetPort: intstr.FromInt32(0)}}
	if got := portsFromService(svc, nil); len(got) != 1 || got[0].Protocol != "TCP" || got[0].TargetPort != 1 {
		t.Fatalf("lone port: %+v", got)
	}
}

// TestPortsRoundTripProperty: for any ports that pass the plan's checks,
// the Service the provider writes is valid (port names unique) and reading
// it back gives the configured ports, whatever their names and protocols.
func TestPortsRoundTripProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "a-tcp", "a-udp", "b", "b-udp"}
	protocols := []string{"UDP", "TCP", protocolTCPUDP}
	checked := 0
	for i := 0; i < 20000; i++ {
		var ports []ingressPort
		for n := 1 + rng.IntN(3); n > 0; n-- {
			port := int32(1 + rng.IntN(2))
			target := port
			if rng.IntN(3) == 0 {
				target = int32(1 + rng.IntN(2))
			}
			ports = append(ports, ingressPort{Name: names[rng.IntN(len(names))], Protocol: protocols[rng.IntN(len(protocols))],
				Port: port, TargetPort: target})
		}
		if len(portProblems(ports)) > 0 {
			continue
		}
		checked++
		svc := &corev1.Service{}
		seen := map[string]bool{}
		for _, p := range servicePorts(ports) {
			if seen[p.Name] {
				t.Fatalf("ports %+v pass the plan but the Service names %q twice", ports, p.Name)
			}
			seen[p.Name] = true
			svc.Spec.Ports = append(svc.Spec.Ports, p)
		}
		if got := portsFromService(svc, ports); !slices.Equal(got, ports) {
			t.Fatalf("ports %+v read back as %+v", ports, got)
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d generated port lists were valid", checked)
	}
}

func TestPortProblems(t *testing.T) {
	ports := []ingressPort{
		{Name: "a", Protocol: "UDP", Port: 6343},
		{Name: "a", Protocol: "TCP", Port: 1},
		{Name: "b", Protocol: protocolTCPUDP, Port: 6343},
		{Name: "c", Protocol: "TCP", Port: 9000},
	}
	got := portProblems(ports)
	want := []string{`port name "a" is used twice`, `ports "a" and "b" both claim UDP 6343`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	// A TCP_UDP port's halves are named <name>-tcp and <name>-udp in the Service.
	got = portProblems([]ingressPort{{Name: "ipfix", Protocol: protocolTCPUDP, Port: 4739}, {Name: "ipfix-tcp", Protocol: "TCP", Port: 9000}})
	want = []string{`port "ipfix-tcp" has the Service port name of a half of TCP_UDP port "ipfix" (ipfix-tcp, ipfix-udp): rename one of them`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	if p := portProblems(baseIngress().Ports); len(p) != 0 {
		t.Fatalf("valid ports: %v", p)
	}
}

func TestLoadBalancerProblems(t *testing.T) {
	lb := func(groups ...string) *awsnlb.LoadBalancer {
		return &awsnlb.LoadBalancer{DNSName: "k8s-x.elb", SecurityGroups: groups, IPAddressType: "ipv4"}
	}
	withSG, withoutSG := baseIngress(), baseIngress()
	withoutSG.NLBSecurityGroup = false
	v6 := baseIngress()
	v6.Sources = cidrset.MustParse("2001:db8::/32")
	for _, tc := range []struct {
		name string
		spec ingressSpec
		lb   *awsnlb.LoadBalancer
		want string
	}{
		{"as configured", withSG, lb("sg-front"), ""},
		{"no NLB yet", withSG, nil, ""},
		{"built without the frontend group", withSG, lb(), "Set nlb_security_group = false"},
		{"built with another group", withSG, lb("sg-other"), "Set nlb_security_group = false"},
		{"without a group, as configured", withoutSG, lb(), ""},
		{"a group although none was asked", withoutSG, lb("sg-x"), "v2.14+"},
		{"IPv6 exporters, IPv4 NLB", v6, lb("sg-front"), "dualstack"},
		{"target groups of another type", withSG, &awsnlb.LoadBalancer{SecurityGroups: []string{"sg-front"}, TargetTypes: []string{"ip"}}, "ip targets"},
		{"target groups as configured", withSG, &awsnlb.LoadBalancer{SecurityGroups: []string{"sg-front"}, TargetTypes: []string{"instance"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(tc.spec.loadBalancerProblems("sg-front", tc.lb), "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHeldBy: the destroy timeout names the controller that holds the
// Service, not always the AWS Load Balancer Controller.
func TestHeldBy(t *testing.T) {
	for _, tc := range []struct {
		finalizers []string
		want, not  string
	}{
		{[]string{"telemetry-platform.io/nlb-policy"}, "the nlb-policy controller", "AWS Load Balancer Controller"},
		{[]string{"service.k8s.aws/resources"}, "AWS Load Balancer Controller", "nlb-policy"},
		{[]string{"telemetry-platform.io/nlb-policy", "service.k8s.aws/resources"}, "nlb-policy controller (finalizer telemetry-platform.io/nlb-policy) must be running to delete its policies (Calico policies or the NetworkPolicy); the AWS Load Balancer Controller", ""},
		{[]string{"example.com/x"}, "finalizer example.com/x is held by another controller", "nlb-policy"},
		{nil, "no finalizer left", "controller"},
	} {
		got := heldBy(tc.finalizers)
		if !strings.Contains(got, tc.want) || (tc.not != "" && strings.Contains(got, tc.not)) {
			t.Errorf("%v: %q", tc.finalizers, got)
		}
	}
}

// TestSourcesProblem: the bound on one ingress's sources refuses before the
// API server would (measured: a NetworkPolicy of 70,000 sources of about 17
// characters written, of 80,000 refused), and takes the prefixes' lengths
// into account (long IPv6 prefixes reach it sooner).
func TestSourcesProblem(t *testing.T) {
	many := func(n int, v6 bool) cidrset.Set {
		var in []string
		a4, a6 := netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:0")
		for i := 0; i < n; i++ {
			if v6 {
				in = append(in, netip.PrefixFrom(a6, 128).String())
				a6 = a6.Next().Next()
			} else {
				in = append(in, netip.PrefixFrom(a4, 32).String())
				a4 = a4.Next().Next()
			}
		}
		s, errs := cidrset.Parse(in)
		if len(errs) > 0 || s.Len() != n {
			t.Fatalf("%d prefixes parsed to %d (%v)", n, s.Len(), errs)
		}
		return s
	}
	for _, tc := range []struct {
		n       int
		v6      bool
		refused bool
	}{
		{1000, false, false}, {40000, false, false}, {55000, false, true}, {70000, false, true},
		{20000, true, false}, {30000, true, true},
	} {
		problem := sourcesProblem(many(tc.n, tc.v6))
		if (problem != "") != tc.refused {
			t.Errorf("%d sources (IPv6 %v): %q, want refused=%v", tc.n, tc.v6, problem, tc.refused)
		}
		if problem != "" && !strings.Contains(problem, "split the sites over several ingresses") {
			t.Errorf("the problem does not say what to do: %q", problem)
		}
	}
}
