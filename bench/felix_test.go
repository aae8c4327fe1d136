package bench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// felixEdits is how many times each path removes and re-admits the source.
const felixEdits = 20

// BenchmarkFelixEnforcement measures, at the packet level, how long after a
// Service edit that removes a source its one-way UDP flow stops: from the
// edit to the last packet that still reached the collector (the product's
// path: Service -> nlb-policy controller -> policy in the API server ->
// Felix). The floor, in the same run, is Felix alone: a hand-written Deny
// policy for the source created in the API server, same measure. Both are
// undone after each measure (the source re-admitted, the Deny deleted).
func BenchmarkFelixEnforcement(b *testing.B) {
	if err := netlab.Check(); err != nil {
		b.Fatal(err)
	}
	lab, err := netlab.New("fb")
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	p := localplane.New(b, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}); err != nil {
		b.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	stop, err := p.StartNLBPolicyController(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stop() }()
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		b.Fatalf("no Node (%v)", err)
	}
	felix, err := p.StartFelix(ctx, lab.NSPath("node"), localplane.FelixNode{Name: nodes.Items[0].Name, IP: netlab.NodeIP})
	if err != nil {
		b.Fatal(err)
	}
	defer felix.Stop()

	source := netlab.ClientIP
	listed := []string{source.String() + "/32", "198.51.100.200/32"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows", Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.Scheme: lbc.SchemeInternetFacing, lbc.ManageBackendSecurityGroupRule: "false"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "sfacctd"}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: listed,
			Ports:                    []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "the acknowledgement", func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(svc), svc)
		return ack.Current(svc)
	})
	nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[0].NodePort))
	collector := netip.AddrPortFrom(netlab.PodIP, 6343)
	if err := lab.DNATProto("udp", nodePort, collector); err != nil {
		b.Fatal(err)
	}
	r, err := lab.Listen("pod", collector)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	const interval = 5 * time.Millisecond
	sender, err := lab.SendFrom(netip.AddrPortFrom(source, 40000), nodePort, interval)
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Stop()

	flowing := func() bool { _, last := r.From(source); return time.Since(last) < 100*time.Millisecond }
	// stopped measures, after cut, how long the flow kept reaching the
	// collector, then waits for restore to bring it back.
	stopped := func(cut, restore func()) time.Duration {
		waitFor(b, "the flow", flowing)
		at := time.Now()
		cut()
		waitFor(b, "the flow to stop", func() bool { _, last := r.From(source); return time.Since(last) > 500*time.Millisecond })
		_, last := r.From(source)
		restore()
		waitFor(b, "the flow back", flowing)
		return max(last.Sub(at), 0)
	}
	setSources := func(ranges []string) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
				return err
			}
			svc.Spec.LoadBalancerSourceRanges = ranges
			return c.Update(ctx, svc)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	floorPolicy := func() *calicov3.GlobalNetworkPolicy {
		return &calicov3.GlobalNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "bench-floor-deny"},
			Spec: calicov3.GlobalNetworkPolicySpec{
				Tier: nlbpolicy.DefaultTier, Order: ptr.To(10.0), Selector: nlbpolicy.DefaultOptions().HostEndpointSelector,
				PreDNAT: true, ApplyOnForward: true, Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress},
				Ingress: []calicov3.Rule{{Action: calicov3.Deny, Protocol: ptr.To(numorstring.ProtocolFromString("UDP")),
					Source:      calicov3.EntityRule{Nets: []string{source.String() + "/32"}},
					Destination: calicov3.EntityRule{Ports: []numorstring.Port{numorstring.SinglePort(nodePort.Port())}}}},
			},
		}
	}
	for n := 0; n < b.N; n++ {
		var product, floor []time.Duration
		for i := 0; i < felixEdits; i++ {
			product = append(product, stopped(func() { setSources(listed[1:]) }, func() { setSources(listed) }))
			floor = append(floor, stopped(func() {
				if err := c.Create(ctx, floorPolicy()); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if err := c.Delete(ctx, floorPolicy()); err != nil {
					b.Fatal(err)
				}
			}))
		}
		pp50, pp99, fp50, fp99 := percentile(product, 50), percentile(product, 99), percentile(floor, 50), percentile(floor, 99)
		b.ReportMetric(pp99.Seconds()*1000, "product-p99-ms")
		b.ReportMetric(fp99.Seconds()*1000, "floor-p99-ms")
		fmt.Printf("Service edit -> removed source's flow stopped (%d edits): p50 %.0f ms, p99 %.0f ms; "+
			"floor (a Deny policy written directly): p50 %.0f ms, p99 %.0f ms; ratio p50 %.2f, p99 %.2f\n",
			felixEdits, ms(pp50), ms(pp99), ms(fp50), ms(fp99), pp50.Seconds()/fp50.Seconds(), pp99.Seconds()/fp99.Seconds())
	}
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// percentile is the nearest-rank percentile.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
