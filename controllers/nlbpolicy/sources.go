package nlbpolicy

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go/middleware"
	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// AWSSources resolves health-check CIDRs and default sources: from the
// Service's annotation, else through AWS (the NLB named in the Service's
// status, its subnets and VPC; cached), else from flags.
type AWSSources struct {
	// AWS configures the clients; nil when AWS is not used.
	AWS *aws.Config
	// FallbackHealthCheckCIDRs and FallbackVPCCIDRs come from flags.
	FallbackHealthCheckCIDRs []string
	FallbackVPCCIDRs         []string
	// TTL is how long a load balancer found is kept; MissTTL how long "not
	// found yet" is (default DefaultMissTTL), so a Service whose NLB AWS does
	// not know yet costs one lookup per MissTTL, not one per reconcile.
	TTL, MissTTL time.Duration
	// Peers lists the load balancer DNS names of the Services the controller
	// manages (Setup reads them from its cache), so a lookup asks for up to
	// awsnlb.MaxNamesPerCall of them in one request: a cold start of 1,000
	// Services costs about 50 DescribeLoadBalancers calls instead of 1,000
	// (the ELB API's request rate is the account's). nil: one per lookup.
	Peers func(ctx context.Context) []string

	connect sync.Once
	elb     *elbv2.Client
	ec2     *ec2.Client
	counter func(api string) // counts requests sent (Metrics.awsRequest)

	subnets  awsnlb.SubnetCIDRs // the NLBs' subnets' CIDRs, by subnet
	mu       sync.Mutex
	cache    map[string]lookup        // by DNS name
	inflight map[string]chan struct{} // DNS names being looked up, closed when done
	vpcs     map[string]vpcLookup     // the VPCs' CIDRs, by VPC, for internal NLBs' default sources
}

type vpcLookup struct {
	cidrs []string
	at    time.Time
}

// DefaultMissTTL is how long a load balancer not found is taken as absent.
const DefaultMissTTL = 15 * time.Second

type lookup struct {
	lb *awsnlb.LoadBalancer
	at time.Time
}

// clients builds the AWS clients once, each request they send counted.
func (s *AWSSources) clients() (*elbv2.Client, *ec2.Client) {
	s.connect.Do(func() {
		if s.AWS == nil {
			return
		}
		count := func(stack *middleware.Stack) error { return nil }
		if s.counter != nil {
			count = countRequests(s.counter)
		}
		s.elb = elbv2.NewFromConfig(*s.AWS, func(o *elbv2.Options) { o.APIOptions = append(o.APIOptions, count) })
		s.ec2 = ec2.NewFromConfig(*s.AWS, func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, count) })
	})
	return s.elb, s.ec2
}

// countRequests counts every attempt a client sends (retries included, so
// throttling shows), by operation.
func countRequests(count func(api string)) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("telemetry/count-requests",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				count(awsmiddleware.GetOperationName(ctx))
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
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

// HealthCheckBound implements Sources. Health-check CIDRs from the Service's
// annotation (a tenant's to write) are bounded by the NLB's VPC, read from
// AWS once the NLB exists, else by the flag's VPC CIDRs; without either the
// bound is unknown (empty) and the annotation admits nothing (health checks
// start only once the NLB exists, when the bound is read). Discovered ones
// are the NLB's subnets, inside it by construction: no bound (nil).
func (s *AWSSources) HealthCheckBound(ctx context.Context, svc *corev1.Service) ([]string, error) {
	if svc.Annotations[annotations.HealthCheckCIDRs] == "" {
		return nil, nil
	}
	fallback := append([]string{}, s.FallbackVPCCIDRs...) // never nil: unknown is empty
	l, err := s.find(ctx, svc)
	if err != nil {
		return nil, err
	}
	if l.lb == nil || l.lb.VPCID == "" {
		return fallback, nil
	}
	cidrs, err := s.vpcCIDRs(ctx, l.lb.VPCID)
	if err != nil || len(cidrs) == 0 {
		return fallback, err
	}
	return cidrs, nil
}

// DefaultSources implements Sources: 0.0.0.0/0 for internet-facing NLBs, the
// VPC's CIDRs for internal ones, as the AWS Load Balancer Controller does.
func (s *AWSSources) DefaultSources(ctx context.Context, svc *corev1.Service) ([]string, error) {
	if lbc.SchemeOf(svc) == lbc.SchemeInternetFacing {
		return []string{"0.0.0.0/0"}, nil
	}
	l, err := s.find(ctx, svc)
	if err != nil || l.lb == nil || l.lb.VPCID == "" {
		return s.FallbackVPCCIDRs, err
	}
	cidrs, err := s.vpcCIDRs(ctx, l.lb.VPCID)
	if err != nil || len(cidrs) == 0 {
		return s.FallbackVPCCIDRs, err
	}
	return cidrs, nil
}

// vpcCIDRs reads a VPC's CIDRs, cached for TTL: the NLBs of a cluster share
// one VPC.
func (s *AWSSources) vpcCIDRs(ctx context.Context, vpcID string) ([]string, error) {
	s.mu.Lock()
	v, ok := s.vpcs[vpcID]
	s.mu.Unlock()
	if ok && time.Since(v.at) < s.TTL {
		return v.cidrs, nil
	}
	_, ec := s.clients()
	cidrs, err := awsnlb.VPCCIDRs(ctx, ec, vpcID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.vpcs == nil {
		s.vpcs = map[string]vpcLookup{}
	}
	s.vpcs[vpcID] = vpcLookup{cidrs: cidrs, at: time.Now()}
	s.mu.Unlock()
	return cidrs, nil
}

// HealthCheckPending reports whether the NLB is not provisioned yet, so
// there are no health checks to allow.
func (s *AWSSources) HealthCheckPending(svc *corev1.Service) bool {
	return s.AWS != nil && svc.Annotations[annotations.HealthCheckCIDRs] == "" && awsnlb.Hostname(svc) == ""
}

func (s *AWSSources) find(ctx context.Context, svc *corev1.Service) (lookup, error) {
	host := awsnlb.Hostname(svc)
	elb, ec := s.clients()
	if elb == nil || host == "" {
		return lookup{}, nil
	}
	if l, ok := s.cached(host); ok {
		return l, nil
	}
	s.mu.Lock()
	if wait, ok := s.inflight[host]; ok {
		// In another lookup's batch: its answer is as fresh.
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return lookup{}, ctx.Err()
		}
		if l, ok := s.cached(host); ok {
			return l, nil
		}
		s.mu.Lock()
	}
	batch := []string{host}
	_, named := awsnlb.NameFromDNS(host)
	if named && s.Peers != nil {
		s.mu.Unlock()
		peers := s.Peers(ctx)
		s.mu.Lock()
		for _, p := range peers {
			if len(batch) == awsnlb.MaxNamesPerCall {
				break
			}
			if _, busy := s.inflight[p]; busy || slices.Contains(batch, p) || s.freshLocked(p) {
				continue
			}
			if _, ok := awsnlb.NameFromDNS(p); ok {
				batch = append(batch, p)
			}
		}
	}
	if s.inflight == nil {
		s.inflight = map[string]chan struct{}{}
	}
	done := make(chan struct{})
	for _, h := range batch {
		s.inflight[h] = done
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, h := range batch {
			if s.inflight[h] == done { // not taken over by a later batch
				delete(s.inflight, h)
			}
		}
		s.mu.Unlock()
		close(done)
	}()

	if len(batch) > 1 {
		if err := s.lookUpBatch(ctx, elb, ec, batch); err != nil {
			return lookup{}, err
		}
		l, _ := s.cached(host)
		return l, nil
	}
	lb, err := awsnlb.FindCached(ctx, elb, ec, host, &s.subnets)
	if err != nil {
		return lookup{}, err
	}
	l := lookup{lb: lb, at: time.Now()}
	s.mu.Lock()
	s.storeLocked(host, l)
	s.mu.Unlock()
	return l, nil
}

// lookUpBatch looks the DNS names up in one request and caches the answers.
// AWS refuses a whole batch when one name is unknown (an NLB deleted while
// its Service still names it): the batch is then halved and each half asked
// again, so k unknown names among n cost about 2k·log2(n) requests, not n.
func (s *AWSSources) lookUpBatch(ctx context.Context, elb *elbv2.Client, ec *ec2.Client, batch []string) error {
	found, err := awsnlb.FindMany(ctx, elb, ec, batch, &s.subnets)
	if errors.Is(err, awsnlb.ErrSomeNotFound) && len(batch) > 1 {
		half := len(batch) / 2
		return errors.Join(s.lookUpBatch(ctx, elb, ec, batch[:half]), s.lookUpBatch(ctx, elb, ec, batch[half:]))
	}
	if err != nil && !errors.Is(err, awsnlb.ErrSomeNotFound) {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range batch {
		s.storeLocked(h, lookup{lb: found[h], at: now})
	}
	return nil
}

// cached is the cached lookup of a DNS name, if still fresh: TTL for a load
// balancer found, MissTTL for one not found.
func (s *AWSSources) cached(host string) (lookup, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache[host], s.freshLocked(host)
}

func (s *AWSSources) freshLocked(host string) bool {
	l, ok := s.cache[host]
	ttl := s.TTL
	if l.lb == nil {
		ttl = cmp.Or(s.MissTTL, DefaultMissTTL)
	}
	return ok && time.Since(l.at) < ttl
}

func (s *AWSSources) storeLocked(host string, l lookup) {
	if s.cache == nil {
		s.cache = map[string]lookup{}
	}
	s.cache[host] = l
}

// instrument counts the AWS requests in the metrics; Setup calls it before
// the first lookup.
func (s *AWSSources) instrument(m *Metrics) { s.counter = m.awsRequest }
