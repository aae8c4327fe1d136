package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// migrationIngress is an ingress without NLB security groups over 25
// non-adjacent sources on two UDP ports, as in the migration test.
func migrationIngress() ingressSpec {
	s := baseIngress()
	s.NLBSecurityGroup = false
	s.Ports = []ingressPort{{Name: "sflow", Protocol: "UDP", Port: 6343, TargetPort: 6343}, {Name: "ipfix", Protocol: "UDP", Port: 4739, TargetPort: 4739}}
	var src []string
	for i := 0; i < 25; i++ {
		src = append(src, fmt.Sprintf("192.0.2.%d/32", 2+2*i))
	}
	s.Sources = cidrset.MustParse(src...)
	s.NodePorts = map[string]int32{"udp/6343": 31001, "udp/4739": 31002}
	s.HealthCheckNodePort = 32001
	return s
}

// lbcRules are the AWS Load Balancer Controller's per-source rules of s in
// the node group (its mode without NLB security groups), plus health checks
// from three subnets.
func lbcRules(s ingressSpec) []sgRule {
	var out []sgRule
	for _, p := range s.Sources.Prefixes() {
		for _, np := range []int32{31001, 31002} {
			out = append(out, sgRule{Group: "node", Protocol: "udp", From: np, To: np, Source: p.String()})
		}
	}
	for _, sn := range []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"} {
		out = append(out, sgRule{Group: "node", Protocol: "tcp", From: 32001, To: 32001, Source: sn})
	}
	return out
}

// TestHandOverRules: the rules held while the controller hands over never
// repeat one of its rules (which its cached revocation would take away),
// always admit every source at the security group (Calico refuses the
// rest), fit beside the group's rules within the quota by shrinking the
// cover, and are refused with the next step when they cannot.
func TestHandOverRules(t *testing.T) {
	s := migrationIngress()
	foreign := lbcRules(s) // 53 rules
	held, err := s.handOverRules(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if n := nodeRulesByFamily(held)["IPv4"] + len(foreign); n > rulesPerGroupQuota {
		t.Errorf("%d rules in the node group during the hand-over, over the quota of %d", n, rulesPerGroupQuota)
	}
	for _, r := range held {
		if slices.Contains(foreign, r) {
			t.Errorf("held rule %v repeats one of the controller's", r)
		}
	}
	for _, src := range s.Sources.Prefixes() {
		for _, np := range []int32{31001, 31002} {
			admitted := slices.ContainsFunc(held, func(r sgRule) bool {
				cover, err := cidrset.Parse([]string{r.Source})
				return err == nil && r.Protocol == "udp" && r.From == np && cover.Contains(src.Addr())
			})
			if !admitted {
				t.Errorf("%s on %d not admitted by the held rules %v", src, np, ruleStrings(held))
			}
		}
	}

	// Room for the whole cover: the same rules as after the hand-over, but
	// for those the controller holds too, widened.
	few := foreign[:4]
	held, err = s.handOverRules(few)
	if err != nil {
		t.Fatal(err)
	}
	desired := s.desiredRules()
	if len(held) != len(desired) {
		t.Errorf("held %d rules, want the %d desired ones (room for all)", len(held), len(desired))
	}
	for _, r := range desired {
		if slices.Contains(few, r) && slices.Contains(held, r) {
			t.Errorf("desired rule %v is the controller's and was not widened", r)
		}
	}

	// No room even at one prefix per port.
	full := slices.Clone(foreign)
	for i := 0; len(full) < rulesPerGroupQuota; i++ {
		full = append(full, sgRule{Group: "node", Protocol: "tcp", From: 22, To: 22, Source: fmt.Sprintf("10.9.%d.0/24", i)})
	}
	if _, err := s.handOverRules(full); err == nil || !strings.Contains(err.Error(), "Nothing was changed") ||
		!strings.Contains(err.Error(), "two-NLB path") {
		t.Errorf("a full node group: %v", err)
	}

	// With NLB security groups the cover is in the frontend group, and the
	// controller's rules in its own group do not count.
	s.NLBSecurityGroup = true
	held, err = s.handOverRules(nil)
	if err != nil || len(held) != len(s.desiredRules()) {
		t.Errorf("frontend mode: %v, %v", ruleStrings(held), err)
	}
}

// TestHandOverAnnotations: an imported Service's first write keeps the
// controller's annotations as they are (absent stays absent) and opts in
// to Calico; the hand-over is pending until they are the ingress's.
func TestHandOverAnnotations(t *testing.T) {
	s := baseIngress()
	live := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		lbc.Scheme: lbc.SchemeInternetFacing, lbc.ManageBackendSecurityGroupRule: "true"}}}
	if !s.handOverPending(live, "sg-0front") {
		t.Fatal("an imported Service is not pending")
	}
	held := s.serviceHoldingLBC("sg-0front", live).Annotations
	if _, ok := held[lbc.SecurityGroups]; ok || held[lbc.ManageBackendSecurityGroupRule] != "true" {
		t.Errorf("held annotations changed the controller's: %v", held)
	}
	if held["telemetry-platform.io/nlb-policy"] != "enabled" {
		t.Errorf("the first write does not opt in to Calico: %v", held)
	}
	if handedOver(held) {
		t.Error("held annotations count as handed over")
	}
	full := s.service("sg-0front").Annotations
	if !handedOver(full) || s.handOverPending(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: full}}, "sg-0front") {
		t.Errorf("the ingress's own annotations are not handed over: %v", full)
	}
	s.NLBSecurityGroup = false
	if !handedOver(s.service("").Annotations) {
		t.Error("node mode annotations are not handed over")
	}
}

// TestTypeAnnotationKept: a Service that names the controller by annotation
// keeps it, and gets no class when it has none (a running LoadBalancer
// Service can gain no class, nor lose one); otherwise the class is written.
func TestTypeAnnotationKept(t *testing.T) {
	s := baseIngress()
	if ac := s.service("sg-0front"); ac.Spec.LoadBalancerClass == nil || ac.Annotations[lbc.Type] != "" {
		t.Errorf("class %v, type annotation %q", ac.Spec.LoadBalancerClass, ac.Annotations[lbc.Type])
	}
	s.TypeAnnotation = lbc.TypeExternal
	if ac := s.service("sg-0front"); ac.Spec.LoadBalancerClass == nil || ac.Annotations[lbc.Type] != lbc.TypeExternal {
		t.Errorf("with a class: class %v, type annotation %q", ac.Spec.LoadBalancerClass, ac.Annotations[lbc.Type])
	}
	s.Classless = true
	ac := s.service("sg-0front")
	if ac.Spec.LoadBalancerClass != nil || ac.Annotations[lbc.Type] != lbc.TypeExternal {
		t.Errorf("class %v, type annotation %q", ac.Spec.LoadBalancerClass, ac.Annotations[lbc.Type])
	}
	if s.managedAnnotations("sg-0front")[lbc.Type] != lbc.TypeExternal {
		t.Error("the type annotation is not among the managed ones (drift would not show)")
	}
}

// TestMigrationPlan: a configuration that would replace an imported NLB is
// refused with what keeps it; one that keeps it gets the steps.
func TestMigrationPlan(t *testing.T) {
	prior := &ingressModel{ID: types.StringValue("telemetry/flows"), DNSName: types.StringValue("nlb.example"),
		NLBSecurityGroup: types.BoolValue(false), Scheme: types.StringValue(lbc.SchemeInternal), TargetType: types.StringValue(lbc.TargetInstance)}
	keep := *prior
	if problem, steps := migrationPlan(prior, &keep); problem != "" || !strings.Contains(steps, "in place") {
		t.Errorf("same NLB: problem %q, steps %q", problem, steps)
	}
	for _, c := range []struct {
		mutate func(*ingressModel)
		want   string
	}{
		{func(m *ingressModel) { m.NLBSecurityGroup = types.BoolValue(true) }, "set nlb_security_group = false"},
		{func(m *ingressModel) { m.Scheme = types.StringValue(lbc.SchemeInternetFacing) }, `set scheme = "internal"`},
		{func(m *ingressModel) { m.TargetType = types.StringValue(lbc.TargetIP) }, `set target_type = "instance"`},
	} {
		plan := *prior
		c.mutate(&plan)
		problem, _ := migrationPlan(prior, &plan)
		if !strings.Contains(problem, c.want) || !strings.Contains(problem, "two-NLB path") {
			t.Errorf("want %q in %q", c.want, problem)
		}
	}
}

// TestMigrationVerdict: what the read-only check says of an NLB Service.
func TestMigrationVerdict(t *testing.T) {
	for _, c := range []struct {
		name          string
		f             migrationFacts
		inPlace, nlbG bool
		want          string
	}{
		{"frontend groups", migrationFacts{hasNLB: true, nlbGroups: true, perSource: 50, nodeGroupRules: -1}, true, true, "takes over from the controller"},
		{"no groups, room unknown", migrationFacts{hasNLB: true, perSource: 50, nodeGroupRules: -1}, true, false, "set node_security_group_id"},
		{"no groups, room", migrationFacts{hasNLB: true, perSource: 50, nodeGroupRules: 57, nodeRoom: true}, true, false, "joins the node group"},
		{"no groups, full", migrationFacts{hasNLB: true, perSource: 50, nodeGroupRules: 58, nodeRoom: false}, false, false, "two-NLB path"},
		{"no NLB yet", migrationFacts{nodeGroupRules: -1}, true, true, "no NLB yet"},
		{"migrated", migrationFacts{hasNLB: true, nlbGroups: true, migrated: true}, true, true, "already migrated"},
	} {
		inPlace, nlbG, reason := c.f.verdict()
		if inPlace != c.inPlace || nlbG != c.nlbG || !strings.Contains(reason, c.want) {
			t.Errorf("%s: %v %v %q, want %v %v and %q", c.name, inPlace, nlbG, reason, c.inPlace, c.nlbG, c.want)
		}
	}
}

// TestMigrationRoomIsWhatTheApplyComputes: the read-only check
// (telemetry_lbc_services) says an NLB without security groups can be
// migrated in place exactly when the apply's hand-over finds room for the
// coarse cover in the node group (handOverRules). With
// externalTrafficPolicy Cluster the health checks come on each traffic
// NodePort, one TCP rule per port beside one rule per port and prefix: a
// check counting "ports + 1" said "in place" for a migration the apply then
// refused.
func TestMigrationRoomIsWhatTheApplyComputes(t *testing.T) {
	for _, c := range []struct {
		name  string
		etp   corev1.ServiceExternalTrafficPolicy
		ports int
	}{
		{"ETP Cluster, two UDP ports", corev1.ServiceExternalTrafficPolicyCluster, 2},
		{"ETP Local, two UDP ports", corev1.ServiceExternalTrafficPolicyLocal, 2},
		{"ETP Cluster, one UDP port", corev1.ServiceExternalTrafficPolicyCluster, 1},
	} {
		for used := 50; used <= 60; used++ {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "flows", Name: "collector", Annotations: map[string]string{
				lbc.NLBTargetType: lbc.TargetInstance, lbc.DisableNLBSecurityGroup: "true"}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: c.etp,
					Selector: map[string]string{"app": "collector"}, LoadBalancerSourceRanges: []string{"192.0.2.0/24", "198.51.100.0/24"}}}
			for i := 0; i < c.ports; i++ {
				svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Protocol: corev1.ProtocolUDP,
					Port: int32(6343 + i), NodePort: int32(31000 + i)})
			}
			if c.etp == corev1.ServiceExternalTrafficPolicyLocal {
				svc.Spec.HealthCheckNodePort = 32000
			}
			var foreign []sgRule
			for i := 0; i < used; i++ {
				foreign = append(foreign, sgRule{Group: "node", Protocol: "udp", From: 31000, To: 31000, Source: fmt.Sprintf("203.0.%d.%d/32", i/250, i%250)})
			}
			spec := migrationSpec(t, svc, "sg-0node")
			_, err := spec.handOverRules(foreign)
			room, rerr := nodeRoom(context.Background(), svc, "sg-0node", foreign, rulesPerGroupQuota)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if got, want := room, err == nil; got != want {
				t.Errorf("%s, %d rules in the node group: the check says room %v, the apply %v (%v)", c.name, used, got, want, err)
			}
		}
	}
}

// migrationSpec is the spec an import of the Service gives the apply, with
// the node group set.
func migrationSpec(t *testing.T, svc *corev1.Service, nodeSG string) ingressSpec {
	t.Helper()
	m := &ingressModel{}
	if d := m.setFromService(context.Background(), svc); d.HasError() {
		t.Fatal(d)
	}
	m.NodeSecurityGroupID = types.StringValue(nodeSG)
	spec, _, d := m.spec(context.Background())
	if d.HasError() {
		t.Fatal(d)
	}
	spec.NodePorts, spec.HealthCheckNodePort = nodePortsFromService(svc)
	return spec
}
