package standin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// ServiceFinalizer is the AWS Load Balancer Controller's finalizer on Services.
const ServiceFinalizer = lbc.ServiceFinalizer

// LoadBalancerController stands in for the AWS Load Balancer Controller's
// visible effects on NLB Services: it creates an NLB in the (emulated) AWS
// API with the subnets and security groups the Service's annotations name,
// writes its DNS name into the Service's status, and on deletion deletes the
// NLB before releasing its finalizer. It writes no security-group rules and
// no target groups.
type LoadBalancerController struct {
	c     client.Client
	ec2   *ec2.Client
	elb   *elbv2.Client
	vpcID string
	// NoNLBSecurityGroups models the real controller run with the feature
	// gate NLBSecurityGroup=false (measured with v3.5.0): it ignores the
	// security-groups annotation and builds the NLB without any group.
	NoNLBSecurityGroups bool
	cancel              context.CancelFunc
	done                chan struct{}

	mu     sync.Mutex
	errors []error
}

// StartLoadBalancerController runs the stand-in until Stop.
func StartLoadBalancerController(c client.Client, cfg aws.Config, vpcID string) *LoadBalancerController {
	return startLoadBalancerController(c, cfg, vpcID, false)
}

// StartLoadBalancerControllerWithoutNLBSecurityGroups starts the stand-in
// modelling the controller's NLBSecurityGroup=false feature gate.
func StartLoadBalancerControllerWithoutNLBSecurityGroups(c client.Client, cfg aws.Config, vpcID string) *LoadBalancerController {
	return startLoadBalancerController(c, cfg, vpcID, true)
}

func startLoadBalancerController(c client.Client, cfg aws.Config, vpcID string, noSG bool) *LoadBalancerController {
	ctx, cancel := context.WithCancel(context.Background())
	s := &LoadBalancerController{c: c, ec2: ec2.NewFromConfig(cfg), elb: elbv2.NewFromConfig(cfg), vpcID: vpcID,
		NoNLBSecurityGroups: noSG, cancel: cancel, done: make(chan struct{})}
	go every(ctx, s.done, s.reconcileAll)
	return s
}

// Stop ends the stand-in.
func (s *LoadBalancerController) Stop() {
	s.cancel()
	<-s.done
}

// Errors are the failures seen so far, for tests to report.
func (s *LoadBalancerController) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errors)
}

func (s *LoadBalancerController) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errors) < 20 {
		s.errors = append(s.errors, err)
	}
}

func (s *LoadBalancerController) reconcileAll(ctx context.Context) {
	var list corev1.ServiceList
	if err := s.c.List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		svc := &list.Items[i]
		if !lbc.IsNLB(svc) {
			continue
		}
		err := s.reconcile(ctx, svc)
		// A conflict or a vanished Service is retried at the next poll.
		if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			s.fail(fmt.Errorf("%s/%s: %w", svc.Namespace, svc.Name, err))
		}
	}
}

// LoadBalancerName is the NLB name the stand-in gives a Service (32
// characters at most, like the real controller's k8s-<ns>-<name>-<hash>).
func LoadBalancerName(svc *corev1.Service) string {
	sum := sha256.Sum256([]byte(svc.Namespace + "/" + svc.Name))
	prefix := "k8s-" + svc.Namespace + "-" + svc.Name
	if len(prefix) > 21 {
		prefix = prefix[:21]
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:10]
}

func (s *LoadBalancerController) reconcile(ctx context.Context, svc *corev1.Service) error {
	name := LoadBalancerName(svc)
	if svc.DeletionTimestamp != nil {
		if !slices.Contains(svc.Finalizers, ServiceFinalizer) {
			return nil
		}
		if err := s.deleteLB(ctx, name); err != nil {
			return err
		}
		svc.Finalizers = slices.DeleteFunc(svc.Finalizers, func(f string) bool { return f == ServiceFinalizer })
		return s.c.Update(ctx, svc)
	}
	if !slices.Contains(svc.Finalizers, ServiceFinalizer) {
		svc.Finalizers = append(svc.Finalizers, ServiceFinalizer)
		if err := s.c.Update(ctx, svc); err != nil {
			return err
		}
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		return nil
	}
	subnets := lbc.SplitList(svc.Annotations[lbc.Subnets])
	if len(subnets) == 0 {
		var err error
		if subnets, err = s.taggedSubnets(ctx, lbc.SchemeOf(svc)); err != nil {
			return err
		}
	}
	scheme := elbv2types.LoadBalancerSchemeEnumInternal
	if lbc.SchemeOf(svc) == lbc.SchemeInternetFacing {
		scheme = elbv2types.LoadBalancerSchemeEnumInternetFacing
	}
	groups := lbc.SplitList(svc.Annotations[lbc.SecurityGroups])
	if s.NoNLBSecurityGroups {
		groups = nil
	}
	// A load balancer left under this name (an earlier Service of the same
	// namespace and name, whose deletion another stand-in did not finish)
	// would be returned as is by CreateLoadBalancer, with its old security
	// groups; the real controller reconciles what it finds, so this one
	// starts afresh.
	if err := s.deleteLB(ctx, name); err != nil {
		return err
	}
	out, err := s.elb.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{
		Name: aws.String(name), Type: elbv2types.LoadBalancerTypeEnumNetwork, Scheme: scheme,
		Subnets: subnets, SecurityGroups: groups,
		Tags: []elbv2types.Tag{{Key: aws.String(lbc.StackTag), Value: aws.String(svc.Namespace + "/" + svc.Name)}},
	})
	if err != nil {
		return fmt.Errorf("CreateLoadBalancer: %w", err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: aws.ToString(out.LoadBalancers[0].DNSName)}}
	return s.c.Status().Update(ctx, svc)
}

// taggedSubnets picks one subnet per zone among those tagged for the scheme.
func (s *LoadBalancerController) taggedSubnets(ctx context.Context, scheme string) ([]string, error) {
	tag := "kubernetes.io/role/internal-elb"
	if scheme == lbc.SchemeInternetFacing {
		tag = "kubernetes.io/role/elb"
	}
	out, err := s.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{s.vpcID}},
		{Name: aws.String("tag-key"), Values: []string{tag}},
	}})
	if err != nil {
		return nil, err
	}
	var ids []string
	zones := map[string]bool{}
	for _, sn := range out.Subnets {
		if az := aws.ToString(sn.AvailabilityZone); !zones[az] {
			zones[az] = true
			ids = append(ids, aws.ToString(sn.SubnetId))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no subnet tagged %s in %s", tag, s.vpcID)
	}
	return ids, nil
}

func (s *LoadBalancerController) deleteLB(ctx context.Context, name string) error {
	out, err := s.elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
	var notFound *elbv2types.LoadBalancerNotFoundException
	if errors.As(err, &notFound) {
		return nil // already gone
	}
	if err != nil {
		return fmt.Errorf("DescribeLoadBalancers %s: %w", name, err) // retried; the finalizer stays meanwhile
	}
	for _, lb := range out.LoadBalancers {
		if _, err := s.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
			return err
		}
	}
	return nil
}
