package nlbpolicy_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/localplane"
)

// The deployment manifests apply cleanly to a real API server (server-side
// dry run), and their RBAC is enough for the controller to do its whole job
// as its ServiceAccount, leader election included, while denying it
// anything else.
func TestDeploymentManifests(t *testing.T) {
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
	// RBAC for real, then the controller as its ServiceAccount.
	if err := p.ApplyManifests(ctx, localplane.RBAC(objs), false); err != nil {
		t.Fatal(err)
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

	startControllerAs(t, p, as, false, ctrl.Options{
		LeaderElection: true, LeaderElectionID: "nlb-policy-controller.telemetry-platform.io",
		LeaderElectionNamespace: "telemetry-system",
	})
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
	if err := admin.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "clean-up under the ServiceAccount", func() (bool, string) {
		ps, _ := owned(t, admin, svc)
		_, exists := get(t, admin, svc)
		return len(ps) == 0 && !exists, ""
	})
}
