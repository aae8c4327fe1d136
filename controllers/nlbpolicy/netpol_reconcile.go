package nlbpolicy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// The NetworkPolicy backend's reconcile: the same loop as Calico's (the
// finalizer, the sources, the acknowledgement after the programming grace),
// with DesiredNetworkPolicy's model and one object to write.

// reconcileNetworkPolicy enforces a Service that qualifies, carries the
// finalizer and chose the NetworkPolicy backend.
func (r *Reconciler) reconcileNetworkPolicy(ctx context.Context, req reconcile.Request, svc *corev1.Service) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	have, others, err := r.networkPolicies(ctx, svc)
	if err != nil {
		return reconcile.Result{}, err
	}
	in, resolveErr := r.resolve(ctx, svc)
	if resolveErr != nil {
		return r.unresolved(ctx, svc, resolveErr, have != nil)
	}
	in.Services = r.siblingOwners(ctx, svc, others)
	if in.TargetPortNumbers, err = r.targetPortNumbers(ctx, svc, in.Services); err != nil {
		return reconcile.Result{}, err
	}
	out := DesiredNetworkPolicy(in, others)
	if out.Refused != "" {
		r.report(svc, reasons.BackendRefused, append(out.Problems, out.Refused))
		if out.Beside && have != nil {
			// Beside another policy selecting the pods, this one could only
			// widen what that one admits: it keeps the pods isolated and
			// admits nothing. Elsewhere (a target port renamed) it stays,
			// keeping the pods as closed as they were.
			if _, err := r.ensure(ctx, out.Closed, have); err != nil {
				return reconcile.Result{}, fmt.Errorf("closing the NetworkPolicy beside another: %w", err)
			}
		}
		return reconcile.Result{}, r.acknowledge(ctx, svc, ack.Ack{Problem: out.Refused, Refused: ack.Digest(svc)})
	}
	r.report(svc, reasons.InvalidInput, out.Problems)
	if out.Waiting != "" {
		logger.V(1).Info("waiting", "reason", out.Waiting)
		if err := r.acknowledge(ctx, svc, ack.Ack{Problem: "waiting: " + out.Waiting}); err != nil {
			return reconcile.Result{}, fmt.Errorf("withdrawing the acknowledgement (waiting): %w", err)
		}
		return reconcile.Result{RequeueAfter: waitRequeue}, nil
	}
	var current client.Object
	if have != nil {
		current = have
	}
	writes, err := r.ensure(ctx, out.Policy, current)
	if err != nil {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.PoliciesNotApplied, "Reconcile", "%s", truncate(err.Error(), 1000))
		ackErr := r.acknowledge(ctx, svc, ack.Ack{Problem: "NetworkPolicy not applied: " + truncate(err.Error(), 500)})
		return reconcile.Result{}, errors.Join(fmt.Errorf("applying the NetworkPolicy: %w", err), ackErr)
	}
	if writes > 0 {
		r.wrote(req.NamespacedName, out.Sources.Len())
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.PoliciesApplied, "Reconcile",
			"NetworkPolicy %s written: %d allowed source nets", out.Policy.Name, out.Sources.Len())
		logger.Info("NetworkPolicy applied", "name", out.Policy.Name, "sources", out.Sources.Len())
	}
	if out.Hold != "" {
		// The sibling's own reconcile (its policy's event brings this one
		// back) narrows it; the requeue is a backstop.
		logger.V(1).Info("waiting", "reason", out.Hold)
		if err := r.acknowledge(ctx, svc, ack.Ack{Problem: "waiting: " + out.Hold}); err != nil {
			return reconcile.Result{}, fmt.Errorf("withdrawing the acknowledgement (sibling): %w", err)
		}
		return reconcile.Result{RequeueAfter: waitRequeue}, nil
	}
	enforced := ack.Ack{Digest: ack.Digest(svc), Problem: truncate(strings.Join(out.Problems, "; "), 500), Policies: []string{out.Policy.Name}}
	r.Metrics.observe(svc, 1, out.Sources.Len(), len(in.HealthCheckCIDRs))
	// A sibling that narrowed for this Service's ports a moment ago: the
	// dataplane programs that too before this one is acknowledged.
	var siblings []types.NamespacedName
	for _, sib := range out.Siblings {
		siblings = append(siblings, types.NamespacedName{Namespace: svc.Namespace, Name: sib})
	}
	return r.enforced(ctx, req, svc, enforced, BackendNetworkPolicy, writes > 0, out.Sources.Len(), siblings...)
}

// networkPolicies reads, from the cache, a Service's own NetworkPolicy (nil
// when there is none) and the others of its namespace that may select its
// pods (the only ones DesiredNetworkPolicy weighs).
func (r *Reconciler) networkPolicies(ctx context.Context, svc *corev1.Service) (*networkingv1.NetworkPolicy, []networkingv1.NetworkPolicy, error) {
	// Read-only (DesiredNetworkPolicy and ensure only read them): not
	// deep-copied, or every reconcile would copy every policy of the
	// namespace (most of the controller's CPU at 1,000 Services).
	var list networkingv1.NetworkPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(svc.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing the NetworkPolicies of namespace %s: %w", svc.Namespace, err)
	}
	own := NetworkPolicyName(svc.Namespace, svc.Name)
	var have *networkingv1.NetworkPolicy
	var others []networkingv1.NetworkPolicy
	for i := range list.Items {
		np := &list.Items[i]
		switch {
		case np.Name == own:
			have = np
		case netpolicy.AppliesToIngress(np) && netpolicy.CouldSelect(np.Spec.PodSelector, svc.Spec.Selector):
			others = append(others, *np)
		}
	}
	return have, others, nil
}

// siblingOwners reads, from the cache, the Services that the controller's
// other policies among others name as their owners.
func (r *Reconciler) siblingOwners(ctx context.Context, svc *corev1.Service, others []networkingv1.NetworkPolicy) map[string]*corev1.Service {
	out := map[string]*corev1.Service{}
	for i := range others {
		if !isSibling(&others[i], svc) {
			continue
		}
		name := others[i].Labels[annotations.OwnerName]
		owner := &corev1.Service{}
		if _, seen := out[name]; !seen && r.Client.Get(ctx, client.ObjectKey{Namespace: svc.Namespace, Name: name}, owner) == nil {
			out[name] = owner
		}
	}
	return out
}

// targetPortNumbers reads, from the cached EndpointSlices, the numbers
// the named target ports of svc and of the siblings' owners resolve to
// (Input.TargetPortNumbers): a slice's ports are a Service port's name and
// the number its endpoints give the target port.
func (r *Reconciler) targetPortNumbers(ctx context.Context, svc *corev1.Service, owners map[string]*corev1.Service) (map[string]map[string][]uint16, error) {
	out := map[string]map[string][]uint16{}
	for _, s := range append([]*corev1.Service{svc}, slices.Collect(maps.Values(owners))...) {
		if !hasNamedTargetPort(s) {
			continue
		}
		var list discoveryv1.EndpointSliceList
		if err := r.Client.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Name},
			client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing the EndpointSlices of Service %s/%s: %w", s.Namespace, s.Name, err)
		}
		out[s.Name] = resolvedPorts(list.Items)
	}
	return out, nil
}

func (r *Reconciler) deleteNetworkPolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	if err := r.Client.Delete(ctx, np); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting NetworkPolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
	r.Metrics.write("NetworkPolicy", "delete")
	return nil
}

// retire deletes what the backends other than keep wrote for a Service:
// called once keep's objects are enforced, so a Service switched between
// backends is never without either.
func (r *Reconciler) retire(ctx context.Context, svc *corev1.Service, keep Backend) error {
	for _, b := range r.Options.allowed() {
		if b == keep {
			continue
		}
		if err := r.deleteOwnedBy(ctx, b, svc.Namespace, svc.Name, true); err != nil {
			return fmt.Errorf("removing the %s backend's objects after a switch to %s: %w", b, keep, err)
		}
	}
	return nil
}

// deleteOwnedBy deletes what one backend wrote for a Service; switched: the
// Service's other backend enforces it already (see delete).
func (r *Reconciler) deleteOwnedBy(ctx context.Context, b Backend, namespace, name string, switched bool) error {
	switch b {
	case BackendCalico:
		policies, sets, err := r.owned(ctx, namespace, name)
		if err != nil {
			return err
		}
		_, err = r.delete(ctx, policies, sets, switched)
		return err
	case BackendNetworkPolicy:
		np := &networkingv1.NetworkPolicy{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: NetworkPolicyName(namespace, name)}, np)
		if err != nil {
			return client.IgnoreNotFound(err)
		}
		return r.deleteNetworkPolicy(ctx, np)
	}
	return nil
}

// deleteOwned deletes a Service's objects, of every backend the controller
// runs, each in its closed order.
func (r *Reconciler) deleteOwned(ctx context.Context, namespace, name string) error {
	for _, b := range r.Options.allowed() {
		if err := r.deleteOwnedBy(ctx, b, namespace, name, false); err != nil {
			return err
		}
	}
	return nil
}

// endpointSliceOwner maps an EndpointSlice event to its Service when that
// is managed and has a named target port, whose numbers come from its
// slices (its siblings follow when its policy changes).
func (r *Reconciler) endpointSliceOwner() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
		key := types.NamespacedName{Namespace: o.GetNamespace(), Name: name}
		svc := &corev1.Service{}
		if err := r.Client.Get(ctx, key, svc); err != nil || !controllerutil.ContainsFinalizer(svc, Finalizer) || !hasNamedTargetPort(svc) {
			return nil
		}
		return []reconcile.Request{{NamespacedName: key}}
	})
}
