package conntrackagent_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
)

// TestAgentWithMetalLBAddressBeforeKubeProxy: on bare metal MetalLB's
// speaker and kube-proxy each act on a Service's new address on their own.
// When the speaker answers ARP and NDP for it before kube-proxy's next sync
// (here kube-proxy rate-limits its syncs to one per 10 s, as large clusters
// set --iptables-min-sync-period; its default is 1 s), an exporter's flow
// already sent to the address reaches the node un-NATed, and its conntrack
// entry pins it: the node forwards it as plain traffic, after kube-proxy's
// rules exist too (adding an address is not an endpoint change, after which
// kube-proxy would clean up). The Service goes from ClusterIP, its
// endpoints programmed, to LoadBalancer: MetalLB allocates and announces at
// once. Real MetalLB (L2), real kube-proxy (iptables), IPv4 and IPv6; first
// without the agent (the flows never reach the pod), then with it (they do;
// the times are logged and in docs/controllers/conntrack-agent.md).
func TestAgentWithMetalLBAddressBeforeKubeProxy(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	lab := netlab.ForTest(t, "cmlb", netip.MustParsePrefix("192.0.2.3/24"), netip.MustParsePrefix("2001:db8:2::3/64"))
	p := localplane.New(t, localplane.Options{NoAWS: true})
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const node = "cmlb-node"
	kp, err := p.StartKubeProxy(ctx, lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: node,
		NodeIPs: []netip.Addr{netlab.NodeIP, netlab.NodeIP6}, MinSyncPeriod: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kp.Stop)
	mlb, err := p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mlb.Stop)
	addrs := map[bool][2]netip.Addr{ // with the agent? -> IPv4, IPv6
		false: {netip.MustParseAddr("192.0.2.110"), netip.MustParseAddr("2001:db8:2::110")},
		true:  {netip.MustParseAddr("192.0.2.111"), netip.MustParseAddr("2001:db8:2::111")},
	}
	var pool []netip.Prefix
	for _, a := range addrs {
		pool = append(pool, netip.PrefixFrom(a[0], 32), netip.PrefixFrom(a[1], 128))
	}
	if err := mlb.Pool(ctx, c, "late", pool...); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, withAgent := range []bool{false, true} {
		name, port := "without-agent", uint16(7100)
		if withAgent {
			name, port = "with-agent", 7200
			_, _, stop := startAgentIn(t, kube, lab, node)
			t.Cleanup(stop)
		}
		lb := addrs[withAgent]
		svc, err := kube.CoreV1().Services("late").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "late", Name: name, Annotations: map[string]string{
				localplane.PoolAnnotation: "late", localplane.AddressesAnnotation: lb[0].String() + "," + lb[1].String()}},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": name},
				IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack), IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
				Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: int32(port), TargetPort: intstr.FromInt32(int32(port + 1))}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var receivers []*netlab.Receiver
		for _, pod := range []netip.Addr{netlab.PodIP, netlab.PodIP6} {
			family := discoveryv1.AddressTypeIPv4
			if pod.Is6() {
				family = discoveryv1.AddressTypeIPv6
			}
			if _, err := kube.DiscoveryV1().EndpointSlices("late").Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "late", Name: name + "-" + strings.ToLower(string(family)), Labels: map[string]string{
					discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
				AddressType: family,
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{pod.String()}, NodeName: ptr.To(node),
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
				Ports: []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(port + 1))}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			r, err := lab.Listen("pod", netip.AddrPortFrom(pod, port+1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			receivers = append(receivers, r)
		}
		// kube-proxy has synced the endpoints (and cleaned up after them).
		eventuallyCT(t, "kube-proxy's rules for the Service's endpoints", func() (bool, string) {
			rules, _ := kp.Rules()
			return strings.Contains(rules, fmt.Sprintf("%s:%d", netlab.PodIP, port+1)) &&
				strings.Contains(rules, fmt.Sprintf("[%s]:%d", netlab.PodIP6, port+1)), rules
		})
		// The exporters send to the addresses (nowhere yet: nobody answers
		// ARP or NDP for them), then the Service becomes a LoadBalancer.
		for _, a := range lb {
			s, err := lab.Send(port+2, netip.AddrPortFrom(a, port), 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Stop)
		}
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		if _, err := kube.CoreV1().Services("late").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// MetalLB announces before kube-proxy's next sync: each flow
		// reaches the node un-NATed.
		for i, a := range lb {
			pod := []netip.Addr{netlab.PodIP, netlab.PodIP6}[i]
			eventuallyCT(t, fmt.Sprintf("a never-NATed conntrack entry on the node of the flow to %s (MetalLB answering for it)", a),
				func() (bool, string) {
					out, _ := lab.Output("node", "conntrack", "-L", "-p", "udp", "-d", a.String(), "--dport", fmt.Sprint(port), "-f", family(a))
					return strings.Contains(out, "dport="+fmt.Sprint(port)) && !strings.Contains(out, "src="+pod.String()+" "), out + "\n" + mlb.LogTail(5)
				})
			rules, _ := kp.Rules()
			if strings.Contains(rules, fmt.Sprintf("-d %s/%d ", a, a.BitLen())) {
				t.Fatalf("kube-proxy had the rules for %s when the flow reached the node: the scenario does not set up the race", a)
			}
			if n := receivers[i].Packets(); n != 0 {
				t.Fatalf("%d datagrams to %s reached the pod before kube-proxy had its rules", n, a)
			}
		}
		for _, a := range lb {
			eventuallyCT(t, fmt.Sprintf("kube-proxy's rules for %s", a), func() (bool, string) {
				rules, _ := kp.Rules()
				return strings.Contains(rules, fmt.Sprintf("-d %s/%d ", a, a.BitLen())), rules
			})
		}
		programmed := time.Now()
		for i, a := range lb {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			at, err := receivers[i].WaitPacket(wctx, programmed)
			cancel()
			switch {
			case !withAgent && err == nil:
				t.Errorf("without the agent the flow to %s reached the pod %v after kube-proxy's rules: it was not pinned, the scenario does not show the trap", a, at.Sub(programmed))
			case !withAgent:
				t.Logf("without the agent: the flow to %s pinned, nothing at the pod 5 s after kube-proxy's rules", a)
			case err != nil:
				out, _ := lab.Output("node", "conntrack", "-L", "-p", "udp", "-d", a.String(), "-f", family(a))
				t.Errorf("with the agent the flow to %s did not reach the pod within 5 s of kube-proxy's rules:\n%s", a, out)
			default:
				t.Logf("with the agent: the flow to %s at the pod %v after kube-proxy's rules", a, at.Sub(programmed).Round(10*time.Millisecond))
			}
		}
	}
}

func family(a netip.Addr) string {
	if a.Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// eventuallyCT waits up to 30 s for cond.
func eventuallyCT(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never: %s\n%s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
