package nlbpolicy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// The deployment manifests apply cleanly to a real API server (server-side
// dry run), and their RBAC is enough for the controller to do its whole job
// as its ServiceAccount, leader election included, while denying it
// anything else.
func TestDeploymentManifests(t *testing.T) {
	t.Parallel() // on a plane of its own
	p := localplane.New(t, localplane.Options{Nodes: 1})
	admin, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "nlb-policy-controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 7 {
		t.Fatalf("only %d objects", len(objs))
	}
	if err := p.ApplyManifests(ctx, objs, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	// RBAC and the admission policy for real, then the controller as its ServiceAccount.
	if err := p.ApplyManifests(ctx, localplane.RBAC(objs), false); err != nil {
		t.Fatal(err)
	}
	var admission []*unstructured.Unstructured
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
			admission = append(admission, o)
		}
	}
	if len(admission) != 8 {
		t.Fatalf("%d admission objects in the manifest, want four policies (Service writes, Calico writes, NetworkPolicy writes, the acknowledgement) and their bindings", len(admission))
	}
	as := p.ServiceAccountConfig("telemetry-system", "nlb-policy-controller")
	sa, err := client.New(as, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount must not read Secrets (is RBAC enforced?): %v", err)
	}
	if err := sa.Create(ctx, &corev1.ConfigMap{ObjectMeta: objectMeta("default", "x")}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount must not create ConfigMaps: %v", err)
	}
	// Tier access is scoped to the product's tier.
	saCalico, err := client.New(as, client.Options{Scheme: kubeapi.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := saCalico.Get(ctx, client.ObjectKey{Name: "default"}, &calicov3.Tier{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount must not read other tiers: %v", err)
	}
	if err := p.CreateProductTier(ctx); err != nil {
		t.Fatal(err)
	}
	// Calico's tiered-RBAC webhook runs in the plane: policies only in the product's tier.
	policy := func(name, tier string) *calicov3.GlobalNetworkPolicy {
		return &calicov3.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: calicov3.GlobalNetworkPolicySpec{Tier: tier, Selector: "has(x)", Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress}}}
	}
	if err := saCalico.Create(ctx, policy("probe-default", "default")); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount must not write policies in the default tier: %v", err)
	}
	if err := saCalico.Create(ctx, policy("probe-own", nlbpolicy.DefaultTier)); err != nil {
		t.Fatalf("the ServiceAccount cannot write a policy in its own tier: %v", err)
	}
	if err := saCalico.Delete(ctx, policy("probe-own", nlbpolicy.DefaultTier)); err != nil {
		t.Fatal(err)
	}
	// The RBAC the manifests had before the tier rules: refused by Calico.
	old := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "untiered"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"projectcalico.org"}, Resources: []string{"globalnetworkpolicies", "globalnetworksets"},
		Verbs: []string{"get", "list", "watch", "create", "update", "delete"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "untiered"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "untiered"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: "untiered"}}}
	for _, o := range []client.Object{old, binding} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	untiered, err := client.New(p.ServiceAccountConfig("default", "untiered"), client.Options{Scheme: kubeapi.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Calico refusing a ServiceAccount without tier rights", func() (bool, string) {
		err := untiered.Create(ctx, policy("probe-untiered", nlbpolicy.DefaultTier))
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "tier"), fmt.Sprint(err)
	})

	// The admission policies only now: they refuse a policy outside the
	// product's tier too (and one not named nlb-*), as soon as the API server
	// enforces them, which would race the RBAC checks above for which
	// refuses first.
	if err := p.ApplyManifests(ctx, admission, false); err != nil {
		t.Fatal(err)
	}
	startControllerAs(t, p, as, false, nlbpolicy.WithLeaderElection(ctrl.Options{}, "telemetry-system"))
	svc := service("default", "flows")
	if err := admin.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policies written under the ServiceAccount", func() (bool, string) {
		ps, _ := owned(t, admin, svc)
		return len(ps) == 2, ""
	})
	// Events are written too: the controller's (events.k8s.io) and leader
	// election's (core, on the Lease) would be silently dropped if forbidden.
	eventually(t, "a PoliciesApplied Event", func() (bool, string) {
		var evs eventsv1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(evs.Items, func(e eventsv1.Event) bool { return e.Reason == "PoliciesApplied" }), ""
	})
	eventually(t, "a LeaderElection Event", func() (bool, string) {
		var evs corev1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace("telemetry-system")); err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool { return e.Reason == "LeaderElection" }), ""
	})
	// The admission policy: the ServiceAccount may change its own annotation
	// and finalizer on a Service, nothing else, whatever its RBAC says.
	saPatch := func(mutate func(*corev1.Service)) error {
		got := &corev1.Service{}
		if err := sa.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
			return err
		}
		patch := client.MergeFrom(got.DeepCopy())
		mutate(got)
		return sa.Patch(ctx, got, patch)
	}
	// Each try a change the Service does not already hold: a try that landed
	// before the API server enforced the policy would otherwise make the
	// next identical one no change at all, which the policy rightly admits.
	try := 0
	eventually(t, "the admission policy refusing a spec change by the controller", func() (bool, string) {
		try++
		err := saPatch(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{fmt.Sprintf("0.0.0.0/%d", try%32)} })
		return apierrors.IsInvalid(err) || apierrors.IsForbidden(err), fmt.Sprint(err)
	})
	if err := saPatch(func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Disabled }); err == nil ||
		!strings.Contains(err.Error(), "may change only its own annotation") {
		t.Fatalf("the controller changed another annotation: %v", err)
	}
	if err := saPatch(func(s *corev1.Service) { s.Finalizers = append(s.Finalizers, "example.com/other") }); err == nil {
		t.Fatal("the controller added a foreign finalizer")
	}
	if err := saPatch(func(s *corev1.Service) { s.Annotations[annotations.Enforced] = `{"digest":"","problem":"probe"}` }); err != nil {
		t.Fatalf("the controller cannot write its own annotation: %v", err)
	}

	if err := admin.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "clean-up under the ServiceAccount", func() (bool, string) {
		ps, _ := owned(t, admin, svc)
		_, exists := get(t, admin, svc)
		return len(ps) == 0 && !exists, ""
	})
}
