package lbc

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(class *string, ann map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Annotations: ann},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class},
	}
}

func TestIsNLB(t *testing.T) {
	nlb, other := LoadBalancerClass, "example.com/lb"
	cases := []struct {
		name string
		svc  *corev1.Service
		want bool
	}{
		{"class", svc(&nlb, nil), true},
		{"other class wins over annotation", svc(&other, map[string]string{Type: TypeExternal}), false},
		{"type external", svc(nil, map[string]string{Type: TypeExternal}), true},
		{"type nlb-ip", svc(nil, map[string]string{Type: TypeNLBIP}), true},
		{"legacy in-tree nlb", svc(nil, map[string]string{Type: "nlb"}), false},
		{"no annotation", svc(nil, nil), false},
		{"not a load balancer", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, LoadBalancerClass: &nlb}}, false},
	}
	for _, tc := range cases {
		if got := IsNLB(tc.svc); got != tc.want {
			t.Errorf("%s: IsNLB = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestServiceSettings(t *testing.T) {
	s := svc(nil, map[string]string{Type: TypeNLBIP})
	if TargetType(s) != TargetIP {
		t.Error("nlb-ip implies ip targets")
	}
	s = svc(nil, map[string]string{NLBTargetType: " ip "})
	if TargetType(s) != TargetIP || TargetType(svc(nil, nil)) != TargetInstance {
		t.Error("target type annotation")
	}
	if SchemeOf(svc(nil, nil)) != SchemeInternal || SchemeOf(svc(nil, map[string]string{Scheme: SchemeInternetFacing})) != SchemeInternetFacing {
		t.Error("scheme default internal")
	}
	s = svc(nil, map[string]string{SourceRanges: "192.0.2.0/24, ,198.51.100.0/24"})
	if got := SourceRangesOf(s); len(got) != 2 || got[1] != "198.51.100.0/24" {
		t.Errorf("annotation source ranges: %v", got)
	}
	s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
	if got := SourceRangesOf(s); len(got) != 1 || got[0] != "203.0.113.0/24" {
		t.Errorf("spec wins: %v", got)
	}
	if !BackendRulesManaged(svc(nil, nil)) ||
		BackendRulesManaged(svc(nil, map[string]string{ManageBackendSecurityGroupRule: "false"})) ||
		BackendRulesManaged(svc(nil, map[string]string{SecurityGroups: "sg-1"})) ||
		!BackendRulesManaged(svc(nil, map[string]string{SecurityGroups: "sg-1", ManageBackendSecurityGroupRule: "true"})) {
		t.Error("backend rule management defaults")
	}
}

func TestPerSourceRules(t *testing.T) {
	// The reference measurement: 100 sources, one UDP port, three subnets:
	// 100 client rules + 3 health-check rules.
	if got := PerSourceRules(100, []int{1}, 3); got != 103 {
		t.Errorf("got %d, want 103", got)
	}
	// TCP_UDP counts twice; health checks once per port.
	if got := PerSourceRules(10, []int{2, 1}, 3); got != 10*2+3+10+3 {
		t.Errorf("got %d", got)
	}
	if PerSourceRules(0, nil, 3) != 0 {
		t.Error("no ports, no rules")
	}
}
