package nlbpolicy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Which Services the controller manages: the opt-in (or --manage-all), and
// the admins' allow-list of namespaces (--namespaces).

// namespaceAllowed reports whether Services of the namespace may opt in.
func (r *Reconciler) namespaceAllowed(namespace string) bool {
	return len(r.Namespaces) == 0 || slices.Contains(r.Namespaces, namespace)
}

// Qualifies reports whether the controller manages the Service: an NLB of
// the AWS Load Balancer Controller (loadBalancerClass service.k8s.aws/nlb, or
// the aws-load-balancer-type annotation external or nlb-ip) that opts in with
// telemetry-platform.io/nlb-policy: enabled, or, with ManageAll, whose
// backend security-group rules are switched off and that does not opt out;
// or any other Service of type LoadBalancer (MetalLB, kube-vip, a cloud's
// own controller) that opts in: ManageAll is about the AWS controller's
// rules, so those always opt in explicitly.
func Qualifies(svc *corev1.Service, manageAll bool) bool {
	if svc.DeletionTimestamp != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	switch svc.Annotations[annotations.NLBPolicy] {
	case annotations.Enabled:
		return true
	case annotations.Disabled:
		return false
	}
	return lbc.IsNLB(svc) && manageAll && !lbc.BackendRulesManaged(svc)
}

// ipTargetsOf reports whether the load balancer sends to the pods' addresses
// with the client's address kept: the AWS NLB with ip targets. Any other
// load balancer (MetalLB, kube-vip, GKE's passthrough NLB) delivers to a
// node, where kube-proxy forwards; an AWS target-type annotation on such a
// Service means nothing, and is not taken to mean the client's address
// reaches the pod (it would not with externalTrafficPolicy Cluster).
func ipTargetsOf(svc *corev1.Service) bool {
	return lbc.IsNLB(svc) && lbc.TargetType(svc) == lbc.TargetIP
}

func notQualifyingReason(svc *corev1.Service) string {
	switch {
	case svc.DeletionTimestamp != nil:
		return "Service deleted"
	case svc.Spec.Type != corev1.ServiceTypeLoadBalancer:
		return "no longer a Service of type LoadBalancer"
	default:
		return "opted out"
	}
}
