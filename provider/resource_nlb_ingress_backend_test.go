package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
)

// TestAccNLBIngressPolicyBackend: policy_backend through the real CLI and
// the real nlb-policy controller (calico by default, networkpolicy
// allowed). The ingress is enforced by a NetworkPolicy, then by Calico, then
// by the controller's default, each switch acknowledged with the other
// backend's objects gone and the plan empty; imported, the attribute reads
// back. Beside a namespace's own default deny the networkpolicy backend is
// refused and the apply fails at once naming it (not at its timeout), and
// the next apply, the deny gone, converges.
func TestAccNLBIngressPolicyBackend(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "backends")
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbcStandIn.Stop()
	addr := "telemetry_nlb_ingress.flows"
	npKey := client.ObjectKey{Namespace: "backends", Name: nlbpolicy.NetworkPolicyName("backends", "flows")}
	// enforcedBy checks which backend's objects the cluster holds for the ingress.
	enforcedBy := func(want nlbpolicy.Backend) resource.TestCheckFunc {
		return func(*terraform.State) error {
			err := c.Get(ctx, npKey, &networkingv1.NetworkPolicy{})
			if (want == nlbpolicy.BackendNetworkPolicy) != (err == nil) {
				return fmt.Errorf("enforced by %s, but the NetworkPolicy: %v", want, err)
			}
			var gnps calicov3.GlobalNetworkPolicyList
			if err := c.List(ctx, &gnps, client.MatchingLabels{annotations.OwnerNamespace: "backends", annotations.OwnerName: "flows"}); err != nil {
				return err
			}
			if (want == nlbpolicy.BackendCalico) != (len(gnps.Items) > 0) {
				return fmt.Errorf("enforced by %s, but %d Calico policies", want, len(gnps.Items))
			}
			return nil
		}
	}
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "backends", Name: "default-deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	var failedAt time.Time
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{
				Config: ingressConfig(p, "backends", `["192.0.2.0/24"]`, `policy_backend = "networkpolicy"`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("managed_annotations").AtMapKey(annotations.PolicyBackend),
						knownvalue.StringExact("networkpolicy")),
				},
				Check: enforcedBy(nlbpolicy.BackendNetworkPolicy),
			},
			{
				ResourceName: addr, ImportState: true, ImportStateId: "backends/flows", ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"timeouts", "wait_for_load_balancer", "allowed_sources"},
			},
			{
				Config: ingressConfig(p, "backends", `["192.0.2.0/24"]`, `policy_backend = "calico"`),
				Check:  enforcedBy(nlbpolicy.BackendCalico),
			},
			{ // unset: the controller's default (calico here), the annotation gone
				Config: ingressConfig(p, "backends", `["192.0.2.0/24"]`, ""),
				Check: resource.ComposeTestCheckFunc(enforcedBy(nlbpolicy.BackendCalico), func(*terraform.State) error {
					svc := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: "backends", Name: "flows"}, svc); err != nil {
						return err
					}
					if v, ok := svc.Annotations[annotations.PolicyBackend]; ok {
						return fmt.Errorf("the annotation stayed: %q", v)
					}
					return nil
				}),
			},
			{ // beside the namespace's default deny: refused, at once
				PreConfig: func() {
					if err := c.Create(ctx, deny.DeepCopy()); err != nil {
						t.Fatal(err)
					}
					failedAt = time.Now()
				},
				Config:      ingressConfig(p, "backends", `["192.0.2.0/24"]`, `policy_backend = "networkpolicy"`+"\n  enforcement_timeout = \"5m\""),
				ExpectError: regexp.MustCompile(`(?s)refuses Service backends/flows as configured.*default-deny`),
			},
			{ // the deny gone: the same configuration converges
				PreConfig: func() {
					if since := time.Since(failedAt); since > time.Minute {
						t.Errorf("the refused apply failed %s after it began, not at once", since)
					}
					if err := c.Delete(ctx, deny.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
						t.Fatal(err)
					}
				},
				Config: ingressConfig(p, "backends", `["192.0.2.0/24"]`, `policy_backend = "networkpolicy"`),
				Check:  enforcedBy(nlbpolicy.BackendNetworkPolicy),
			},
		},
	})
}
