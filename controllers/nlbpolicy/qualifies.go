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
// backend security-group rules are switched off and that does not opt out.
func Qualifies(svc *corev1.Service, manageAll bool) bool {
	if svc.DeletionTimestamp != nil || !lbc.IsNLB(svc) {
		return false
	}
	switch svc.Annotations[annotations.NLBPolicy] {
	case annotations.Enabled:
		return true
	case annotations.Disabled:
		return false
	}
	return manageAll && !lbc.BackendRulesManaged(svc)
}

func notQualifyingReason(svc *corev1.Service) string {
	switch {
	case svc.DeletionTimestamp != nil:
		return "Service deleted"
	case !lbc.IsNLB(svc):
		return "no longer an NLB Service"
	default:
		return "opted out"
	}
}
