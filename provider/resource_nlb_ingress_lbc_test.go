package provider

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

// vpcInboundRules counts every inbound rule of every security group in the
// VPC but the VPC's default group, from moto.
func vpcInboundRules(ctx context.Context, ec *ec2.Client, vpcID string) (int, error) {
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}}}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range out.SecurityGroups {
		if aws.ToString(g.GroupName) == "default" {
			continue
		}
		c, err := ownedRules(ctx, ec, aws.ToString(g.GroupId), "")
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// bindingsReconciled waits until the LBC has reconciled every
// TargetGroupBinding in the namespace (it writes the backend rules there,
// after the NLB exists), so the rules counted are all it will write.
func bindingsReconciled(ctx context.Context, c client.Client, namespace string) error {
	var why string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: "elbv2.k8s.aws", Version: "v1beta1", Kind: "TargetGroupBindingList"})
		if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
			why = err.Error()
			return false, nil
		}
		if len(list.Items) == 0 {
			why = "no TargetGroupBinding yet"
			return false, nil
		}
		for _, b := range list.Items {
			observed, _, _ := unstructured.NestedInt64(b.Object, "status", "observedGeneration")
			if observed != b.GetGeneration() {
				why = fmt.Sprintf("TargetGroupBinding %s at generation %d, observed %d", b.GetName(), b.GetGeneration(), observed)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the LBC did not reconcile the TargetGroupBindings: %s", why)
	}
	return nil
}

// TestAccNLBIngressRealLBC: terraform apply of a telemetry_nlb_ingress with
// 100 and with 1,000 sources, and the real AWS Load Balancer Controller (v3.5.0, against
// moto) provisions the NLB from the Service, in both of its modes (NLB
// security groups on, the default; and off, with nlb_security_group =
// false): the Service gets its load-balancer status, the NLB uses the
// frontend group (or none), every inbound rule in the VPC is one the
// ingress owns (the LBC added none: bounded by the ports, whatever the
// sources), the LBC never hit the rules quota, the plan afterwards is empty,
// and destroy removes the NLB, its target groups and the Service through the
// LBC's finalizer.
func TestAccNLBIngressRealLBC(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	startNLBPolicy(t, p)
	for _, mode := range []struct {
		name, namespace, sources, extra string
		opts                            localplane.LBCOptions
	}{
		{"NLB security groups", "reallbc", hundredSources(), "", localplane.LBCOptions{}},
		{"no NLB security groups", "reallbc-nosg", hundredSources(), "nlb_security_group = false", localplane.LBCOptions{WithoutNLBSecurityGroups: true}},
		{"1,000 sources", "reallbc-1000", thousandSources(), "", localplane.LBCOptions{}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			testRealLBC(t, p, c, mode.namespace, mode.sources, mode.extra, mode.opts)
		})
	}
}

// thousandSources are 1,000 non-adjacent /32s in four /24s.
func thousandSources() string {
	var s []string
	for i := 0; i < 1000; i++ {
		s = append(s, fmt.Sprintf("%q", fmt.Sprintf("198.51.%d.%d/32", 100+i/125, 2*(i%125))))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func testRealLBC(t *testing.T, p *localplane.Plane, c client.Client, namespace, sources, extra string, opts localplane.LBCOptions) {
	ctx := context.Background()
	ensureNamespaces(t, c, namespace)
	lbc, err := p.StartLoadBalancerController(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer lbc.Stop()
	ec := ec2.NewFromConfig(p.AWS.Config())
	elb := elbv2.NewFromConfig(p.AWS.Config())
	addr := "telemetry_nlb_ingress.flows"
	var lbARN string
	// What the plane's account holds before: the tests share their planes
	// (one test at a time), and an earlier test's objects are not this one's.
	rulesBefore, err := vpcInboundRules(ctx, ec, p.AWS.VPCID)
	if err != nil {
		t.Fatal(err)
	}
	tgsBefore, err := elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "flows"}, svc); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service left behind (%v), finalizers %v", err, svc.Finalizers)
			}
			lbs, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
			if err != nil {
				return err
			}
			for _, lb := range lbs.LoadBalancers {
				if aws.ToString(lb.LoadBalancerArn) == lbARN {
					return fmt.Errorf("the NLB %s is left in AWS", lbARN)
				}
			}
			tgs, err := elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
			if err == nil && len(tgs.TargetGroups) > len(tgsBefore.TargetGroups) {
				return fmt.Errorf("%d target groups left in AWS", len(tgs.TargetGroups)-len(tgsBefore.TargetGroups))
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, namespace, "flows")
		},
		Steps: []resource.TestStep{
			{
				Config: ingressConfig(p, namespace, sources, extra),
				Check: func(s *terraform.State) error {
					attrs := s.RootModule().Resources[addr].Primary.Attributes
					lbARN = attrs["load_balancer_arn"]
					if lbARN == "" || attrs["dns_name"] == "" {
						return fmt.Errorf("no NLB in the state: %v", attrs)
					}
					if err := bindingsReconciled(ctx, c, namespace); err != nil {
						return fmt.Errorf("%w\n%s", err, lbc.LogTail(20))
					}
					owned, _ := strconv.Atoi(attrs["security_group_rules.#"])
					total, err := vpcInboundRules(ctx, ec, p.AWS.VPCID)
					if err != nil {
						return err
					}
					total -= rulesBefore
					t.Logf("%s sources, 2 ports (one TCP_UDP): %d inbound rules added to the VPC, all the ingress's own (%d); "+
						"the LBC's per-source model would need %s", attrs["source_ranges.#"], total, owned, attrs["security_group_rules_per_source_model"])
					if total != owned {
						return fmt.Errorf("%d inbound rules added to the VPC, %d of them the ingress's: the LBC added rules", total, owned)
					}
					for _, line := range strings.Split(lbc.Log(), "\n") {
						if strings.Contains(line, `"level":"error"`) {
							t.Logf("LBC: %.400s", line)
						}
					}
					if log := lbc.Log(); strings.Contains(log, "RulesPerSecurityGroupLimitExceeded") {
						return fmt.Errorf("the LBC hit the rules quota:\n%s", lbc.LogTail(20))
					}
					out, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{lbARN}})
					if err != nil || len(out.LoadBalancers) != 1 {
						return fmt.Errorf("the NLB %s: %v", lbARN, err)
					}
					groups, frontend := out.LoadBalancers[0].SecurityGroups, attrs["frontend_security_group_id"]
					if (frontend == "" && len(groups) != 0) || (frontend != "" && (len(groups) != 1 || groups[0] != frontend)) {
						return fmt.Errorf("the NLB's security groups are %v, want the frontend group %q", groups, frontend)
					}
					return nil
				},
			},
		},
	})
}
