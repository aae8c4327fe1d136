package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
)

// benchBackend is what the convergence benchmark needs of a policy backend:
// the objects a bare client writes for a Service (the floor), how many of
// the counted kind each Service has and how to count them cheaply, how to
// compare what the controller wrote with the floor's, and whether a
// Service's object holds a source (an edit's latency).
type benchBackend struct {
	backend    nlbpolicy.Backend
	objects    func(b *testing.B, svc *corev1.Service, health []string) []client.Object
	perService int
	count      func(b *testing.B, c client.Client) int
	same       func(ctx context.Context, c client.Client, want []client.Object) error
	holds      func(ctx context.Context, c client.Client, svc *corev1.Service, net string) bool
}

var calicoBackend = benchBackend{
	backend: nlbpolicy.BackendCalico,
	objects: func(_ *testing.B, svc *corev1.Service, health []string) []client.Object {
		out := nlbpolicy.Desired(nlbpolicy.Input{Service: svc, HealthCheckCIDRs: health}, nlbpolicy.DefaultOptions())
		var objects []client.Object
		for _, s := range out.NetworkSets {
			objects = append(objects, s)
		}
		for _, p := range out.Policies {
			objects = append(objects, p)
		}
		return objects
	},
	perService: 2,
	count:      countPolicies,
	same:       sameObjects,
	holds: func(ctx context.Context, c client.Client, svc *corev1.Service, net string) bool {
		set := &calicov3.GlobalNetworkSet{}
		name := nlbpolicy.BaseName(svc.Namespace, svc.Name) + "-sources"
		return c.Get(ctx, client.ObjectKey{Name: name}, set) == nil && slices.Contains(set.Spec.Nets, net)
	},
}

var networkPolicyBackend = benchBackend{
	backend: nlbpolicy.BackendNetworkPolicy,
	objects: func(b *testing.B, svc *corev1.Service, health []string) []client.Object {
		out := nlbpolicy.DesiredNetworkPolicy(nlbpolicy.Input{Service: svc, HealthCheckCIDRs: health}, nil)
		if out.Policy == nil {
			b.Fatalf("%s: no NetworkPolicy (%s %s)", svc.Name, out.Refused, out.Waiting)
		}
		return []client.Object{out.Policy}
	},
	perService: 1,
	count: func(b *testing.B, c client.Client) int {
		b.Helper()
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(networkingv1.SchemeGroupVersion.WithKind("NetworkPolicyList"))
		return countList(b, c, list)
	},
	same: func(ctx context.Context, c client.Client, want []client.Object) error {
		var nps networkingv1.NetworkPolicyList
		if err := c.List(ctx, &nps); err != nil {
			return err
		}
		have := map[string]*networkingv1.NetworkPolicy{}
		for i := range nps.Items {
			have[nps.Items[i].Namespace+"/"+nps.Items[i].Name] = &nps.Items[i]
		}
		if len(have) != len(want) {
			return fmt.Errorf("%d NetworkPolicies, want %d", len(have), len(want))
		}
		for _, w := range want {
			w := w.(*networkingv1.NetworkPolicy)
			h := have[w.Namespace+"/"+w.Name]
			if h == nil || !equality.Semantic.DeepEqual(h.Spec, w.Spec) || !labelsIn(w.Labels, h.Labels) ||
				!equality.Semantic.DeepEqual(h.OwnerReferences, w.OwnerReferences) {
				return fmt.Errorf("NetworkPolicy %s/%s differs from what it must be", w.Namespace, w.Name)
			}
		}
		return nil
	},
	holds: func(ctx context.Context, c client.Client, svc *corev1.Service, net string) bool {
		np := &networkingv1.NetworkPolicy{}
		key := client.ObjectKey{Namespace: svc.Namespace, Name: nlbpolicy.NetworkPolicyName(svc.Namespace, svc.Name)}
		if c.Get(ctx, key, np) != nil || len(np.Spec.Ingress) == 0 {
			return false
		}
		return slices.ContainsFunc(np.Spec.Ingress[0].From, func(p networkingv1.NetworkPolicyPeer) bool {
			return p.IPBlock != nil && p.IPBlock.CIDR == net
		})
	},
}

// sameObjects compares every generated policy and network set with what it
// must be (the floor's objects): the whole spec and the controller's labels.
func sameObjects(ctx context.Context, c client.Client, want []client.Object) error {
	var policies calicov3.GlobalNetworkPolicyList
	var sets calicov3.GlobalNetworkSetList
	if err := c.List(ctx, &policies); err != nil {
		return err
	}
	if err := c.List(ctx, &sets); err != nil {
		return err
	}
	have := map[string]client.Object{}
	for i := range policies.Items {
		have["p/"+policies.Items[i].Name] = &policies.Items[i]
	}
	for i := range sets.Items {
		have["s/"+sets.Items[i].Name] = &sets.Items[i]
	}
	if len(have) != len(want) {
		return fmt.Errorf("%d generated objects, want %d", len(have), len(want))
	}
	for _, w := range want {
		switch w := w.(type) {
		case *calicov3.GlobalNetworkPolicy:
			h, ok := have["p/"+w.Name].(*calicov3.GlobalNetworkPolicy)
			if !ok || !equality.Semantic.DeepEqual(h.Spec, w.Spec) || !labelsIn(w.Labels, h.Labels) {
				return fmt.Errorf("GlobalNetworkPolicy %s differs from what it must be", w.Name)
			}
		case *calicov3.GlobalNetworkSet:
			h, ok := have["s/"+w.Name].(*calicov3.GlobalNetworkSet)
			if !ok || !equality.Semantic.DeepEqual(h.Spec, w.Spec) || !labelsIn(w.Labels, h.Labels) {
				return fmt.Errorf("GlobalNetworkSet %s differs from what it must be", w.Name)
			}
		}
	}
	return nil
}

func labelsIn(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// countPolicies counts the GlobalNetworkPolicies with a one-item metadata
// list (the API server counts the rest), so polling for convergence costs the
// API server next to nothing: a full list every 200 ms of 2,000 policies was
// a share of the time measured.
func countPolicies(b *testing.B, c client.Client) int {
	b.Helper()
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(calicov3.SchemeGroupVersion.WithKind("GlobalNetworkPolicyList"))
	return countList(b, c, list)
}

// countList counts the objects of a kind with a one-item metadata list.
func countList(b *testing.B, c client.Client, list *metav1.PartialObjectMetadataList) int {
	b.Helper()
	if err := c.List(context.Background(), list, client.Limit(1)); err != nil {
		b.Fatal(err)
	}
	n := len(list.Items)
	if rest := list.GetRemainingItemCount(); rest != nil {
		n += int(*rest)
	}
	return n
}
