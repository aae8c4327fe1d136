package provider

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
)

// TestAccNLBIngressSharedNodeRule: two ingresses that need the same rule of
// the nodes' group (no NLB security groups, ip targets, the same port and
// source; AWS keeps one rule for both) both converge (the second's plan showed
// the rule to add for ever), and destroying one leaves the rule the other
// needs (it revoked it, refusing the other's exporters until its next apply).
func TestAccNLBIngressSharedNodeRule(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ensureNamespaces(t, c, "shared")
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerControllerWithoutNLBSecurityGroups(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbcStandIn.Stop()
	ingress := func(name string) string {
		return fmt.Sprintf(`
resource "telemetry_nlb_ingress" %[1]q {
  name                   = %[1]q
  namespace              = "shared"
  selector               = { app = %[1]q }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = ["192.0.2.0/24"]
  target_type            = "ip"
  nlb_security_group     = false
  node_security_group_id = %[2]q
}`, name, p.AWS.NodeSecurityGroupID)
	}
	ec := ec2.NewFromConfig(p.AWS.Config())
	// owners of the node group's rule UDP 6343 from 192.0.2.0/24.
	owners := func() ([]string, error) {
		out, err := ec.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{p.AWS.NodeSecurityGroupID}})
		if err != nil {
			return nil, err
		}
		for _, perm := range out.SecurityGroups[0].IpPermissions {
			if aws.ToString(perm.IpProtocol) != "udp" || aws.ToInt32(perm.FromPort) != 6343 {
				continue
			}
			for _, r := range perm.IpRanges {
				if aws.ToString(r.CidrIp) == "192.0.2.0/24" {
					return ruleOwners(aws.ToString(r.Description)), nil
				}
			}
		}
		return nil, nil
	}
	wantOwners := func(want ...string) resource.TestCheckFunc {
		return func(*terraform.State) error {
			got, err := owners()
			if err != nil {
				return err
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("the shared rule's owners are %v (description %s=...), want %v", got, annotations.IngressTag, want)
			}
			return nil
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{ // both applied: one rule, both named on it, and both plans empty after
				Config: providerConfig(p) + ingress("a") + ingress("b"),
				Check:  wantOwners("shared/a", "shared/b"),
			},
			{ // a destroyed: the rule stays for b
				Config: providerConfig(p) + ingress("b"),
				Check:  wantOwners("shared/b"),
			},
		},
		CheckDestroy: func(*terraform.State) error {
			if got, err := owners(); err != nil || len(got) != 0 {
				return fmt.Errorf("after destroy the rule is still there, owned by %v (%v)", got, err)
			}
			return nil
		},
	})
}
