package nlbpolicy

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// AWSSources resolves health-check CIDRs and default sources: from the
// Service's annotation, else through AWS (the NLB named in the Service's
// status, its subnets and VPC; cached), else from flags.
type AWSSources struct {
	// ELB and EC2 are nil when AWS is not configured.
	ELB *elbv2.Client
	EC2 *ec2.Client
	// FallbackHealthCheckCIDRs and FallbackVPCCIDRs come from flags.
	FallbackHealthCheckCIDRs []string
	FallbackVPCCIDRs         []string
	TTL                      time.Duration

	mu    sync.Mutex
	cache map[string]lookup
}

type lookup struct {
	lb  *awsnlb.LoadBalancer
	vpc []string
	at  time.Time
}

// HealthCheckCIDRs implements Sources.
func (s *AWSSources) HealthCheckCIDRs(ctx context.Context, svc *corev1.Service) ([]string, error) {
	if v := svc.Annotations[annotations.HealthCheckCIDRs]; v != "" {
		return lbc.SplitList(v), nil
	}
	l, err := s.find(ctx, svc)
	if err != nil || l.lb == nil || len(l.lb.SubnetCIDRs) == 0 {
		return s.FallbackHealthCheckCIDRs, err
	}
	return l.lb.SubnetCIDRs, nil
}

// DefaultSources implements Sources: 0.0.0.0/0 for internet-facing NLBs, the
// VPC's CIDRs for internal ones, as the AWS Load Balancer Controller does.
func (s *AWSSources) DefaultSources(ctx context.Context, svc *corev1.Service) ([]string, error) {
	if lbc.SchemeOf(svc) == lbc.SchemeInternetFacing {
		return []string{"0.0.0.0/0"}, nil
	}
	l, err := s.find(ctx, svc)
	if err != nil || len(l.vpc) == 0 {
		return s.FallbackVPCCIDRs, err
	}
	return l.vpc, nil
}

// HealthCheckPending reports whether the NLB is not provisioned yet, so
// there are no health checks to allow.
func (s *AWSSources) HealthCheckPending(svc *corev1.Service) bool {
	return s.ELB != nil && svc.Annotations[annotations.HealthCheckCIDRs] == "" && awsnlb.Hostname(svc) == ""
}

func (s *AWSSources) find(ctx context.Context, svc *corev1.Service) (lookup, error) {
	host := awsnlb.Hostname(svc)
	if s.ELB == nil || host == "" {
		return lookup{}, nil
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]lookup{}
	}
	l, ok := s.cache[host]
	s.mu.Unlock()
	if ok && time.Since(l.at) < s.TTL {
		return l, nil
	}
	lb, err := awsnlb.Find(ctx, s.ELB, s.EC2, host)
	if err != nil {
		return lookup{}, err
	}
	l = lookup{lb: lb, at: time.Now()}
	if lb != nil && lb.VPCID != "" {
		if l.vpc, err = awsnlb.VPCCIDRs(ctx, s.EC2, lb.VPCID); err != nil {
			return lookup{}, err
		}
	}
	if lb != nil { // a load balancer not found yet is asked again next time
		s.mu.Lock()
		s.cache[host] = l
		s.mu.Unlock()
	}
	return l, nil
}
