package bench

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbv2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

const (
	benchSources = 100
	workers      = 4 // the controller's default --max-concurrent-reconciles
)

// benchServices is how many Services the convergence benchmarks make:
// 1,000, or BENCH_NLB_SERVICES (10000 for the large run).
var benchServices = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_NLB_SERVICES")); err == nil && n >= 200 {
		return n
	}
	return 1000
}()

var healthCIDRs = []string{"10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"}

// BenchmarkNLBPolicyConverge: 1,000 opted-in NLB Services with 100 sources
// each exist when the controller starts. It measures the time to converge
// (every Service's policies and network set written, each compared with
// what it must be), against a bare client writing the same objects with the
// same concurrency (the floor); the API writes in steady state (must be
// zero), after a resync of every Service; the controller's heap; and the
// security-group rules the AWS Load Balancer Controller would have needed.
// AWS is off: health-check CIDRs come from the flag. Run with -benchtime=1x.
func BenchmarkNLBPolicyConverge(b *testing.B) { benchConverge(b, false, calicoBackend) }

// BenchmarkNLBPolicyConvergeAWS is BenchmarkNLBPolicyConverge with AWS in
// the loop: moto holds the 1,000 NLBs the AWS Load Balancer Controller
// would have made for the Services (its names and tags) and 500 unrelated
// load balancers; each Service's status names its NLB, and the controller
// finds the health-check CIDRs through AWS. It also counts the AWS requests
// of the convergence and of the steady state (telemetry_nlbpolicy_aws_requests_total).
func BenchmarkNLBPolicyConvergeAWS(b *testing.B) { benchConverge(b, true, calicoBackend) }

// BenchmarkNLBPolicyConvergeNetworkPolicy is BenchmarkNLBPolicyConverge with
// the networkpolicy backend: one Kubernetes NetworkPolicy per Service, the
// floor a bare client writing the same NetworkPolicies.
func BenchmarkNLBPolicyConvergeNetworkPolicy(b *testing.B) {
	benchConverge(b, false, networkPolicyBackend)
}

func benchConverge(b *testing.B, withAWS bool, be benchBackend) {
	p := localplane.New(b, localplane.Options{NoAWS: !withAWS})
	admin, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Logf("creating %d Services with %d sources each", benchServices, benchSources)
	svcs := make([]*corev1.Service, benchServices)
	parallel(b, benchServices, 8, func(i int) error {
		svcs[i] = benchService(i)
		return admin.Create(ctx, svcs[i])
	})
	health := healthCIDRs
	sources := &nlbpolicy.AWSSources{FallbackHealthCheckCIDRs: healthCIDRs}
	if withAWS {
		health = seedNLBs(b, p, admin, svcs)
		cfg := p.AWS.Config()
		sources = &nlbpolicy.AWSSources{AWS: &cfg, TTL: time.Hour}
	}
	if err := p.CreateProductTier(ctx); err != nil {
		b.Fatal(err)
	}
	for n := 0; n < b.N; n++ {
		// Floor: the same objects, written by a bare client.
		var objects []client.Object
		for _, svc := range svcs {
			got := &corev1.Service{}
			if err := admin.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
				b.Fatal(err)
			}
			objects = append(objects, be.objects(b, got, health)...)
		}
		cpu, reqs := cpuTimes(), must(apiRequests(p.Config))
		start := time.Now()
		parallel(b, len(objects), workers, func(i int) error { return admin.Create(ctx, objects[i].DeepCopyObject().(client.Object)) })
		floor := time.Since(start)
		fmt.Fprintf(os.Stderr, "floor: %d objects written in %v; CPU: %s; API: %s\n", len(objects), floor.Round(time.Millisecond), cpuSince(cpu, floor), requestsSince(p.Config, reqs))
		// One by one: a collection delete of 20,000 policies outlives the
		// API server's request timeout.
		parallel(b, len(objects), 8, func(i int) error { return client.IgnoreNotFound(admin.Delete(ctx, objects[i])) })

		// The controller, from a cold start.
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		reg := prometheus.NewRegistry()
		mgr, err := ctrl.NewManager(p.Config, nlbpolicy.WithCache(ctrl.Options{
			Scheme: kubeapi.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
			Controller: config.Controller{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: workers},
		}))
		if err != nil {
			b.Fatal(err)
		}
		opts := nlbpolicy.DefaultOptions()
		opts.Backend = be.backend
		if _, err := nlbpolicy.Setup(mgr, nlbpolicy.Config{
			Options: opts, Sources: sources,
			SweepInterval: time.Hour, Registry: reg,
		}); err != nil {
			b.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		stopProfile := cpuProfile(b)
		reconciles := counterWith(b, crmetrics.Registry.(*prometheus.Registry), "controller_runtime_reconcile_total", nlbpolicy.ControllerName)
		cpu, reqs = cpuTimes(), must(apiRequests(p.Config))
		start = time.Now()
		go func() { done <- mgr.Start(mctx) }()
		var peak uint64
		var allWritten time.Duration // when every policy was in the API server
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			if allWritten == 0 && be.count(b, admin) == be.perService*benchServices {
				allWritten = time.Since(start)
			}
			if allWritten != 0 {
				// Converged when every Service is acknowledged: what an
				// apply waits for.
				if countAcknowledged(b, admin) == benchServices {
					break
				}
			}
			if time.Since(start) > convergeLimit {
				b.Fatalf("not converged after %v (policies all allWritten after %v)", convergeLimit, allWritten)
			}
			time.Sleep(200 * time.Millisecond)
		}
		converge := time.Since(start)
		stopProfile()
		fmt.Fprintf(os.Stderr, "controller: every policy written after %v (x%.2f the floor), every Service acknowledged after %v (x%.2f; "+
			"programming grace %v calico, %v networkpolicy); %.0f reconciles, writes %v; CPU: %s\n",
			allWritten.Round(time.Millisecond), allWritten.Seconds()/floor.Seconds(), converge.Round(time.Millisecond), converge.Seconds()/floor.Seconds(),
			nlbpolicy.DefaultProgrammingGrace, nlbpolicy.DefaultNetworkPolicyGrace,
			counterWith(b, crmetrics.Registry.(*prometheus.Registry), "controller_runtime_reconcile_total", nlbpolicy.ControllerName)-reconciles,
			byLabels(b, reg, "telemetry_nlbpolicy_api_writes_total"), cpuSince(cpu, converge))
		fmt.Fprintf(os.Stderr, "controller: API: %s\n", requestsSince(p.Config, reqs))
		convergeRequests := counter(b, reg, "telemetry_nlbpolicy_aws_requests_total")
		if err := be.same(ctx, admin, objects); err != nil {
			b.Fatal(err)
		}
		// Every Service reconciled once more with nothing to change: no write.
		written := counter(b, reg, "telemetry_nlbpolicy_api_writes_total")
		parallel(b, benchServices, 8, func(i int) error {
			got := &corev1.Service{}
			if err := admin.Get(ctx, client.ObjectKeyFromObject(svcs[i]), got); err != nil {
				return err
			}
			got.Annotations["bench/resync"] = fmt.Sprint(n)
			return admin.Update(ctx, got)
		})
		time.Sleep(10 * time.Second)
		steady := counter(b, reg, "telemetry_nlbpolicy_api_writes_total") - written
		steadyRequests := counter(b, reg, "telemetry_nlbpolicy_aws_requests_total") - convergeRequests
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// Latency of an edit: one Service's sources changed, until its
		// network set in the API server holds the new source; 100 edits one
		// after the other, then 100 Services edited at once.
		single := editLatenciesOf(b, admin, svcs[:100], be, false)
		burst := editLatenciesOf(b, admin, svcs[100:200], be, true)
		rulesAvoided := counter(b, reg, "telemetry_nlbpolicy_security_group_rules_avoided")
		reconcileErrors := counter(b, crmetrics.Registry.(*prometheus.Registry), "controller_runtime_reconcile_errors_total")
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(converge.Seconds(), "converge-s")
		b.ReportMetric(converge.Seconds()/floor.Seconds(), "converge-ratio")
		b.ReportMetric(allWritten.Seconds()/floor.Seconds(), "written-ratio")
		b.ReportMetric(steady, "steady-writes")
		b.ReportMetric(float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(peak-min(peak, before.HeapAlloc))/(1<<20), "peak-heap-MiB")
		b.ReportMetric(rulesAvoided, "sg-rules-avoided")
		b.ReportMetric(reconcileErrors, "reconcile-errors")
		b.ReportMetric(quantile(single, 0.5).Seconds()*1000, "edit-p50-ms")
		b.ReportMetric(quantile(single, 0.99).Seconds()*1000, "edit-p99-ms")
		b.ReportMetric(slices.Max(burst).Seconds()*1000, "burst-100-ms")
		fmt.Fprintf(os.Stderr, "edit of one Service's sources to its network set updated: p50 %v, p99 %v, max %v (100 edits); "+
			"100 Services edited at once: all enforced after %v\n", quantile(single, 0.5).Round(time.Millisecond),
			quantile(single, 0.99).Round(time.Millisecond), slices.Max(single).Round(time.Millisecond), slices.Max(burst).Round(time.Millisecond))
		b.ReportMetric(convergeRequests, "aws-requests")
		b.ReportMetric(steadyRequests, "steady-aws-requests")
		fmt.Fprintf(os.Stderr, "AWS %v: %.0f requests converging (%v), %.0f in steady state\n", withAWS, convergeRequests,
			byLabels(b, reg, "telemetry_nlbpolicy_aws_requests_total"), steadyRequests)
		fmt.Fprintf(os.Stderr, "backend %s: %d Services x %d sources: %d objects; floor %v, controller %v (x%.2f); steady-state writes %v; "+
			"heap after %.1f MiB (peak %.1f MiB above start); AWS LBC would need %v security-group rules (%d per Service, limit %d)\n",
			be.backend, benchServices, benchSources, len(objects), floor.Round(time.Millisecond), converge.Round(time.Millisecond),
			converge.Seconds()/floor.Seconds(), steady, float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/(1<<20),
			float64(peak-min(peak, before.HeapAlloc))/(1<<20), rulesAvoided, lbc.PerSourceRules(benchSources, []int{1}, 3),
			lbc.DefaultRulesPerSecurityGroup)
		if steady != 0 {
			b.Errorf("steady state made %v writes", steady)
		}
	}
}

// benchService is the i-th Service: 100 non-adjacent /32 sources, one UDP
// port, its own collectors (a selector of its own), instance targets; past 1,000 Services ip targets without NodePorts,
// since a cluster's NodePort range (2,768 ports, two for each Service with
// externalTrafficPolicy Local) holds about 1,380 instance-target Services.
func benchService(i int) *corev1.Service {
	var ranges []string
	for j := 0; j < benchSources; j++ {
		// Non-adjacent /32s: they do not aggregate.
		ranges = append(ranges, fmt.Sprintf("10.%d.%d.%d/32", 100+i/250, i%250, 2*j))
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("flows-%04d", i), Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.ManageBackendSecurityGroupRule: "false"}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": fmt.Sprintf("sfacctd-%04d", i)}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: ranges,
			Ports:                    []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}},
		},
	}
	if benchServices > 1000 {
		svc.Annotations[lbc.NLBTargetType] = lbc.TargetIP
		svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	return svc
}

func parallel(b *testing.B, n, workers int, f func(int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// editLatenciesOf changes one source of each Service (the last /32 moved to
// another address) and measures the time from the update to the backend's
// object in the API server holding the new source (be.holds), polled every
// 5 ms: the Services one after the other, or all at once (burst: the times
// are then from the first update).
func editLatenciesOf(b *testing.B, admin client.Client, svcs []*corev1.Service, be benchBackend, burst bool) []time.Duration {
	b.Helper()
	ctx := context.Background()
	type pending struct {
		svc *corev1.Service
		net string
	}
	edit := func(svc *corev1.Service) (pending, error) {
		got := &corev1.Service{}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
			return pending{}, err
		}
		ranges := got.Spec.LoadBalancerSourceRanges
		last := netip.MustParsePrefix(ranges[len(ranges)-1])
		moved := netip.PrefixFrom(last.Addr().Next(), 32).String()
		got.Spec.LoadBalancerSourceRanges = append(slices.Clone(ranges[:len(ranges)-1]), moved)
		return pending{svc, moved}, admin.Update(ctx, got)
	}
	// wait polls until every pending object holds its new source, and
	// returns when each was first seen so.
	wait := func(start time.Time, todo []pending) []time.Duration {
		var out []time.Duration
		for len(todo) > 0 {
			if time.Since(start) > time.Minute {
				b.Fatalf("%d edits not enforced within a minute, e.g. %s", len(todo), todo[0].svc.Name)
			}
			todo = slices.DeleteFunc(todo, func(p pending) bool {
				if !be.holds(ctx, admin, p.svc, p.net) {
					return false
				}
				out = append(out, time.Since(start))
				return true
			})
			time.Sleep(5 * time.Millisecond)
		}
		return out
	}
	if burst {
		todo := make([]pending, len(svcs))
		start := time.Now()
		parallel(b, len(svcs), 16, func(i int) error {
			var err error
			todo[i], err = edit(svcs[i])
			return err
		})
		return wait(start, todo)
	}
	var latencies []time.Duration
	for _, svc := range svcs {
		start := time.Now()
		p, err := edit(svc)
		if err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, wait(start, []pending{p})...)
	}
	return latencies
}

// quantile is the q-quantile of the durations (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Sorted(slices.Values(d))
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// seedNLBs makes in moto the NLB the AWS Load Balancer Controller would
// have made for each Service (its name shape k8s-<ns>-<name>-<hash>, its
// tags), plus 500 unrelated load balancers, writes each Service's status,
// and returns the NLBs' subnets' CIDRs (their health-check sources).
func seedNLBs(b *testing.B, p *localplane.Plane, admin client.Client, svcs []*corev1.Service) []string {
	b.Helper()
	ctx := context.Background()
	elb := elbv2.NewFromConfig(p.AWS.Config())
	var subnets, cidrs []string
	for _, sn := range p.AWS.Subnets {
		subnets, cidrs = append(subnets, sn.ID), append(cidrs, sn.CIDR)
	}
	slices.Sort(cidrs)
	create := func(name string, tags map[string]string) (string, error) {
		in := &elbv2.CreateLoadBalancerInput{Name: aws.String(name), Subnets: subnets, Type: elbv2types.LoadBalancerTypeEnumNetwork,
			Scheme: elbv2types.LoadBalancerSchemeEnumInternetFacing}
		for k, v := range tags {
			in.Tags = append(in.Tags, elbv2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		out, err := elb.CreateLoadBalancer(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.LoadBalancers[0].DNSName), nil
	}
	b.Logf("seeding moto with %d NLBs and 500 unrelated load balancers", len(svcs))
	parallel(b, 500, 8, func(i int) error {
		_, err := create(fmt.Sprintf("unrelated-%03d", i), map[string]string{"team": "other"})
		return err
	})
	parallel(b, len(svcs), 8, func(i int) error {
		svc := svcs[i]
		dns, err := create(fmt.Sprintf("k8s-%.8s-%.8s-%010x", svc.Namespace, strings.ReplaceAll(svc.Name, "-", ""), i), map[string]string{
			"elbv2.k8s.aws/cluster": p.AWS.ClusterName, lbc.StackTag: svc.Namespace + "/" + svc.Name, "service.k8s.aws/resource": "LoadBalancer"})
		if err != nil {
			return err
		}
		got := &corev1.Service{}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
			return err
		}
		got.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: dns}}
		return admin.Status().Update(ctx, got)
	})
	return cidrs
}

// convergeLimit ends a convergence that takes too long: 10 minutes, or
// BENCH_CONVERGE_LIMIT (a duration) for the 10,000-Service run.
var convergeLimit = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("BENCH_CONVERGE_LIMIT")); err == nil && d > 0 {
		return d
	}
	return 10 * time.Minute
}()

// cpuProfile starts a CPU profile of this process into BENCH_CPUPROFILE, if
// set (read it with go tool pprof -top); the returned function stops it.
func cpuProfile(b *testing.B) func() {
	b.Helper()
	path := os.Getenv("BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

// countAcknowledged counts the Services acknowledged for their current
// spec, 500 a page so that the benchmark's own lists do not weigh on the
// heap it measures (a list of 10,000 Services with 100 sources each is about
// 100 MB).
func countAcknowledged(b *testing.B, c client.Client) int {
	b.Helper()
	acked, next := 0, ""
	for {
		var sl corev1.ServiceList
		if err := c.List(context.Background(), &sl, client.InNamespace("default"), client.Limit(500), client.Continue(next)); err != nil {
			b.Fatal(err)
		}
		for i := range sl.Items {
			if ack.Current(&sl.Items[i]) {
				acked++
			}
		}
		if next = sl.Continue; next == "" {
			return acked
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// byLabels sums a counter family of the controller's registry by its label
// values joined with spaces: API writes by kind and operation, AWS requests by
// operation.
func byLabels(b *testing.B, reg *prometheus.Registry, name string) map[string]float64 {
	b.Helper()
	out, err := metricread.ByValues(reg, name, " ")
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func counter(b *testing.B, reg *prometheus.Registry, name string) float64 {
	b.Helper()
	return counterWith(b, reg, name, "")
}

// counterWith sums the counters and gauges of a family whose first label
// has this value (any, for "").
func counterWith(b *testing.B, reg *prometheus.Registry, name, value string) float64 {
	b.Helper()
	var prefix []string
	if value != "" {
		prefix = []string{value}
	}
	v, err := metricread.Sum(reg, name, prefix...)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
