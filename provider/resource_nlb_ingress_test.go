package provider

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// hundredSources are 100 non-adjacent /32s: they do not aggregate, so the
// per-source model needs a rule for each.
func hundredSources() string {
	var s []string
	for i := 0; i < 100; i++ {
		s = append(s, fmt.Sprintf("%q", fmt.Sprintf("198.51.100.%d/32", 2*i)))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func ingressConfig(p *localplane.Plane, namespace, sources, extra string) string {
	return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name      = "flows"
  namespace = %q
  selector  = { app = "sfacctd" }
  ports = [
    { name = "sflow", protocol = "UDP", port = 6343 },
    { name = "ipfix", protocol = "TCP_UDP", port = 4739, target_port = 4740 },
  ]
  allowed_sources        = %s
  scheme                 = "internet-facing"
  node_security_group_id = %q
  wait_for_load_balancer = true
%s
}
`, namespace, sources, p.AWS.NodeSecurityGroupID, extra)
}

// ownedRules counts the inbound permissions of a group (all of them, or
// those described as owned by the ingress).
func ownedRules(ctx context.Context, ec *ec2.Client, group, owner string) (int, error) {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range out.SecurityGroups[0].IpPermissions {
		for _, r := range p.IpRanges {
			if owner == "" || aws.ToString(r.Description) == owner {
				n++
			}
		}
		for _, r := range p.Ipv6Ranges {
			if owner == "" || aws.ToString(r.Description) == owner {
				n++
			}
		}
		for _, r := range p.UserIdGroupPairs {
			if owner == "" || aws.ToString(r.Description) == owner {
				n++
			}
		}
	}
	return n, nil
}

// coverHolds checks, from the rules in moto, that the frontend group admits
// every one of the 100 sources, no address outside 198.51.100.0/24, and
// exactly the reported number of addresses beyond the sources.
func coverHolds(ctx context.Context, ec *ec2.Client, group, reportedExtra string) error {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
	if err != nil {
		return err
	}
	var admitted []netip.Prefix
	for _, p := range out.SecurityGroups[0].IpPermissions {
		if aws.ToString(p.IpProtocol) != "udp" || aws.ToInt32(p.FromPort) != 6343 {
			continue
		}
		for _, r := range p.IpRanges {
			admitted = append(admitted, netip.MustParsePrefix(aws.ToString(r.CidrIp)))
		}
	}
	var b netipx.IPSetBuilder
	for _, p := range admitted {
		b.AddPrefix(p)
	}
	set, _ := b.IPSet()
	for i := 0; i < 100; i++ {
		if a := netip.AddrFrom4([4]byte{198, 51, 100, byte(2 * i)}); !set.Contains(a) {
			return fmt.Errorf("source %s not admitted by %v", a, admitted)
		}
	}
	pop := netip.MustParsePrefix("198.51.100.0/24")
	extra := -100
	for _, r := range set.Ranges() {
		if !pop.Contains(r.From()) || !pop.Contains(r.To()) {
			return fmt.Errorf("cover %v admits %s, outside the sources' /24", admitted, r)
		}
		extra += int(r.To().As4()[3]) - int(r.From().As4()[3]) + 1
	}
	if len(admitted) > 10 {
		return fmt.Errorf("cover %v has more than 10 prefixes", admitted)
	}
	if fmt.Sprint(extra) != reportedExtra {
		return fmt.Errorf("cover admits %d addresses beyond the sources in moto, the state says %s", extra, reportedExtra)
	}
	return nil
}

func TestAccNLBIngress(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "telemetry", "collectors")
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer func() {
		lbcStandIn.Stop()
		for _, err := range lbcStandIn.Errors() {
			t.Errorf("load balancer controller stand-in: %v", err)
		}
	}()
	ec := ec2.NewFromConfig(p.AWS.Config())
	addr := "telemetry_nlb_ingress.flows"
	var frontend string
	owner := ruleOwner("telemetry", "flows").description()
	// The ingress after the update step, which later steps keep.
	updated := ingressConfig(p, "telemetry", `["192.0.2.0/25", "192.0.2.128/25", "203.0.113.0/24"]`, `
  annotations = { "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval" = "10" }`)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			for _, ns := range []string{"telemetry", "collectors"} {
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "flows"}, &corev1.Service{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("Service %s/flows still exists (%v)", ns, err)
				}
				if n, err := ownedRules(ctx, ec, p.AWS.NodeSecurityGroupID, ruleOwner(ns, "flows").description()); err != nil || n != 0 {
					return fmt.Errorf("node group still has %d rules of %s/flows (%v)", n, ns, err)
				}
			}
			out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
				{Name: aws.String("tag-key"), Values: []string{annotations.IngressTag}}}})
			if err != nil || len(out.SecurityGroups) != 0 {
				return fmt.Errorf("frontend groups left: %v (%v)", out, err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{ // create: 100 sources, footprint bounded by ports, NLB found through ELBv2
				Config: ingressConfig(p, "telemetry", hundredSources(), ""),
				ConfigStateChecks: []statecheck.StateCheck{

					// 100 sources x (1 + 2) protocols + 3 subnets x 2 ports.
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("security_group_rules_per_source_model"), knownvalue.Int64Exact(306)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("source_ranges"), knownvalue.ListSizeExact(100)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("vpc_id"), knownvalue.StringExact(p.AWS.VPCID)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("subnet_cidrs"), knownvalue.ListSizeExact(3)),
					// moto names network load balancers "app/" in their ARNs; AWS says "net/".
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("load_balancer_arn"), knownvalue.StringRegexp(regexp.MustCompile(`^arn:aws:elasticloadbalancing:.*loadbalancer/(net|app)/k8s-telemetry-flows-`))),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ports").AtSliceIndex(0).AtMapKey("target_port"), knownvalue.Int64Exact(6343)),
				},
				Check: func(s *terraform.State) error {
					frontend = s.RootModule().Resources[addr].Primary.Attributes["frontend_security_group_id"]
					svc := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc); err != nil {
						return err
					}
					if !lbc.IsNLB(svc) || lbc.BackendRulesManaged(svc) || svc.Annotations[lbc.SecurityGroups] != frontend ||
						len(svc.Spec.LoadBalancerSourceRanges) != 100 || len(svc.Spec.Ports) != 3 {
						return fmt.Errorf("Service not as expected: %+v", svc)
					}
					// 3 listener protocol-ports x the cover (at most 10 prefixes), and 2 node rules.
					attrs := s.RootModule().Resources[addr].Primary.Attributes
					cover, _ := strconv.Atoi(attrs["coarse_cover.#"])
					if cover < 1 || cover > 10 || attrs["security_group_rules.#"] != strconv.Itoa(3*cover+2) {
						return fmt.Errorf("cover of %d prefixes, %s rules", cover, attrs["security_group_rules.#"])
					}
					if n, err := ownedRules(ctx, ec, frontend, ""); err != nil || n != 3*cover {
						return fmt.Errorf("frontend group has %d rules (%v), want %d", n, err, 3*cover)
					}
					if err := coverHolds(ctx, ec, frontend, s.RootModule().Resources[addr].Primary.Attributes["coarse_cover_extra_addresses"]); err != nil {
						return err
					}
					if n, err := ownedRules(ctx, ec, p.AWS.NodeSecurityGroupID, owner); err != nil || n != 2 {
						return fmt.Errorf("node group has %d owned rules (%v), want 2", n, err)
					}
					return nil
				},
			},
			{ // update in place: more sources and a port
				Config: updated,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(addr, tfjsonpath.New("source_ranges"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.StringExact("192.0.2.0/24"), knownvalue.StringExact("203.0.113.0/24")})),
					plancheck.ExpectKnownValue(addr, tfjsonpath.New("security_group_rules_per_source_model"), knownvalue.Int64Exact(2*3+3*2)),
				}},
			},
			{ // import by namespace/name
				ResourceName:            addr,
				ImportState:             true,
				ImportStateId:           "telemetry/flows",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts", "wait_for_load_balancer", "allowed_sources"},
			},
			{ // a rule deleted and a rule added outside Terraform: the plan shows the update, apply restores
				PreConfig: func() {
					// moto matches a group reference's description on revoke (AWS ignores it).
					_, err := ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(p.AWS.NodeSecurityGroupID),
						IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("udp"), FromPort: aws.Int32(30000), ToPort: aws.Int32(32767),
							UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(frontend), Description: aws.String(owner)}}}}})
					if err != nil {
						t.Fatal(err)
					}
					_, err = ec.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(frontend),
						IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
							IpRanges: []ec2types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
					if err != nil {
						t.Fatal(err)
					}
				},
				Config: updated,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					if n, _ := ownedRules(ctx, ec, p.AWS.NodeSecurityGroupID, owner); n != 2 {
						return fmt.Errorf("node rule not restored: %d", n)
					}
					if n, _ := ownedRules(ctx, ec, frontend, ""); n != 3*2 {
						return fmt.Errorf("foreign frontend rule not removed: %d rules", n)
					}
					return nil
				},
			},
			{ // the Service edited outside Terraform
				PreConfig: func() {
					editService(t, c, "telemetry", "flows", func(svc *corev1.Service) {
						svc.Spec.LoadBalancerSourceRanges = []string{"0.0.0.0/0"}
					})
				},
				Config: updated,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					svc := &corev1.Service{}
					_ = c.Get(ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc)
					if strings.Join(svc.Spec.LoadBalancerSourceRanges, ",") != "192.0.2.0/24,203.0.113.0/24" {
						return fmt.Errorf("source ranges not restored: %v", svc.Spec.LoadBalancerSourceRanges)
					}
					return nil
				},
			},
			{ // managed annotations edited by hand: one flipped, one removed, one added; the plan shows it, apply restores
				PreConfig: func() {
					editService(t, c, "telemetry", "flows", func(svc *corev1.Service) {
						svc.Annotations[lbc.ManageBackendSecurityGroupRule] = "true"
						delete(svc.Annotations, lbc.SecurityGroups)
						svc.Annotations[lbc.SourceRanges] = "0.0.0.0/0"
					})
				},
				Config: updated,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					svc := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc); err != nil {
						return err
					}
					if svc.Annotations[lbc.ManageBackendSecurityGroupRule] != "false" || svc.Annotations[lbc.SecurityGroups] != frontend {
						return fmt.Errorf("managed annotations not restored: %v", svc.Annotations)
					}
					if _, ok := svc.Annotations[lbc.SourceRanges]; ok {
						return fmt.Errorf("hand-added %s not removed", lbc.SourceRanges)
					}
					return nil
				},
			},
			{ // the AWS Load Balancer Controller replaces an NLB whose scheme changes: so does the plan
				Config: strings.Replace(updated, `"internet-facing"`, `"internal"`, 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
			},
			{ // a new namespace replaces the ingress
				Config: ingressConfig(p, "collectors", `["192.0.2.0/24"]`, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
			},
			{ // without an NLB security group: the node group admits the clients on the Service's own NodePorts only
				Config: ingressConfig(p, "collectors", `["192.0.2.0/24"]`, `nlb_security_group = false`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("frontend_security_group_id"), knownvalue.StringExact("")),
				},
				Check: func(s *terraform.State) error {
					svc := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: "collectors", Name: "flows"}, svc); err != nil {
						return err
					}
					np := map[string]int32{}
					for _, p := range svc.Spec.Ports {
						np[strings.ToLower(string(p.Protocol))+"/"+strconv.Itoa(int(p.Port))] = p.NodePort
					}
					want := []string{
						fmt.Sprintf("node: tcp %d from 192.0.2.0/24", np["tcp/4739"]),
						fmt.Sprintf("node: tcp %d from vpc", svc.Spec.HealthCheckNodePort),
						fmt.Sprintf("node: udp %d from 192.0.2.0/24", np["udp/4739"]),
						fmt.Sprintf("node: udp %d from 192.0.2.0/24", np["udp/6343"]),
					}
					slices.Sort(want)
					attrs := s.RootModule().Resources[addr].Primary.Attributes
					var got []string
					for i := 0; i < len(want)+1; i++ {
						if v, ok := attrs[fmt.Sprintf("security_group_rules.%d", i)]; ok {
							got = append(got, v)
						}
					}
					if !slices.Equal(got, want) || svc.Spec.HealthCheckNodePort == 0 {
						return fmt.Errorf("node rules %v, want %v", got, want)
					}
					if n, err := ownedRules(ctx, ec, p.AWS.NodeSecurityGroupID, ruleOwner("collectors", "flows").description()); err != nil || n != 4 {
						return fmt.Errorf("node group holds %d rules of the ingress in moto, want 4 (%v)", n, err)
					}
					return nil
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
			},
		},
	})
}

// TestAccNLBIngressFailsClosed: with the nlb-policy controller missing, the
// apply fails with an error that names it and adds no security-group rule;
// once the controller runs, the apply converges; when someone opts the
// Service out by hand (the controller deletes its policies), the plan shows
// it and apply restores the policies.
func TestAccNLBIngressFailsClosed(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "closed")
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbcStandIn.Stop()
	ec := ec2.NewFromConfig(p.AWS.Config())
	addr := "telemetry_nlb_ingress.flows"
	owner := ruleOwner("closed", "flows").description()
	cfg := func(timeout string) string {
		return ingressConfig(p, "closed", `["192.0.2.0/24"]`, fmt.Sprintf("  enforcement_timeout = %q", timeout))
	}
	frontendRules := func() (int, error) {
		out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + annotations.IngressTag), Values: []string{"closed/flows"}}}})
		if err != nil || len(out.SecurityGroups) != 1 {
			return 0, fmt.Errorf("frontend group of closed/flows: %v (%v)", out, err)
		}
		return ownedRules(ctx, ec, aws.ToString(out.SecurityGroups[0].GroupId), "")
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{ // no controller: refused, and nothing admitted
				Config:      cfg("3s"),
				ExpectError: regexp.MustCompile(`(?s)nlb-policy controller has not acknowledged.*No security-group rule was added`),
			},
			{
				PreConfig: func() {
					if n, err := frontendRules(); err != nil || n != 0 {
						t.Fatalf("frontend group holds %d rules with no controller (%v)", n, err)
					}
					if n, err := ownedRules(ctx, ec, p.AWS.NodeSecurityGroupID, owner); err != nil || n != 0 {
						t.Fatalf("node group holds %d rules of closed/flows with no controller (%v)", n, err)
					}
					startNLBPolicy(t, p)
				},
				Config: cfg("60s"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("coarse_cover"), knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("192.0.2.0/24")})),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("coarse_cover_extra_addresses"), knownvalue.Int64Exact(0)),
				},
				Check: func(*terraform.State) error {
					if n, err := frontendRules(); err != nil || n != 3 {
						return fmt.Errorf("frontend group holds %d rules, want 3 (%v)", n, err)
					}
					return nil
				},
			},
			{ // opted out by hand: the controller removes the policies, the plan shows it
				PreConfig: func() {
					editService(t, c, "closed", "flows", func(svc *corev1.Service) {
						svc.Annotations["telemetry-platform.io/nlb-policy"] = "disabled"
					})
					deadline := time.Now().Add(30 * time.Second)
					for {
						svc := &corev1.Service{}
						if err := c.Get(ctx, client.ObjectKey{Namespace: "closed", Name: "flows"}, svc); err != nil {
							t.Fatal(err)
						}
						if _, acked := svc.Annotations["telemetry-platform.io/enforced"]; !acked {
							break
						}
						if time.Now().After(deadline) {
							t.Fatal("the controller kept its acknowledgement of an opted-out Service")
						}
						time.Sleep(200 * time.Millisecond)
					}
				},
				Config: cfg("60s"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				},
			},
		},
	})
}

// TestAccNLBIngressForeignGroup: a Service that names a security group the
// provider did not create (hand-made, shared, another cluster's) is imported
// without adopting the group: plan and apply refuse with the way forward, and
// neither apply nor destroy changes the group's rules or deletes it.
func TestAccNLBIngressForeignGroup(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "foreign")
	ec := ec2.NewFromConfig(p.AWS.Config())
	sg, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("hand-made"),
		Description: aws.String("shared by hand"), VpcId: aws.String(p.AWS.VPCID)})
	if err != nil {
		t.Fatal(err)
	}
	group := aws.ToString(sg.GroupId)
	_, err = ec.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId,
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("198.51.100.0/24"), Description: aws.String("ops")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "foreign", Name: "flows", Annotations: map[string]string{
			lbc.SecurityGroups: group, lbc.Scheme: lbc.SchemeInternetFacing, lbc.ManageBackendSecurityGroupRule: "false",
			"telemetry-platform.io/node-security-group": p.AWS.NodeSecurityGroupID,
		}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "sfacctd"}, LoadBalancerSourceRanges: []string{"192.0.2.0/24"},
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	intact := func() error {
		out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{group}})
		if err != nil {
			return fmt.Errorf("the hand-made group is gone: %v", err)
		}
		if n, _ := ownedRules(ctx, ec, group, ""); n != 1 || len(out.SecurityGroups[0].IpPermissions) != 1 ||
			aws.ToInt32(out.SecurityGroups[0].IpPermissions[0].FromPort) != 443 {
			return fmt.Errorf("the hand-made group's rules changed: %+v", out.SecurityGroups[0].IpPermissions)
		}
		return nil
	}
	addr := "telemetry_nlb_ingress.flows"
	cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = "foreign"
  selector               = { app = "sfacctd" }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = ["192.0.2.0/24"]
  scheme                 = "internet-facing"
  node_security_group_id = %q
}`, p.AWS.NodeSecurityGroupID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy:             func(*terraform.State) error { return intact() },
		Steps: []resource.TestStep{
			{Config: cfg, ResourceName: addr, ImportState: true, ImportStateId: "foreign/flows", ImportStatePersist: true,
				ImportStateCheck: func([]*terraform.InstanceState) error { return intact() }},
			{Config: cfg, ExpectError: regexp.MustCompile(`(?s)is\s+not\s+the\s+frontend\s+group\s+of\s+this\s+ingress.*remove\s+the\s+annotation`)},
			// The plan says so too, instead of showing rules for the group that
			// apply will not write (a plan that never converges).
			{Config: cfg, PlanOnly: true, PreConfig: func() {
				if err := intact(); err != nil {
					t.Fatal(err)
				}
			}, ExpectError: regexp.MustCompile(`(?s)names\s+a\s+security\s+group\s+this\s+ingress\s+does\s+not\s+own.*remove\s+the\s+annotation`)},
		},
	})
}

// TestAccNLBIngressNLBWithoutSecurityGroups: an AWS Load Balancer Controller
// whose NLB security groups are switched off builds the NLB without the
// frontend group, so nothing would reach the nodes; apply says so and how to
// fix it, and the fix converges.
func TestAccNLBIngressNLBWithoutSecurityGroups(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ensureNamespaces(t, c, "nosg")
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerControllerWithoutNLBSecurityGroups(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbcStandIn.Stop()
	addr := "telemetry_nlb_ingress.flows"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{
				Config:      ingressConfig(p, "nosg", `["192.0.2.0/24"]`, ""),
				ExpectError: regexp.MustCompile(`(?s)The NLB is not as configured.*Set\s+nlb_security_group\s+=\s+false`),
			},
			{
				Config: ingressConfig(p, "nosg", `["192.0.2.0/24"]`, `nlb_security_group = false`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("load_balancer_as_configured"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("frontend_security_group_id"), knownvalue.StringExact("")),
				},
			},
		},
	})
}

// editService changes a Service as a person would, again on a conflict (the
// controllers write it too).
func editService(t *testing.T, c client.Client, namespace, name string, mutate func(*corev1.Service)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := &corev1.Service{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, svc); err != nil {
			return err
		}
		mutate(svc)
		return c.Update(context.Background(), svc)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func manyPorts(n int) string {
	var ports []string
	for i := 1; i <= n; i++ {
		ports = append(ports, fmt.Sprintf(`{ name = "p%d", protocol = "UDP", port = %d }`, i, 6000+i))
	}
	return "[" + strings.Join(ports, ", ") + "]"
}

func TestAccNLBIngressPlanTimeErrors(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p := testPlane(t)
	cases := map[string]struct{ ports, sources, want string }{
		"duplicate port": {`[{ name = "a", protocol = "UDP", port = 6343 }, { name = "b", protocol = "TCP_UDP", port = 6343 }]`,
			`["192.0.2.0/24"]`, `ports "a" and "b" both claim UDP 6343`},
		"duplicate name": {`[{ name = "a", protocol = "UDP", port = 1 }, { name = "a", protocol = "UDP", port = 2 }]`,
			`["192.0.2.0/24"]`, `port name "a" is used twice`},
		"unknown protocol": {`[{ name = "a", protocol = "SCTP", port = 1 }]`, `["192.0.2.0/24"]`, `value must be one of`},
		"port out of range": {`[{ name = "a", protocol = "UDP", port = 70000 }]`, `["192.0.2.0/24"]`,
			`value must be between 1 and 65535`},
		"invalid CIDR": {`[{ name = "a", protocol = "UDP", port = 1 }]`, `["192.0.2.0/24", "300.0.0.0/8"]`, `"300.0.0.0/8": not a CIDR`},
		"no sources":   {`[{ name = "a", protocol = "UDP", port = 1 }]`, `[]`, `set must contain at least 1 elements`},
		"no ports":     {`[]`, `["192.0.2.0/24"]`, `list must contain at least 1 elements`},
		// With instance targets the NLB translates IPv6 clients to its own IPv4
		// address: Calico at the nodes could not tell exporters apart.
		"IPv6 sources with instance targets": {`[{ name = "a", protocol = "UDP", port = 1 }]`, `["192.0.2.0/24", "2001:db8::/32"]`,
			`(?s)IPv6 sources need ip targets.*target_type = "ip"`},
		"cover past the quota": {manyPorts(30), `["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]`,
			`(?s)would hold 90 IPv4 rules.*set coarse_cover_size to 2 or less`},
		// kube-proxy masquerades the client before the pods: a NetworkPolicy
		// there sees a node's address.
		"networkpolicy backend with instance targets and externalTrafficPolicy Cluster": {`[{ name = "a", protocol = "UDP", port = 1 }]`,
			`["192.0.2.0/24"]`, `(?s)needs the client's address at the pods.*external_traffic_policy = "Local"`},
		"unknown policy backend": {`[{ name = "a", protocol = "UDP", port = 1 }]`, `["192.0.2.0/24"]`, `value must be one of`},
	}
	extra := map[string]string{
		"networkpolicy backend with instance targets and externalTrafficPolicy Cluster": `policy_backend = "networkpolicy"
  external_traffic_policy = "Cluster"`,
		"unknown policy backend": `policy_backend = "cilium"`,
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = "telemetry"
  selector               = { app = "sfacctd" }
  ports                  = %s
  allowed_sources        = %s
  node_security_group_id = "sg-0123"
  %s
}`, tc.ports, tc.sources, extra[name])
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: protoV6,
				Steps:                    []resource.TestStep{{Config: cfg, PlanOnly: true, ExpectError: regexp.MustCompile(tc.want)}},
			})
		})
	}
}
