package nlbpolicy

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netpolicy"
)

// networkPolicyEvents maps NetworkPolicy events to the Services they
// concern: its own Service for a policy the controller wrote, and every
// managed Service of its namespace whose pods it may select (any other
// policy there makes them refused; a sibling's ports are left closed by
// theirs).
//
// The event of the controller's own write is not reconciled again for its
// owner (ownWrites: that reconcile acted on everything it holds), but it
// still reaches the owner's siblings: a Service brought up beside another
// over the same pods is held until the other's policy stops opening its
// ports, and the other learns of it only from this event. (With the
// own-writes predicate in front of the whole watch, as before, the second
// Service stayed held for good whenever the event came after the write was
// recorded.) An update concerns the Services of the old version as well as
// the new, as handler.EnqueueRequestsFromMapFunc's do.
func (r *Reconciler) networkPolicyEvents() handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	add := func(q queue, reqs []reconcile.Request) {
		for _, req := range reqs {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) {
			r.own.seen(e.Object)
			add(q, r.networkPolicyConcerns(ctx, e.Object, r.own.own("", e.Object)))
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			own := r.own.own(e.ObjectOld.GetResourceVersion(), e.ObjectNew)
			add(q, r.networkPolicyConcerns(ctx, e.ObjectOld, own))
			add(q, r.networkPolicyConcerns(ctx, e.ObjectNew, own))
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			r.own.forget(e.Object)
			add(q, r.networkPolicyConcerns(ctx, e.Object, false))
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q queue) {
			add(q, r.networkPolicyConcerns(ctx, e.Object, false))
		},
	}
}

// networkPolicyConcerns are the Services a NetworkPolicy concerns (see
// networkPolicyEvents); own leaves out the Service the controller wrote it
// for.
func (r *Reconciler) networkPolicyConcerns(ctx context.Context, o client.Object, own bool) []reconcile.Request {
	var out []reconcile.Request
	owner := ""
	if l := o.GetLabels(); l[annotations.ManagedBy] == annotations.NLBPolicyManager && l[annotations.OwnerName] != "" {
		owner = l[annotations.OwnerName]
		if !own {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: l[annotations.OwnerNamespace], Name: owner}})
		}
	}
	np, ok := o.(*networkingv1.NetworkPolicy)
	if !ok {
		return out
	}
	var list corev1.ServiceList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing the Services a NetworkPolicy may concern", "namespace", o.GetNamespace())
		return out
	}
	for i := range list.Items {
		svc := &list.Items[i]
		if controllerutil.ContainsFinalizer(svc, Finalizer) && svc.Name != owner && netpolicy.CouldSelect(np.Spec.PodSelector, svc.Spec.Selector) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)})
		}
	}
	return out
}
