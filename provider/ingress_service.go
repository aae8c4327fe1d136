package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// The Kubernetes side of telemetry_nlb_ingress: writing its Service, waiting
// for the nlb-policy controller's acknowledgement, and explaining what holds
// a Service that will not go.

// writeService applies the Service as the provider's field manager, then
// removes the provider's annotation keys it does not render: server-side
// apply leaves keys other managers wrote, so one added by hand stays
// otherwise.
// It returns the provider's annotations as written.
func writeService(ctx context.Context, c client.Client, svc *corev1ac.ServiceApplyConfiguration) (map[string]string, error) {
	return applyService(ctx, c, svc, managedOf)
}

// applyService is writeService for a resource whose own annotation keys are
// the ones managed keeps of a map.
func applyService(ctx context.Context, c client.Client, svc *corev1ac.ServiceApplyConfiguration,
	managed func(map[string]string) map[string]string) (map[string]string, error) {
	// Read before the apply, which fills svc with the object as the server
	// holds it (hand-added keys included).
	rendered := managed(svc.Annotations)
	namespace, name := *svc.Namespace, *svc.Name
	if err := c.Apply(ctx, svc, client.FieldOwner(annotations.ProviderManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("applying Service %s/%s: %w", namespace, name, err)
	}
	return rendered, removeStrayAnnotations(ctx, c, namespace, name, rendered, managed)
}

// removeStrayAnnotations deletes the provider's annotation keys that are on
// the Service but not rendered (added or left by hand).
func removeStrayAnnotations(ctx context.Context, c client.Client, namespace, name string, rendered map[string]string,
	managed func(map[string]string) map[string]string) error {
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, svc); err != nil {
		return fmt.Errorf("reading Service %s/%s: %w", namespace, name, err)
	}
	patch := client.MergeFrom(svc.DeepCopy())
	stray := false
	for k := range managed(svc.Annotations) {
		if _, ok := rendered[k]; !ok {
			delete(svc.Annotations, k)
			stray = true
		}
	}
	if !stray {
		return nil
	}
	if err := c.Patch(ctx, svc, patch); err != nil {
		return fmt.Errorf("removing hand-added annotations from Service %s/%s: %w", namespace, name, err)
	}
	return nil
}

// heldBy says which controller each finalizer on a Service waits for.
func heldBy(finalizers []string) string {
	var parts []string
	for _, f := range finalizers {
		switch f {
		case annotations.NLBPolicyFinalizer:
			parts = append(parts, fmt.Sprintf("the nlb-policy controller (finalizer %s) must be running to delete its policies (Calico policies or the NetworkPolicy)", f))
		case lbc.ServiceFinalizer:
			parts = append(parts, fmt.Sprintf("the AWS Load Balancer Controller (finalizer %s) must be running to delete the NLB", f))
		default:
			parts = append(parts, fmt.Sprintf("finalizer %s is held by another controller", f))
		}
	}
	if len(parts) == 0 {
		return "it has no finalizer left; its deletion has not completed yet"
	}
	return strings.Join(parts, "; ")
}

// refusalSettle is how long the controller's refusal of a Service's current
// spec must stand before an apply gives up on it. A refusal can rest on
// other objects (a namespace's NetworkPolicy) that changed a moment ago:
// the controller re-decides within a second of such a change, so one that
// still stands after this is the controller's answer.
const refusalSettle = 10 * time.Second

// waitForEnforcement waits until the nlb-policy controller acknowledges the
// Service's current spec, and says what is likely wrong when it does not: at
// once (refusalSettle) when the controller refuses that spec.
func waitForEnforcement(ctx context.Context, c client.Client, namespace, name string, timeout time.Duration) error {
	return waitForAcknowledgement(ctx, c, namespace, name, timeout, "No security-group rule was added, so the NLB admits no new source.")
}

// waitForAcknowledgement is waitForEnforcement for any load balancer; held
// says, in the errors, what stays closed meanwhile.
func waitForAcknowledgement(ctx context.Context, c client.Client, namespace, name string, timeout time.Duration, held string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	svc := &corev1.Service{}
	refused, refusedSince := "", time.Time{}
	var incompatible error
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, svc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if incompatible = ack.Compatible(svc); incompatible != nil {
			return true, nil // waiting cannot help
		}
		problem, ok := ack.RefusedNow(svc)
		switch {
		case !ok:
			refused, refusedSince = "", time.Time{}
		case refusedSince.IsZero():
			refused, refusedSince = problem, time.Now()
		case time.Since(refusedSince) >= refusalSettle:
			return true, nil
		}
		return ack.Current(svc), nil
	})
	if incompatible != nil && err == nil {
		return fmt.Errorf("%w. %s", incompatible, strings.TrimSuffix(held, "."))
	}
	if refused != "" && err == nil {
		// Refused for this very spec, and still after refusalSettle:
		// waiting longer changes nothing.
		return fmt.Errorf("the nlb-policy controller refuses Service %s/%s as configured: %s. %s Fix what it names and "+
			"apply again (kubectl -n %s describe service %s shows its %s events).", namespace, name, refused, held, namespace, name,
			reasons.BackendRefused)
	}
	if err == nil {
		return nil
	}
	last := "none"
	if a, ok := ack.Of(svc); ok {
		last = fmt.Sprintf("%q at %s", a.Problem, a.Time.Format(time.RFC3339))
		if a.Digest != "" && a.Problem == "" {
			last = fmt.Sprintf("of an older spec, at %s", a.Time.Format(time.RFC3339))
		}
	}
	return fmt.Errorf("the nlb-policy controller has not acknowledged policies for the current sources and ports of "+
		"Service %s/%s within %s (last acknowledgement: %s). %s Likely causes: the controller is not installed or not running (kubectl get pods -A -l "+
		"app.kubernetes.io/name=nlb-policy-controller); its ServiceAccount is refused by RBAC or Calico's tiered RBAC, or the "+
		"Calico CRDs are missing with the calico backend (its logs, and kubectl -n %s describe service %s for %s events); the Service "+
		"is not selected by it (annotation %s). Fix it and apply again, or raise enforcement_timeout.",
		namespace, name, timeout, last, held, namespace, name, reasons.PoliciesNotApplied, annotations.NLBPolicy)
}
