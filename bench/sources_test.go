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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
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

// BenchmarkSourcesProgrammed: how long real Felix takes to enforce a long
// source list, with each backend. A collector pod (a Calico workload in a
// lab namespace) receives a listed and an unlisted UDP flow; then an
// ip-target Service listing the listed source among count others (half
// IPv4, half IPv6) is created. Measured from the create: the unlisted
// flow's last datagram (the policy programmed), and the acknowledgement.
// The listed flow must not lose a datagram meanwhile. Sizes as
// BenchmarkSourcesPerService (BENCH_SOURCES). Run with -benchtime=1x.
func BenchmarkSourcesProgrammed(b *testing.B) {
	if err := netlab.Check(); err != nil {
		b.Fatal(err)
	}
	lab, err := netlab.New("sp")
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	unlisted := netip.MustParseAddr("192.0.2.3")
	if err := lab.AddClientAddress(netip.PrefixFrom(unlisted, 24)); err != nil {
		b.Fatal(err)
	}
	p := localplane.New(b, localplane.Options{})
	admin, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var nodes corev1.NodeList
	if err := admin.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		b.Fatalf("no Node in the plane (%v)", err)
	}
	node := nodes.Items[0].Name
	felix, err := p.StartFelix(ctx, lab.NSPath("node"), localplane.FelixNode{Name: node, IP: netlab.NodeIP, IP6: netlab.NodeIP6})
	if err != nil {
		b.Fatal(err)
	}
	defer felix.Stop()
	opts := nlbpolicy.DefaultOptions()
	opts.Backends = nlbpolicy.Backends
	defer startBenchController(b, p, opts, &nlbpolicy.AWSSources{FallbackHealthCheckCIDRs: healthCIDRs})()
	kube := kubernetes.NewForConfigOrDie(p.Config)
	link, err := pipeline.Workload(ctx, kube, lab, node, "pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: "default", Name: "collector", Labels: map[string]string{"app": "collector"}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := waitUntil(time.Minute, func() bool {
		rules, err := felix.Rules()
		return err == nil && strings.Contains(rules, ":cali-tw-"+link)
	}); err != nil {
		b.Fatalf("Felix never programmed the workload: %v", err)
	}
	collector := netip.AddrPortFrom(netlab.PodIP, 6343)
	r, err := lab.Listen("pod", collector)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for n := 0; n < b.N; n++ {
		for _, count := range sourceCounts {
			for _, backend := range nlbpolicy.Backends {
				svc := manySourcesService(fmt.Sprintf("programmed-%s-%d-%d", backend, count, n), backend, count-1)
				svc.Spec.Selector = map[string]string{"app": "collector"}
				svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, netlab.ClientIP.String()+"/32")
				listedBefore, _ := r.From(netlab.ClientIP)
				listed, err := lab.SendFrom(netip.AddrPortFrom(netlab.ClientIP, 42001), collector, 10*time.Millisecond)
				if err != nil {
					b.Fatal(err)
				}
				other, err := lab.SendFrom(netip.AddrPortFrom(unlisted, 42002), collector, 10*time.Millisecond)
				if err != nil {
					b.Fatal(err)
				}
				if err := waitUntil(10*time.Second, func() bool { n, _ := r.From(unlisted); return n > 0 }); err != nil {
					b.Fatalf("the unlisted flow does not reach the pod before the Service: %v", err)
				}
				start := time.Now()
				if err := admin.Create(ctx, svc); err != nil {
					b.Fatal(err)
				}
				var acked time.Duration
				if err := waitUntil(3*time.Minute, func() bool {
					got := &corev1.Service{}
					if admin.Get(ctx, client.ObjectKeyFromObject(svc), got) == nil && ack.Current(got) && acked == 0 {
						acked = time.Since(start)
					}
					_, last := r.From(unlisted)
					return acked != 0 && time.Since(last) > time.Second
				}); err != nil {
					b.Fatalf("%s, %d sources: not enforced after 3 minutes (acknowledged after %v)", backend, count, acked)
				}
				_, last := r.From(unlisted)
				programmed := last.Sub(start)
				other.Stop()
				listed.Stop()
				if err := waitUntil(10*time.Second, func() bool { n, _ := r.From(netlab.ClientIP); return n-listedBefore == listed.Sent() }); err != nil {
					n, _ := r.From(netlab.ClientIP)
					fmt.Fprintf(os.Stderr, "%s, %d sources: the listed flow lost %d of %d datagrams\n", backend, count, listed.Sent()-(n-listedBefore), listed.Sent())
				}
				fmt.Fprintf(os.Stderr, "%s, %d sources: Felix enforced (the unlisted flow's last datagram) %v after the create; acknowledged %v after\n",
					backend, count, programmed.Round(time.Millisecond), acked.Round(time.Millisecond))
				b.ReportMetric(programmed.Seconds(), fmt.Sprintf("%s-%d-felix-s", backend, count))
				if acked < programmed {
					b.Errorf("%s, %d sources: acknowledged %v before Felix enforced the list", backend, count, (programmed - acked).Round(time.Millisecond))
				}
				if err := admin.Delete(ctx, svc); err != nil {
					b.Fatal(err)
				}
				// Gone: the pod is open to the unlisted source again.
				if err := waitUntil(time.Minute, func() bool {
					err := admin.Get(ctx, client.ObjectKeyFromObject(svc), &corev1.Service{})
					return apierrors.IsNotFound(err)
				}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
