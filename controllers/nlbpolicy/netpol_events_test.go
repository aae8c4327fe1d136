package nlbpolicy

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestNetworkPolicyEventsReachSiblings: the event of a NetworkPolicy the
// controller itself wrote for one Service is not reconciled again for that
// Service (ownWrites), but it reaches the Service's siblings, whose hold
// waits on exactly that write: a second Service over the same pods is held
// until the first narrows its policy for the second's ports, and the first
// learns of the second only from the event of the second's policy. (A full
// run in CI once left the second Service held for good: the event arrived
// after the write was recorded, and neither Service was reconciled again.)
// A change by someone else reaches both, and an update reaches the Services
// the old version concerned as well as the new.
func TestNetworkPolicyEventsReachSiblings(t *testing.T) {
	mk := func(name string, selector map[string]string) *corev1.Service {
		return nlbService(ipTargets, func(s *corev1.Service) {
			s.Name, s.UID = name, types.UID(name+"-uid")
			s.Finalizers = []string{Finalizer}
			s.Spec.Selector = selector
		})
	}
	sflow, ipfix := mk("sflow", map[string]string{"app": "sfacctd"}), mk("ipfix", map[string]string{"app": "sfacctd"})
	other := mk("other", map[string]string{"app": "nfacctd"})
	r, _, _ := recordingReconciler(t, sflow, ipfix, other)
	out := DesiredNetworkPolicy(Input{Service: ipfix, HealthCheckCIDRs: []string{"10.0.0.0/24"}}, nil)
	np := out.Policy
	np.ResourceVersion = "7"
	h := r.networkPolicyEvents()
	queued := func(fire func(workqueue.TypedRateLimitingInterface[reconcile.Request])) []string {
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
		defer q.ShutDown()
		fire(q)
		var names []string
		for q.Len() > 0 {
			req, _ := q.Get()
			names = append(names, req.Name)
			q.Done(req)
		}
		slices.Sort(names)
		return names
	}
	ctx := context.Background()

	r.own.record("", np)
	if got := queued(func(q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		h.Create(ctx, event.CreateEvent{Object: np}, q)
	}); !slices.Equal(got, []string{"sflow"}) {
		t.Errorf("the controller's own create of %s's policy enqueued %v, want its sibling alone [sflow]", ipfix.Name, got)
	}

	edited := np.DeepCopy()
	edited.ResourceVersion = "9"
	if got := queued(func(q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		h.Update(ctx, event.UpdateEvent{ObjectOld: np, ObjectNew: edited}, q)
	}); !slices.Equal(got, []string{"ipfix", "sflow"}) {
		t.Errorf("someone else's edit of the policy enqueued %v, want its owner and its sibling [ipfix sflow]", got)
	}

	moved := edited.DeepCopy()
	moved.ResourceVersion = "10"
	moved.Spec.PodSelector.MatchLabels = map[string]string{"app": "nfacctd"}
	if got := queued(func(q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		h.Update(ctx, event.UpdateEvent{ObjectOld: edited, ObjectNew: moved}, q)
	}); !slices.Equal(got, []string{"ipfix", "other", "sflow"}) {
		t.Errorf("an edit moving the policy to other pods enqueued %v, want the Services of the old pods and of the new [ipfix other sflow]", got)
	}

	if got := queued(func(q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		h.Delete(ctx, event.DeleteEvent{Object: moved}, q)
	}); !slices.Equal(got, []string{"ipfix", "other"}) {
		t.Errorf("the policy's deletion enqueued %v, want its owner and the Services of its pods [ipfix other]", got)
	}
}
