package nlbpolicy

import (
	"context"
	"errors"
	"fmt"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// ErrFenceOpen is returned by CheckWriteFence when the controller's account
// can write what it must never write.
var ErrFenceOpen = errors.New("the nlb-policy controller's account is not fenced")

// fenceProbeName names the objects CheckWriteFence offers (dry run: nothing is
// stored).
const fenceProbeName = "nlb-write-fence-check"

// CheckWriteFence proves, before the controller writes anything, that what
// fences its account is in place, by offering the API server two policies it
// must refuse (dry run, so even a fence that is missing stores nothing):
//
//   - one in Calico's default tier, which Calico's tiered RBAC (its admission
//     webhook, or calico-apiserver) refuses to an account with rights in the
//     product's tier only. Calico's webhook is a separate install: without it
//     the account could write in every tier;
//   - one in the controller's own tier with an Allow rule, which the
//     admission policy telemetry-nlb-policy-controller-calico-writes refuses
//     (the controller writes only Pass and Deny rules).
//
// A fence missing returns an error wrapping ErrFenceOpen that names it and
// the next step; the binary does not start then. Other errors (the API server
// not answering) are returned as they are.
func CheckWriteFence(ctx context.Context, c client.Client, tier string) error {
	selector := DefaultOptions().HostEndpointSelector
	probe := func(tier string, action calicov3.Action) *calicov3.GlobalNetworkPolicy {
		return &calicov3.GlobalNetworkPolicy{
			TypeMeta: metav1.TypeMeta{APIVersion: calicov3.GroupVersionCurrent, Kind: calicov3.KindGlobalNetworkPolicy},
			ObjectMeta: metav1.ObjectMeta{Name: fenceProbeName,
				Labels: map[string]string{annotations.ManagedBy: annotations.NLBPolicyManager, calicoTierLabel: tier}},
			Spec: calicov3.GlobalNetworkPolicySpec{Tier: tier, Selector: selector,
				Types:   []calicov3.PolicyType{calicov3.PolicyTypeIngress},
				Ingress: []calicov3.Rule{{Action: action}}},
		}
	}
	for _, check := range []struct {
		policy *calicov3.GlobalNetworkPolicy
		fence  string
	}{
		{probe("default", calicov3.Deny), "Calico's tiered RBAC (the calico-webhooks admission webhook, or calico-apiserver): " +
			"install it; without it this account may write policies in every tier"},
		{probe(tier, calicov3.Allow), "the admission policy telemetry-nlb-policy-controller-calico-writes (deploy/ manifests, " +
			"Helm chart): apply it; without it this account may write Allow rules ahead of the cluster's own tiers"},
	} {
		err := c.Create(ctx, check.policy, client.DryRunAll)
		switch {
		case err == nil:
			return fmt.Errorf("%w: a policy %s in tier %s was accepted (dry run); missing: %s",
				ErrFenceOpen, actionOf(check.policy), check.policy.Spec.Tier, check.fence)
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
			// Refused, as it must be.
		default:
			return fmt.Errorf("checking the write fence (tier %s): %w", check.policy.Spec.Tier, err)
		}
	}
	return nil
}

func actionOf(p *calicov3.GlobalNetworkPolicy) string {
	return "with an " + string(p.Spec.Ingress[0].Action) + " rule"
}

// CheckNetworkPolicyFence is CheckWriteFence for the networkpolicy backend:
// it offers, in the namespace given, a NetworkPolicy named and labelled as
// the controller makes them but selecting every pod with a rule from
// anywhere (dry run), which the admission policy
// telemetry-nlb-policy-controller-networkpolicy-writes refuses. Accepted,
// this account could open any namespace's pods that their own policies
// close: the error wraps ErrFenceOpen and names the admission policy.
func CheckNetworkPolicyFence(ctx context.Context, c client.Client, namespace string) error {
	probe := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "nlb-" + fenceProbeName + suffixNetworkPolicy,
			Labels: map[string]string{annotations.ManagedBy: annotations.NLBPolicyManager}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	}
	err := c.Create(ctx, probe, client.DryRunAll)
	switch {
	case err == nil:
		return fmt.Errorf("%w: a NetworkPolicy selecting every pod of namespace %s with a rule admitting anything was accepted (dry run); "+
			"missing: the admission policy telemetry-nlb-policy-controller-networkpolicy-writes (deploy/nlb-policy-controller.yaml, "+
			"Helm chart): apply it; without it this account may open any pods that their namespace's policies close", ErrFenceOpen, namespace)
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
		return nil
	}
	return fmt.Errorf("checking the write fence (NetworkPolicy): %w", err)
}
