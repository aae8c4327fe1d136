package conntrackagent_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// TestRevocationWithFelix: an exporter sending IPFIX over TCP to an
// nlb-policy Service (instance targets, the NodePort on a node where the
// real Felix enforces the real controller's policies) is removed from the
// Service's sources. Felix accepts packets of established connections
// before policy, so with the controller and Felix alone the connection keeps
// delivering (asserted: the gap this closes); with the agent it stops
// within the first revocation pass, while a kept source's connection goes on.
func TestRevocationWithFelix(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.New("ctrev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	kept := netip.MustParseAddr("192.0.2.3")
	if err := lab.AddClientAddress(netip.PrefixFrom(kept, 24)); err != nil {
		t.Fatal(err)
	}
	removed := netlab.ClientIP
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	t.Cleanup(lbs.Stop)
	stopController, err := p.StartNLBPolicyController(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopController() })
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no Node (%v)", err)
	}
	felix, err := p.StartFelix(ctx, lab.NSPath("node"), localplane.FelixNode{Name: nodes.Items[0].Name, IP: netlab.NodeIP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(felix.Stop)

	svcs := kube.CoreV1().Services("telemetry")
	svc, err := svcs.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ipfix", Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.Scheme: lbc.SchemeInternetFacing, lbc.ManageBackendSecurityGroupRule: "false"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "collector"}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: []string{removed.String() + "/32", kept.String() + "/32"},
			Ports:                    []corev1.ServicePort{{Name: "ipfix-tcp", Protocol: corev1.ProtocolTCP, Port: 4739}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitAck := func() *corev1.Service {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := svcs.Get(ctx, "ipfix", metav1.GetOptions{})
			if err == nil && ack.Current(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("no acknowledgement of the current sources (%v)", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	setSources := func(sources ...netip.Addr) {
		t.Helper()
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := svcs.Get(ctx, "ipfix", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.LoadBalancerSourceRanges = nil
			for _, s := range sources {
				cur.Spec.LoadBalancerSourceRanges = append(cur.Spec.LoadBalancerSourceRanges, s.String()+"/32")
			}
			_, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		waitAck()
	}
	svc = waitAck()
	nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[0].NodePort))
	collector := netip.AddrPortFrom(netlab.PodIP, 4739)
	if err := lab.DNATProto("tcp", nodePort, collector); err != nil { // kube-proxy's rule for the NodePort
		t.Fatal(err)
	}
	r, err := lab.ListenStream("pod", collector)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	// delivering says whether a source's connection delivered in the last second.
	delivering := func(src netip.Addr) bool {
		before, _ := r.From(src)
		time.Sleep(time.Second)
		after, _ := r.From(src)
		return after > before
	}
	stream := func(src netip.Addr) {
		t.Helper()
		s, err := lab.Stream(src, nodePort, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("%s could not connect: %v\n%s", src, err, felix.LogTail(10))
		}
		t.Cleanup(s.Stop)
	}
	stream(removed)
	stream(kept)
	if !delivering(removed) || !delivering(kept) {
		t.Fatal("the listed sources' connections do not deliver")
	}

	t.Run("without the agent, a removed source's connection keeps passing", func(t *testing.T) {
		setSources(kept)
		time.Sleep(time.Second) // Felix programs the new policy (p99 about 120 ms, bench/README.md)
		if !delivering(removed) {
			t.Fatal("the removed source's established connection stopped by itself: Felix no longer accepts established connections first, and this test's premise is gone")
		}
		if err := lab.DialTCP(removed, nodePort, time.Second); err == nil {
			t.Fatal("a new connection from the removed source was accepted: the policy was not enforced")
		}
	})

	t.Run("with the agent, it is closed once the controller acknowledges the new set", func(t *testing.T) {
		setSources(removed, kept) // allowed again; the old connection still runs
		ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 1}
		reg := prometheus.NewRegistry()
		agent := conntrackagent.New(conntrackagent.Config{Client: kube, Conntrack: ct, NodeName: nodes.Items[0].Name, Period: time.Hour,
			Debounce: 50 * time.Millisecond, TombstoneTTL: time.Minute, LocalAddrs: ct.LocalAddrs,
			Revoke:  []time.Duration{500 * time.Millisecond, 2 * time.Second},
			Metrics: conntrackagent.NewMetrics(reg), Log: testr.New(t)})
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- agent.Run(actx) }()
		defer func() { stop(); <-done }()
		for agent.Ready() != nil {
			time.Sleep(20 * time.Millisecond)
		}
		edited := time.Now()
		setSources(kept)
		deadline := time.Now().Add(10 * time.Second)
		for delivering(removed) {
			if time.Now().After(deadline) {
				t.Fatalf("the removed source's connection still delivers 10 s after the edit\n%s", felix.LogTail(10))
			}
		}
		_, last := r.From(removed)
		t.Logf("the removed source's established TCP connection delivered its last message %v after the Service edit", last.Sub(edited).Round(10*time.Millisecond))
		if !delivering(kept) {
			t.Fatal("the kept source's connection stopped too")
		}
		time.Sleep(3 * time.Second) // the later pass, and whatever the connection retransmits
		if delivering(removed) {
			t.Fatal("the removed source's connection came back")
		}
		series, err := metricread.Read(reg, "telemetry_conntrack_connections_revoked_total")
		if err != nil || len(series) == 0 {
			t.Fatalf("no telemetry_conntrack_connections_revoked_total series (%v)", err)
		}
		t.Logf("revoked metric: %v", series[0].Value)
	})
}
