package standin_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// TestLoadBalancerStandInLeftover: a load balancer left in AWS under the
// name of a new Service (an earlier Service of the same namespace and name)
// is not taken as the new one's: the new NLB has the new Service's security
// group, as the real controller reconciles it.
func TestLoadBalancerStandInLeftover(t *testing.T) {
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ec := ec2.NewFromConfig(p.AWS.Config())
	elb := elbv2.NewFromConfig(p.AWS.Config())
	group := func(name string) string {
		out, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name),
			Description: aws.String(name), VpcId: aws.String(p.AWS.VPCID)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.GroupId)
	}
	old, current := group("old"), group("current")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "flows", Annotations: map[string]string{lbc.SecurityGroups: current}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	var subnets []string
	for _, s := range p.AWS.Subnets {
		subnets = append(subnets, s.ID)
	}
	if _, err := elb.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(standin.LoadBalancerName(svc)),
		Type: elbv2types.LoadBalancerTypeEnumNetwork, Subnets: subnets, SecurityGroups: []string{old}}); err != nil {
		t.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
			t.Fatal(err)
		}
		if len(got.Status.LoadBalancer.Ingress) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NLB: %v", lbs.Errors())
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{standin.LoadBalancerName(svc)}})
	if err != nil || len(out.LoadBalancers) != 1 {
		t.Fatalf("%v %v", out, err)
	}
	if groups := out.LoadBalancers[0].SecurityGroups; len(groups) != 1 || groups[0] != current {
		t.Fatalf("the new Service's NLB has security groups %v, want %s (the leftover had %s)", groups, current, old)
	}
}
