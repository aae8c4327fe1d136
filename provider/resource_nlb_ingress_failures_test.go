package provider

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// failsCleanly is a TestCase ErrorCheck for steps that must fail: the error
// must match *want (set by the step's PreConfig; nil means no failure is
// expected) and must not include Terraform's reports of a provider bug (an
// invalid or inconsistent result), which a failed apply must never produce.
func failsCleanly(want **regexp.Regexp) func(error) error {
	bug := regexp.MustCompile(`invalid result object|inconsistent result after apply|Invalid ID`)
	return func(err error) error {
		switch {
		case *want == nil:
			return err
		case bug.MatchString(err.Error()):
			return fmt.Errorf("the failure reported a provider bug: %w", err)
		case !(*want).MatchString(err.Error()):
			return fmt.Errorf("expected an error matching %s: %w", *want, err)
		}
		return nil
	}
}

// ingressEnv is what most ingress tests run against: the plane, their
// namespace, the real nlb-policy controller and the LBC stand-in, until the
// test ends.
func ingressEnv(t *testing.T, namespace string) (*localplane.Plane, client.Client) {
	t.Helper()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ensureNamespaces(t, c, namespace)
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	t.Cleanup(lbcStandIn.Stop)
	return p, c
}

// ingressEnvRealLBC is ingressEnv with the real AWS Load Balancer Controller,
// for tests that re-create Services or need its real work.
func ingressEnvRealLBC(t *testing.T, namespace string) (*localplane.Plane, client.Client) {
	t.Helper()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ensureNamespaces(t, c, namespace)
	startNLBPolicy(t, p)
	lbc, err := p.StartLoadBalancerController(context.Background(), localplane.LBCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lbc.Stop)
	return p, c
}

// leftInAWS lists what an ingress owns in moto: frontend groups tagged with
// it and rules described as its own in the node group.
func leftInAWS(ctx context.Context, ec *ec2.Client, nodeSG, namespace, name string) error {
	owner := ruleOwner(namespace, name)
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + annotations.IngressTag), Values: []string{owner.ref()}}}})
	if err != nil {
		return err
	}
	var left []error
	for _, g := range out.SecurityGroups {
		left = append(left, fmt.Errorf("frontend group %s of %s left behind", aws.ToString(g.GroupId), owner.ref()))
	}
	if n, err := ownedRules(ctx, ec, nodeSG, owner.description()); err != nil || n != 0 {
		left = append(left, fmt.Errorf("%d rules of %s left in the node group (%v)", n, owner.ref(), err))
	}
	return errors.Join(left...)
}

// deleteServiceBehindTerraform deletes the Service as a person (or a
// finalizer released after a timed-out destroy) would, and waits until it is
// gone.
func deleteServiceBehindTerraform(t *testing.T, c client.Client, namespace, name string) {
	t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = namespace, name
	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(svc), svc)) {
		if time.Now().After(deadline) {
			t.Fatalf("Service %s/%s still present, held by %v", namespace, name, svc.Finalizers)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAccNLBIngressFailedCreate: a create that fails leaves either nothing
// in the state (AWS unreachable: nothing was created) or an object that
// refresh, apply and destroy understand (namespace missing: the frontend
// group exists), never an empty ID or "invalid result" errors; a Service
// deleted behind Terraform's back keeps the resource (its AWS objects
// remain), the next apply re-creates the Service, and destroy removes
// everything the ingress owns in AWS.
func TestAccNLBIngressFailedCreate(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	startNLBPolicy(t, p)
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbcStandIn.Stop()
	ec := ec2.NewFromConfig(p.AWS.Config())
	addr := "telemetry_nlb_ingress.flows"
	cfg := ingressConfig(p, "late", `["192.0.2.0/24"]`, "")
	awsDown := strings.Replace(cfg, fmt.Sprintf("ec2   = %q", p.AWS.Endpoint), `ec2   = "http://127.0.0.1:9"`, 1)
	if awsDown == cfg {
		t.Fatal("the provider block no longer names the EC2 endpoint as this test expects")
	}
	var want *regexp.Regexp
	expect := func(pattern string) func() {
		return func() { want = regexp.MustCompile(pattern) }
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		ErrorCheck:               failsCleanly(&want),
		CheckDestroy: func(*terraform.State) error {
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "late", "flows")
		},
		Steps: []resource.TestStep{
			{ // AWS unreachable: nothing created, nothing saved
				PreConfig: expect(`(?s)Cannot use the node security group.*127\.0\.0\.1:9`),
				Config:    awsDown,
			},
			{ // the namespace is missing: the frontend group was created and is kept in the state
				PreConfig: func() {
					if err := leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "late", "flows"); err != nil {
						t.Fatalf("the failed create left AWS objects: %v", err)
					}
					expect(`(?s)Cannot write the Service.*namespaces "late" not found`)()
				},
				Config: cfg,
			},
			{ // the namespace created: the next apply converges
				PreConfig: func() {
					want = nil
					ensureNamespaces(t, c, "late")
				},
				Config: cfg,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("id"), knownvalue.StringExact("late/flows")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				},
			},
			{ // the Service deleted behind Terraform: apply re-creates it in place
				PreConfig: func() { deleteServiceBehindTerraform(t, c, "late", "flows") },
				Config:    cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				},
			},
			{ // deleted again, then the resource removed: destroy finds the AWS objects from the state and tags
				PreConfig: func() { deleteServiceBehindTerraform(t, c, "late", "flows") },
				Config:    providerConfig(p),
				Check: func(*terraform.State) error {
					return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "late", "flows")
				},
			},
		},
	})
}

// TestAccNLBIngressPortsRoundTrip: what apply writes, refresh reads back
// identically, and the plan is empty afterwards: a port changed in place
// gets its own target port (not the previous port's, by list position), two
// ports on one number for TCP and UDP stay two ports, names that would
// collide in the Service are refused at plan time, and a managed annotation
// removed by hand is restored.
func TestAccNLBIngressPortsRoundTrip(t *testing.T) {
	t.Parallel()
	p, c := ingressEnv(t, "ports")
	ctx := context.Background()
	addr := "telemetry_nlb_ingress.flows"
	cfg := func(ports string) string {
		return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = "ports"
  selector               = { app = "sfacctd" }
  ports                  = %s
  allowed_sources        = ["192.0.2.0/24"]
  node_security_group_id = %q
}`, ports, p.AWS.NodeSecurityGroupID)
	}
	targetPorts := func(want ...int32) func(*terraform.State) error {
		return func(*terraform.State) error {
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "ports", Name: "flows"}, svc); err != nil {
				return err
			}
			var got []int32
			for _, sp := range svc.Spec.Ports {
				got = append(got, sp.TargetPort.IntVal)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("the Service's target ports are %v, want %v", got, want)
			}
			return nil
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{Config: cfg(`[{ name = "sflow", protocol = "UDP", port = 6343 }]`), Check: targetPorts(6343)},
			{ // the port changed in place: its target port is the new port, in the plan and in the Service
				Config: cfg(`[{ name = "ipfix", protocol = "UDP", port = 4739 }]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue(addr, tfjsonpath.New("ports").AtSliceIndex(0).AtMapKey("target_port"), knownvalue.Int64Exact(4739)),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("ports").AtSliceIndex(0).AtMapKey("target_port"), knownvalue.Int64Exact(4739)),
				},
				Check: targetPorts(4739),
			},
			{ // TCP and UDP on one number as two ports: read back as two, plan empty after apply
				Config: cfg(`[{ name = "a-tcp", protocol = "TCP", port = 9000 }, { name = "a-udp", protocol = "UDP", port = 9000 }]`),
				Check:  targetPorts(9000, 9000),
			},
			{ // a plain port named like a TCP_UDP port's half: refused before anything changes
				Config:      cfg(`[{ name = "ipfix", protocol = "TCP_UDP", port = 4739 }, { name = "ipfix-tcp", protocol = "TCP", port = 9000 }]`),
				ExpectError: regexp.MustCompile(`(?s)port\s+"ipfix-tcp"\s+has\s+the\s+Service\s+port\s+name.*rename\s+one\s+of\s+them`),
			},
			{ // the NLB's security-group annotation removed by hand: the plan shows it, apply restores it
				PreConfig: func() {
					editService(t, c, "ports", "flows", func(svc *corev1.Service) {
						delete(svc.Annotations, "service.beta.kubernetes.io/aws-load-balancer-security-groups")
					})
				},
				Config: cfg(`[{ name = "a-tcp", protocol = "TCP", port = 9000 }, { name = "a-udp", protocol = "UDP", port = 9000 }]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
			},
		},
	})
}

// TestAccNLBIngressConcurrentCreate: two resources for one Service, created
// in the same apply (in parallel): the API server lets one create it, the
// other fails saying the Service exists and saves nothing, so it can neither
// take the Service over nor delete it; destroy leaves nothing behind.
func TestAccNLBIngressConcurrentCreate(t *testing.T) {
	t.Parallel()
	p, c := ingressEnv(t, "race")
	ctx := context.Background()
	ec := ec2.NewFromConfig(p.AWS.Config())
	one := func(label, sources string) string {
		return fmt.Sprintf(`
resource "telemetry_nlb_ingress" %q {
  name                   = "flows"
  namespace              = "race"
  selector               = { app = "sfacctd" }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = [%q]
  node_security_group_id = %q
}`, label, sources, p.AWS.NodeSecurityGroupID)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "race", Name: "flows"}, svc); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service race/flows left behind (%v)", err)
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "race", "flows")
		},
		Steps: []resource.TestStep{
			{
				Config:      providerConfig(p) + one("a", "192.0.2.0/24") + one("b", "198.51.100.0/24"),
				ExpectError: regexp.MustCompile(`Service already exists`),
			},
			{ // exactly one of them holds the Service, with its own sources
				Config:   providerConfig(p) + one("a", "192.0.2.0/24") + one("b", "198.51.100.0/24"),
				PlanOnly: true, ExpectNonEmptyPlan: true,
				PreConfig: func() {
					svc := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKey{Namespace: "race", Name: "flows"}, svc); err != nil {
						t.Fatal(err)
					}
					if len(svc.Spec.LoadBalancerSourceRanges) != 1 {
						t.Fatalf("the Service holds sources %v: both resources wrote it", svc.Spec.LoadBalancerSourceRanges)
					}
				},
			},
		},
	})
}

// TestAccNLBIngressImportHandMade: a LoadBalancer Service made by hand,
// without any of the provider's annotations (here an NLB without security
// groups, which nlb_security_group = false adopts in place), imports, and
// the plan after the import shows in place what apply will change (the node
// group, its rules, the annotations); apply converges. Adopting an NLB whose
// per-source rules the AWS Load Balancer Controller manages is the
// migration of docs/guides (not this test).
func TestAccNLBIngressImportHandMade(t *testing.T) {
	t.Parallel()
	p, c := ingressEnv(t, "handmade")
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "handmade", Name: "flows", Annotations: map[string]string{
			lbc.Scheme: lbc.SchemeInternetFacing, lbc.NLBTargetType: lbc.TargetInstance,
			"service.beta.kubernetes.io/aws-load-balancer-disable-nlb-sg": "true"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "sfacctd"}, LoadBalancerSourceRanges: []string{"192.0.2.0/24"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	addr := "telemetry_nlb_ingress.flows"
	cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                    = "flows"
  namespace               = "handmade"
  selector                = { app = "sfacctd" }
  ports                   = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources         = ["192.0.2.0/24"]
  scheme                  = "internet-facing"
  external_traffic_policy = "Local"
  nlb_security_group      = false
  node_security_group_id  = %q
}`, p.AWS.NodeSecurityGroupID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{Config: cfg, ResourceName: addr, ImportState: true, ImportStateId: "handmade/flows", ImportStatePersist: true},
			{
				Config: cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("node_security_group_id"), knownvalue.StringExact(p.AWS.NodeSecurityGroupID)),
				},
			},
		},
	})
}

// TestAccNLBIngressRoundTripProperty: generated configurations (ports and
// protocols, target ports, IPv4 sources, target type (a change replaces),
// external traffic policy, scheme, NLB security group), applied one after
// the other to one resource with the real AWS Load Balancer Controller: after
// each apply, refresh reads back what was written and the plan is empty (the
// test harness fails a step whose plan after apply is not).
func TestAccNLBIngressRoundTripProperty(t *testing.T) {
	t.Parallel()
	p, _ := ingressEnvRealLBC(t, "property")
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 12))
	names := []string{"sflow", "ipfix", "netflow", "a-tcp", "a-udp"}
	protocols := []string{"UDP", "TCP", protocolTCPUDP}
	generate := func() string {
		var ports []ingressPort
		for len(ports) == 0 || (len(ports) < 3 && rng.IntN(2) == 0) {
			port := ingressPort{Name: names[rng.IntN(len(names))], Protocol: protocols[rng.IntN(len(protocols))],
				Port: []int32{6343, 4739, 2055}[rng.IntN(3)]}
			if rng.IntN(2) == 0 {
				port.TargetPort = port.Port + 1
			}
			if candidate := append(slices.Clone(ports), port); len(portProblems(candidate)) == 0 {
				ports = candidate
			}
		}
		var hcl []string
		for _, pt := range ports {
			target := ""
			if pt.TargetPort != 0 {
				target = fmt.Sprintf(", target_port = %d", pt.TargetPort)
			}
			hcl = append(hcl, fmt.Sprintf(`{ name = %q, protocol = %q, port = %d%s }`, pt.Name, pt.Protocol, pt.Port, target))
		}
		targetType := []string{"instance", "ip"}[rng.IntN(2)]
		var sources []string
		for n := 1 + rng.IntN(20); len(sources) < n; {
			// IPv4 only: moto's subnets cannot give the LBC a dualstack NLB
			// (../shared/third_party/README.md), which IPv6 sources need.
			sources = append(sources, fmt.Sprintf("%q", fmt.Sprintf("198.51.%d.%d/%d", 100+rng.IntN(2), rng.IntN(64)*4, []int{30, 32}[rng.IntN(2)])))
		}
		return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                    = "flows"
  namespace               = "property"
  selector                = { app = "sfacctd" }
  ports                   = [%s]
  allowed_sources         = [%s]
  target_type             = %q
  external_traffic_policy = %q
  scheme                  = %q
  nlb_security_group      = %v
  node_security_group_id  = %q
}`, strings.Join(hcl, ", "), strings.Join(sources, ", "), targetType, []string{"Local", "Cluster"}[rng.IntN(2)],
			[]string{"internal", "internet-facing"}[rng.IntN(2)], rng.IntN(4) != 0, p.AWS.NodeSecurityGroupID)
	}
	var steps []resource.TestStep
	for i := 0; i < 6; i++ {
		steps = append(steps, resource.TestStep{Config: generate()})
	}
	ec := ec2.NewFromConfig(p.AWS.Config())
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "property", "flows")
		},
		Steps: steps,
	})
}
