package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/awsfaults"
)

// TestAccNLBIngressAWSFaults, with the real AWS Load Balancer Controller:
// AWS failing mid-apply never wedges the state
// nor leaks: a create whose rules cannot be written fails, saving what it
// made; an update whose revocation fails keeps the rules the state says;
// 30% of all calls throttled still converges (the SDK retries); with AWS
// healthy again the next apply converges, the plan is empty, and destroy
// leaves nothing in AWS.
func TestAccNLBIngressAWSFaults(t *testing.T) {
	t.Parallel()
	p, c := ingressEnvRealLBC(t, "faults")
	ctx := context.Background()
	faults := awsfaults.Start(t, p.AWS.Endpoint)
	ec := ec2.NewFromConfig(p.AWS.Config())
	viaFaults := func(sources string) string {
		cfg := ingressConfig(p, "faults", sources, "")
		for _, svc := range []string{"ec2  ", "elbv2", "sts  "} {
			cfg = strings.Replace(cfg, fmt.Sprintf("%s = %q", svc, p.AWS.Endpoint), fmt.Sprintf("%s = %q", svc, faults.URL), 1)
		}
		return cfg
	}
	if cfg := viaFaults(`["192.0.2.0/24"]`); strings.Contains(cfg, p.AWS.Endpoint) {
		t.Fatalf("the provider block still reaches moto directly:\n%s", cfg)
	}
	addr := "telemetry_nlb_ingress.flows"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			t.Logf("faults injected: %v", faults.Injected())
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "faults", Name: "flows"}, svc); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service left behind (%v)", err)
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "faults", "flows")
		},
		Steps: []resource.TestStep{
			{ // rules cannot be added: the create fails after the Service and the group exist
				PreConfig:   func() { faults.Set(0, "AuthorizeSecurityGroupIngress") },
				Config:      viaFaults(`["192.0.2.0/24"]`),
				ExpectError: regexp.MustCompile(`(?s)Cannot write the security-group rules.*UnauthorizedOperation`),
			},
			{ // AWS healthy: the tainted ingress is replaced and converges
				PreConfig: func() { faults.Set(0) },
				Config:    viaFaults(`["192.0.2.0/24"]`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				},
			},
			{ // narrowing fails at the revocation: nothing is widened, the apply fails
				PreConfig:   func() { faults.Set(0, "RevokeSecurityGroupIngress") },
				Config:      viaFaults(`["192.0.2.0/25"]`),
				ExpectError: regexp.MustCompile(`(?s)Cannot revoke security-group rules.*UnauthorizedOperation`),
			},
			{ // throttled at 30%: retried, converges
				PreConfig: func() { faults.Set(0.3) },
				Config:    viaFaults(`["192.0.2.0/25"]`),
			},
			{ // healthy again: an empty plan
				PreConfig: func() { faults.Set(0) },
				Config:    viaFaults(`["192.0.2.0/25"]`),
				PlanOnly:  true,
			},
		},
	})
}
