package nlbpolicy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/awsfaults"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TestAWSThrottling: 36 Services whose NLBs exist opt in while 20% of the
// controller's AWS calls are answered Throttling, and all of them for 5 s;
// the controller only slows down: every Allow policy it ever writes admits
// the NLB's health checks from its subnets (a policy without them would
// refuse the health checks and take the targets out), it deletes no
// policy, and once AWS answers every Service is enforced. Its AWS requests
// are counted by operation.
func TestAWSThrottling(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, c := planeWithNLBs(t)
	ctx := context.Background()
	faults := awsfaults.Start(t, p.AWS.Endpoint)
	awsCfg := p.AWS.Config()
	awsCfg.BaseEndpoint = &faults.URL

	// The Services and their NLBs first, opted out: every policy the
	// controller writes is then for a Service whose NLB exists.
	services := servicesWithNLBs(t, c, "flows", 36)
	ctl := startControllerWith(t, p, p.Config, false, ctrl.Options{}, &nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute})

	// Every version of every generated policy, from a watch.
	wc, err := client.NewWithWatch(p.Config, client.Options{Scheme: kubeapi.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &calicov3.GlobalNetworkPolicyList{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var events []watch.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			events = append(events, e)
		}
	}()
	optIn := func(svcs []*corev1.Service) {
		for _, svc := range svcs {
			update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Enabled })
		}
	}
	faults.Set(0.2)
	optIn(services[:30])
	// A storm: every call throttled while more Services opt in.
	time.Sleep(2 * time.Second)
	faults.Set(1)
	optIn(services[30:])
	time.Sleep(5 * time.Second)
	faults.Set(0.2)
	deadline := time.Now().Add(90 * time.Second)
	for _, svc := range services {
		for {
			got, _ := get(t, c, svc)
			if got != nil && ack.Current(got) && got.Spec.HealthCheckNodePort != 0 {
				if a, _ := ack.Of(got); a.Problem == "" {
					break
				}
			}
			if time.Now().After(deadline) {
				a, _ := ack.Of(got)
				t.Fatalf("%s not enforced once AWS answers: %+v", svc.Name, a)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	w.Stop()
	<-done
	t.Logf("faults injected: %v; AWS requests: %v", faults.Injected(), ctl.counts(t, "telemetry_nlbpolicy_aws_requests_total"))

	health := map[string]int32{} // health-check NodePort by policy owner
	for _, svc := range services {
		got, _ := get(t, c, svc)
		health[got.Name] = got.Spec.HealthCheckNodePort
	}
	allows := 0
	for _, e := range events {
		gnp, ok := e.Object.(*calicov3.GlobalNetworkPolicy)
		if !ok {
			continue
		}
		if e.Type == watch.Deleted {
			t.Errorf("policy %s deleted while AWS was throttled", gnp.Name)
			continue
		}
		owner := gnp.Labels["telemetry-platform.io/owner-name"]
		if gnp.Spec.Order == nil || *gnp.Spec.Order != nlbpolicy.DefaultOptions().Order || health[owner] == 0 {
			continue // the Deny, or not ours
		}
		allows++
		admitsHealth := slices.ContainsFunc(gnp.Spec.Ingress, func(r calicov3.Rule) bool {
			return len(r.Source.Nets) > 0 && slices.ContainsFunc(r.Destination.Ports, func(p numorstring.Port) bool {
				return p.MinPort <= uint16(health[owner]) && uint16(health[owner]) <= p.MaxPort
			})
		})
		if !admitsHealth {
			t.Errorf("%s (%s) written without the NLB's health-check sources: %+v", gnp.Name, e.Type, gnp.Spec.Ingress)
		}
	}
	if allows < len(services) {
		t.Errorf("saw %d Allow policy versions for %d Services", allows, len(services))
	}
}

// TestAWSLookupsBatched: 40 Services whose NLBs exist opt in at once. The
// controller asks for up to 20 load balancers per DescribeLoadBalancers
// (the ELB API's request rate is the account's), and every Service is
// enforced. Then the same with a peer whose NLB AWS does not know (deleted
// while a Service still names it): AWS refuses a batch that names it, the
// controller halves the batch until it has the others.
func TestAWSLookupsBatched(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, c := planeWithNLBs(t)
	services := servicesWithNLBs(t, c, "batch", 40)
	awsCfg := p.AWS.Config()
	run := func(t *testing.T, svcs []*corev1.Service, sources *nlbpolicy.AWSSources) map[string]float64 {
		// Opted in before the controller starts, so every one is a peer of
		// the first lookups (a cold start).
		for _, svc := range svcs {
			update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Enabled })
		}
		ctl := startControllerWith(t, p, p.Config, false, ctrl.Options{}, sources)
		for _, svc := range svcs {
			eventually(t, svc.Name+" enforced", func() (bool, string) {
				got, _ := get(t, c, svc)
				a, _ := ack.Of(got)
				return got != nil && ack.Current(got) && a.Problem == "", fmt.Sprintf("%+v", a)
			})
		}
		requests := ctl.counts(t, "telemetry_nlbpolicy_aws_requests_total")
		ctl.stop()
		for _, svc := range svcs {
			update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Disabled })
		}
		return requests
	}

	requests := run(t, services[:20], &nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute})
	t.Logf("AWS requests for 20 Services: %v", requests)
	// One request per Service would be 20; batches of 20 (the 4 workers
	// may each start one before the others are in flight) make 1 to 4.
	if n := requests["DescribeLoadBalancers"]; n == 0 || n > 5 {
		t.Errorf("%v DescribeLoadBalancers requests for 20 Services, want at most 5", n)
	}

	const unknown = "gone-0123456789abcdef.elb.us-east-1.amazonaws.com"
	peers := func(ctx context.Context) []string {
		out := []string{unknown}
		for _, svc := range services[20:] {
			got, _ := get(t, c, svc)
			out = append(out, awsnlb.Hostname(got))
		}
		return out
	}
	faults := awsfaults.Start(t, p.AWS.Endpoint)
	name, _ := awsnlb.NameFromDNS(unknown)
	faults.UnknownLoadBalancers(name)
	faultyCfg := p.AWS.Config()
	faultyCfg.BaseEndpoint = &faults.URL
	requests = run(t, services[20:], &nlbpolicy.AWSSources{AWS: &faultyCfg, TTL: time.Minute, Peers: peers})
	t.Logf("refused: %v", faults.Injected())
	t.Logf("AWS requests for 20 Services, an unknown NLB among their peers: %v", requests)
	// Halving a batch of 20 down to the unknown name costs about
	// 2 x log2(20) requests (10 when one worker batches alone); fewer than
	// one per Service however the workers race.
	if n := requests["DescribeLoadBalancers"]; n < 2 || n >= 20 {
		t.Errorf("%v DescribeLoadBalancers requests, want 2 to 19 (a refused batch halved)", n)
	}
}

// servicesWithNLBs creates n opted-out Services named <prefix>-NN and waits
// until the LBC stand-in has given each its NLB.
func servicesWithNLBs(t *testing.T, c client.Client, prefix string, n int) []*corev1.Service {
	t.Helper()
	var services []*corev1.Service
	for i := 0; i < n; i++ {
		svc := service("telemetry", fmt.Sprintf("%s-%02d", prefix, i), func(s *corev1.Service) {
			s.Annotations[annotations.NLBPolicy] = annotations.Disabled
		})
		if err := c.Create(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
		services = append(services, svc)
	}
	for _, svc := range services {
		eventually(t, svc.Name+"'s NLB", func() (bool, string) {
			got, _ := get(t, c, svc)
			return got != nil && awsnlb.Hostname(got) != "", "no hostname yet"
		})
	}
	return services
}

// TestHealthCheckAnnotationBoundedByTheVPC: the health-check CIDRs a
// Service's annotation names (the tenant's to write) are bounded by its
// NLB's VPC, read from AWS: 0.0.0.0/0 is dropped and reported in the
// acknowledgement's problem, a subnet of the VPC kept.
func TestHealthCheckAnnotationBoundedByTheVPC(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, c := planeWithNLBs(t)
	svc := servicesWithNLBs(t, c, "hcbound", 1)[0]
	awsCfg := p.AWS.Config()
	startControllerWith(t, p, p.Config, false, ctrl.Options{}, &nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute})
	update(t, c, svc, func(s *corev1.Service) {
		s.Annotations[annotations.NLBPolicy] = annotations.Enabled
		s.Annotations[annotations.HealthCheckCIDRs] = "0.0.0.0/0,10.0.1.0/24"
	})
	var problem string
	eventually(t, "the acknowledgement", func() (bool, string) {
		got, _ := get(t, c, svc)
		if got == nil || !ack.Current(got) {
			return false, "not acknowledged"
		}
		a, _ := ack.Of(got)
		problem = a.Problem
		return true, ""
	})
	if !strings.Contains(problem, "health-check CIDR 0.0.0.0/0 is outside the load balancer's VPC") {
		t.Errorf("the acknowledgement's problem %q does not report 0.0.0.0/0 outside the VPC", problem)
	}
	ps, _ := owned(t, c, svc)
	var health []string
	for _, gp := range ps {
		for _, r := range gp.Spec.Ingress {
			if r.Action == calicov3.Pass && r.Protocol != nil && r.Protocol.String() == "TCP" {
				health = append(health, r.Source.Nets...)
			}
		}
	}
	if slices.Contains(health, "0.0.0.0/0") || !slices.Contains(health, "10.0.1.0/24") {
		t.Errorf("health checks passed from %v, want 10.0.1.0/24 and never 0.0.0.0/0", health)
	}
}
