package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// sourceCounts are the source-list sizes BenchmarkSourcesPerService tries:
// 1,000 / 10,000 / 50,000, or BENCH_SOURCES (comma-separated).
var sourceCounts = func() []int {
	var out []int
	for _, f := range strings.Split(os.Getenv("BENCH_SOURCES"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return []int{1000, 10000, 50000}
	}
	return out
}()

// BenchmarkSourcesPerService: the other axis of scale, sources per Service
// (a large CDN has thousands of exporters). For each backend and each size,
// one ip-target Service listing that many non-adjacent sources, half IPv4
// /32s and half IPv6 /128s (none aggregate), is created against the real
// API server with the real controller running both backends; it reports
// whether the Service is accepted, the size of the objects generated for
// it, the time from the create to the acknowledgement, or what refused it.
// Run with -benchtime=1x.
func BenchmarkSourcesPerService(b *testing.B) {
	p := localplane.New(b, localplane.Options{NoAWS: true})
	admin, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	opts := nlbpolicy.DefaultOptions()
	opts.Backends = nlbpolicy.Backends
	defer startBenchController(b, p, opts, &nlbpolicy.AWSSources{FallbackHealthCheckCIDRs: healthCIDRs})()

	for n := 0; n < b.N; n++ {
		for _, count := range sourceCounts {
			for _, backend := range nlbpolicy.Backends {
				name := fmt.Sprintf("sources-%s-%d-%d", backend, count, n)
				svc := manySourcesService(name, backend, count)
				raw, _ := json.Marshal(svc)
				start := time.Now()
				if err := admin.Create(ctx, svc); err != nil {
					fmt.Fprintf(os.Stderr, "%s, %d sources: the Service (%d KiB of JSON) refused: %v\n", backend, count, len(raw)/1024, short(err))
					continue
				}
				var got *corev1.Service
				deadline := time.Now().Add(3 * time.Minute)
				for {
					got = &corev1.Service{}
					if err := admin.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
						b.Fatal(err)
					}
					if ack.Current(got) || time.Now().After(deadline) {
						break
					}
					if a, ok := ack.Of(got); ok && a.Digest == "" && !strings.HasPrefix(a.Problem, "waiting") && a.Problem != "" {
						break // refused or failed: the problem says why
					}
					time.Sleep(50 * time.Millisecond)
				}
				took := time.Since(start)
				a, _ := ack.Of(got)
				size := generatedSize(ctx, b, admin, got, backend)
				if ack.Current(got) {
					fmt.Fprintf(os.Stderr, "%s, %d sources: Service %d KiB of JSON; generated %s; acknowledged %v after the create\n",
						backend, count, len(raw)/1024, size, took.Round(time.Millisecond))
					b.ReportMetric(took.Seconds(), fmt.Sprintf("%s-%d-ack-s", backend, count))
				} else {
					fmt.Fprintf(os.Stderr, "%s, %d sources: Service %d KiB of JSON; generated %s; not acknowledged after %v: %s\n",
						backend, count, len(raw)/1024, size, took.Round(time.Millisecond), short(fmt.Errorf("%s", a.Problem)))
				}
				if err := admin.Delete(ctx, got); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// manySourcesService is an ip-target NLB Service with count non-adjacent
// sources, half IPv4 and half IPv6, enforced by backend.
func manySourcesService(name string, backend nlbpolicy.Backend, count int) *corev1.Service {
	ranges := make([]string, 0, count)
	v4, v6 := netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("2001:db8::")
	for i := 0; i < count; i++ {
		if i%2 == 0 {
			ranges = append(ranges, netip.PrefixFrom(v4, 32).String())
			v4 = v4.Next().Next()
		} else {
			ranges = append(ranges, netip.PrefixFrom(v6, 128).String())
			v6 = v6.Next().Next()
		}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.ManageBackendSecurityGroupRule: "false",
			lbc.NLBTargetType: lbc.TargetIP, annotations.PolicyBackend: string(backend)}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": name}, AllocateLoadBalancerNodePorts: ptr.To(false),
			LoadBalancerSourceRanges: ranges,
			Ports:                    []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}},
		},
	}
}

// generatedSize says how many objects the controller wrote for a Service
// and their size as JSON.
func generatedSize(ctx context.Context, b *testing.B, c client.Client, svc *corev1.Service, backend nlbpolicy.Backend) string {
	b.Helper()
	var objs []any
	switch backend {
	case nlbpolicy.BackendCalico:
		owner := client.MatchingLabels{annotations.OwnerNamespace: svc.Namespace, annotations.OwnerName: svc.Name}
		var ps calicov3.GlobalNetworkPolicyList
		var ss calicov3.GlobalNetworkSetList
		if err := c.List(ctx, &ps, owner); err != nil {
			b.Fatal(err)
		}
		if err := c.List(ctx, &ss, owner); err != nil {
			b.Fatal(err)
		}
		for i := range ps.Items {
			objs = append(objs, ps.Items[i])
		}
		for i := range ss.Items {
			objs = append(objs, ss.Items[i])
		}
	case nlbpolicy.BackendNetworkPolicy:
		np := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: svc.Namespace, Name: nlbpolicy.NetworkPolicyName(svc.Namespace, svc.Name)}, np); err == nil {
			objs = append(objs, np)
		}
	}
	total := 0
	for _, o := range objs {
		raw, _ := json.Marshal(o)
		total += len(raw)
	}
	return fmt.Sprintf("%d objects, %d KiB of JSON", len(objs), total/1024)
}

// short cuts an error to its first 300 characters.
func short(err error) string {
	s := err.Error()
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
