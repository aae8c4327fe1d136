package nlbpolicy

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// metalLBService is a Service of type LoadBalancer that no AWS controller
// provisions (no loadBalancerClass: MetalLB's default, or kube-vip's, or a
// cloud's own controller), externalTrafficPolicy Local, opted in.
func metalLBService(mutate ...func(*corev1.Service)) *corev1.Service {
	return nlbService(append([]func(*corev1.Service){func(s *corev1.Service) {
		s.Spec.LoadBalancerClass = nil
		s.Spec.HealthCheckNodePort = 0
		s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24", "2001:db8:2::/64"}
	}}, mutate...)...)
}

// TestQualifiesOtherLoadBalancers: any Service of type LoadBalancer may opt
// in, whoever provisions its load balancer; --manage-all (about the AWS
// controller's rules) takes in NLBs alone; a Service of another type never
// qualifies.
func TestQualifiesOtherLoadBalancers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		svc       *corev1.Service
		manageAll bool
		want      bool
	}{
		{"MetalLB, opted in", metalLBService(), false, true},
		{"another class, opted in", metalLBService(func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("kube-vip.io/kube-vip-class") }), false, true},
		{"MetalLB, not opted in, --manage-all", metalLBService(func(s *corev1.Service) { delete(s.Annotations, annotations.NLBPolicy) }), true, false},
		{"MetalLB, opted out", metalLBService(func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Disabled }), false, false},
		{"ClusterIP, opted in", metalLBService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), false, false},
		{"NLB, not opted in, --manage-all, backend rules off", nlbService(func(s *corev1.Service) {
			delete(s.Annotations, annotations.NLBPolicy)
			s.Annotations[lbc.ManageBackendSecurityGroupRule] = "false"
		}), true, true},
	} {
		if got := Qualifies(tc.svc, tc.manageAll); got != tc.want {
			t.Errorf("%s: qualifies %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNetworkPolicyOtherLoadBalancers: in front of another load balancer
// the pods see the client only with externalTrafficPolicy Local, whatever
// AWS annotation the Service carries (one saying "ip targets" on a MetalLB
// Service would otherwise let a policy admit every client masqueraded as a
// node whose network a source range covers); no health-check source is
// admitted; NodePorts, which nothing fences there, are reported; and a
// Service that lists no source admits no one, and says so.
func TestNetworkPolicyOtherLoadBalancers(t *testing.T) {
	in := func(svc *corev1.Service) Input { return Input{Service: svc} }
	cluster := metalLBService(ipTargets, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	})
	if out := DesiredNetworkPolicy(in(cluster), nil); out.Policy != nil || !strings.Contains(out.Refused, "externalTrafficPolicy: Local") ||
		strings.Contains(out.Refused, "ip targets") {
		t.Errorf("MetalLB with externalTrafficPolicy Cluster and an AWS ip-target annotation: policy %v, refused %q; want refused, "+
			"asking for Local alone", out.Policy != nil, out.Refused)
	}
	out := DesiredNetworkPolicy(in(metalLBService()), nil)
	if out.Policy == nil || out.Refused != "" || out.Waiting != "" || len(out.Problems) != 0 {
		t.Fatalf("MetalLB with Local: policy %v, refused %q, waiting %q, problems %q", out.Policy != nil, out.Refused, out.Waiting, out.Problems)
	}
	judgeFlows(t, []networkingv1.NetworkPolicy{*out.Policy}, []flowCase{
		{"192.0.2.7", "UDP", 6343, true}, {"2001:db8:2::7", "UDP", 6343, true},
		{"198.51.100.7", "UDP", 6343, false}, {"2001:db8:3::7", "UDP", 6343, false},
		{"10.0.0.9", "UDP", 6343, false}, // no health-check source
		{"203.0.113.1", "UDP", 9995, true}, {"203.0.113.1", "TCP", 9100, true},
	})
	nodePorts := DesiredNetworkPolicy(in(metalLBService(func(s *corev1.Service) {
		s.Spec.AllocateLoadBalancerNodePorts = nil
		s.Spec.Ports[0].NodePort = 30001
	})), nil)
	if nodePorts.Policy == nil || len(nodePorts.Problems) != 1 || !strings.Contains(nodePorts.Problems[0], "allocateLoadBalancerNodePorts: false") {
		t.Errorf("MetalLB with NodePorts: policy %v, problems %q; want a policy and the problem naming allocateLoadBalancerNodePorts",
			nodePorts.Policy != nil, nodePorts.Problems)
	}
	none := DesiredNetworkPolicy(in(metalLBService(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = nil })), nil)
	if none.Policy == nil || len(none.Problems) != 1 || !strings.Contains(none.Problems[0], "spec.loadBalancerSourceRanges") {
		t.Fatalf("no sources: policy %v, problems %q; want a policy and the problem naming spec.loadBalancerSourceRanges", none.Policy != nil, none.Problems)
	}
	judgeFlows(t, []networkingv1.NetworkPolicy{*none.Policy}, []flowCase{
		{"192.0.2.7", "UDP", 6343, false}, {"2001:db8:2::7", "UDP", 6343, false}, {"203.0.113.1", "UDP", 9995, true},
	})
}

// TestReconcileOtherLoadBalancers: the reconciler asks AWS nothing about a
// load balancer that is not an NLB (the fake's health-check CIDRs appear in
// no rule), enforces it with the NetworkPolicy backend, and refuses the
// calico backend for it, naming the one to use.
func TestReconcileOtherLoadBalancers(t *testing.T) {
	svc := metalLBService(func(s *corev1.Service) { s.Annotations[annotations.PolicyBackend] = string(BackendNetworkPolicy) })
	calico := metalLBService(func(s *corev1.Service) { s.Name, s.UID = "flows-calico", "0a1c" })
	r, c, _ := recordingReconciler(t, svc, calico)
	r.Options.Backends = []Backend{BackendCalico, BackendNetworkPolicy}
	ctx := context.Background()

	reconcileOnce(t, r, svc)
	reconcileOnce(t, r, svc)
	np := &networkingv1.NetworkPolicy{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: svc.Namespace, Name: NetworkPolicyName(svc.Namespace, svc.Name)}, np); err != nil {
		t.Fatalf("the MetalLB Service's NetworkPolicy: %v", err)
	}
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			if peer.IPBlock != nil && strings.HasPrefix(peer.IPBlock.CIDR, "10.0.") {
				t.Errorf("the policy admits %s, a health-check CIDR of the AWS sources, for a load balancer that is not an NLB", peer.IPBlock.CIDR)
			}
		}
	}
	got := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	if !ack.Current(got) {
		t.Errorf("the MetalLB Service is not acknowledged: %s", got.Annotations[annotations.Enforced])
	}

	reconcileOnce(t, r, calico)
	reconcileOnce(t, r, calico)
	if err := c.Get(ctx, client.ObjectKeyFromObject(calico), got); err != nil {
		t.Fatal(err)
	}
	a, _ := ack.Of(got)
	if a.Refused == "" || !strings.Contains(a.Problem, "networkpolicy") {
		t.Errorf("the calico backend for a MetalLB Service: %s; want refused, naming the networkpolicy backend", got.Annotations[annotations.Enforced])
	}
}
