package conntrackagent_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/baremetal"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
)

// TestPodMovesBetweenNodesOverBGP: a bare-metal site of two nodes behind a
// BGP router (Debian's gobgpd, installing every path it learns: ECMP), real
// MetalLB announcing a Service's address over BGP from each node with a
// ready endpoint (externalTrafficPolicy Local), real kube-proxy on each
// node. An exporter behind the router sends a constant UDP flow (a datagram
// every 20 ms) while the collector pod moves from one node to the other,
// twice: as a rolling update does it (the new pod ready before the old one
// goes: for a moment both nodes announce and the router has two paths), and
// as a recreate does (the old pod gone first, the new one ready a second
// later: no node announces in between). The flow must reach the new pod
// after each move; the datagrams lost each time are logged (the figures in
// docs/controllers/conntrack-agent.md; timings, so not asserted). Once
// without the conntrack agent, once with it on both nodes. IPv4 only:
// MetalLB's native BGP mode refuses IPv6 pools.
func TestPodMovesBetweenNodesOverBGP(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	lab := netlab.ForTest(t, "cmv")
	if err := lab.AddSecondNode(); err != nil {
		t.Fatal(err)
	}
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
	nodes := []struct{ name, ns, podNS string }{{"cmv-node-a", "node", "pod"}, {"cmv-node-b", "node2", "node2pod"}}
	pods := []netip.Addr{netlab.PodIP, netlab.Node2PodIP}
	for i, nodeIP := range []netip.Addr{netlab.NodeIP, netlab.Node2IP} {
		kp, err := p.StartKubeProxy(ctx, lab.NSPath(nodes[i].ns), localplane.KubeProxyOptions{Mode: "iptables", Node: nodes[i].name,
			NodeIPs: []netip.Addr{nodeIP}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kp.Stop)
	}
	mlb, err := p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: nodes[0].name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mlb.Stop)
	if err := mlb.AddSpeaker(ctx, lab.NSPath("node2"), nodes[1].name); err != nil {
		t.Fatal(err)
	}
	addrs := map[bool]netip.Addr{false: netip.MustParseAddr("203.0.113.60"), true: netip.MustParseAddr("203.0.113.61")}
	router, err := baremetal.Router(lab, []netip.Prefix{netip.PrefixFrom(addrs[false], 32), netip.PrefixFrom(addrs[true], 32)},
		netlab.BGPPeer{Addr: netlab.NodeIP, ASN: baremetal.ClusterASN}, netlab.BGPPeer{Addr: netlab.Node2IP, ASN: baremetal.ClusterASN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Stop)
	if err := mlb.BGPPoolNodes(ctx, c, "move", baremetal.ClusterASN, baremetal.RouterASN,
		[]localplane.NodePeer{{Node: nodes[0].name, Router: netlab.ClientIP}, {Node: nodes[1].name, Router: netlab.ClientNode2IP}},
		netip.PrefixFrom(addrs[false], 32), netip.PrefixFrom(addrs[true], 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "move"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := func() string { return router.Log(10) + "\n" + mlb.LogTail(10) }
	losses := map[string][2]int64{}
	for _, withAgent := range []bool{false, true} {
		name, port, lb := "without-agent", uint16(7300), addrs[withAgent]
		if withAgent {
			name, port = "with-agent", 7400
			for _, n := range nodes {
				_, _, stop := startAgentInNS(t, kube, lab, n.ns, n.name)
				t.Cleanup(stop)
			}
		}
		route := netip.PrefixFrom(lb, 32)
		// The Service's endpoints: the collector on these nodes (indexes).
		endpoints := func(on ...int) {
			t.Helper()
			slice := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "move", Name: name, Labels: map[string]string{
					discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(port + 1))}},
			}
			for _, i := range on {
				slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{pods[i].String()},
					NodeName: ptr.To(nodes[i].name), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
			}
			api := kube.DiscoveryV1().EndpointSlices("move")
			if cur, err := api.Get(ctx, name, metav1.GetOptions{}); err == nil {
				cur.Endpoints = slice.Endpoints
				_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if _, err := api.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		hopsAre := func(want ...netip.Addr) {
			t.Helper()
			slices.SortFunc(want, netip.Addr.Compare) // as NextHops gives them
			eventuallyCT(t, fmt.Sprintf("the router's route to %s through %v", lb, want), func() (bool, string) {
				got := router.NextHops(route)
				return slices.Equal(got, want), fmt.Sprintf("through %v\n%s", got, logs())
			})
		}
		var receivers []*netlab.Receiver
		for i, n := range nodes {
			r, err := lab.Listen(n.podNS, netip.AddrPortFrom(pods[i], port+1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			receivers = append(receivers, r)
		}
		if _, err := kube.CoreV1().Services("move").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "move", Name: name, Annotations: map[string]string{
				localplane.PoolAnnotation: "move", localplane.AddressesAnnotation: lb.String()}},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, AllocateLoadBalancerNodePorts: ptr.To(false),
				IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack), IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: int32(port), TargetPort: intstr.FromInt32(int32(port + 1))}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		endpoints(0)
		sender, err := lab.Send(port+2, netip.AddrPortFrom(lb, port), 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sender.Stop)
		hopsAre(netlab.NodeIP)
		steady(t, receivers[0])
		received := func() int64 { return receivers[0].Packets() + receivers[1].Packets() }
		// move runs a move's steps, then waits for the flow at the new
		// pod, and returns the datagrams lost from its start to a second
		// after the flow is back.
		move := func(what string, to int, steps func()) int64 {
			t.Helper()
			sent0, received0, start := sender.Sent(), received(), time.Now()
			steps()
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			at, err := receivers[to].WaitPacket(wctx, time.Now())
			cancel()
			if err != nil {
				t.Fatalf("%s: the flow never reached the new pod on %s\n%s", what, nodes[to].name, logs())
			}
			eventuallyCT(t, "a second of flow after "+what, func() (bool, string) { return time.Since(at) > time.Second, "" })
			lost := (sender.Sent() - sent0) - (received() - received0)
			t.Logf("%s, %s: %d datagrams of %d lost; the flow at the new pod %v after the move began",
				name, what, lost, sender.Sent()-sent0, at.Sub(start).Round(10*time.Millisecond))
			return lost
		}
		rolling := move("rolling update (node a to b)", 1, func() {
			endpoints(0, 1)
			hopsAre(netlab.NodeIP, netlab.Node2IP) // both announce: ECMP
			endpoints(1)
			hopsAre(netlab.Node2IP)
		})
		recreate := move("recreate (node b to a, 1 s without a pod)", 0, func() {
			endpoints()
			eventuallyCT(t, "the route withdrawn", func() (bool, string) {
				return len(router.NextHops(route)) == 0, logs()
			})
			time.Sleep(time.Second) // the new pod's start-up (the gap being measured)
			endpoints(0)
			hopsAre(netlab.NodeIP)
		})
		losses[name] = [2]int64{rolling, recreate}
	}
	t.Logf("datagrams lost (rolling, recreate): without the agent %v, with it %v", losses["without-agent"], losses["with-agent"])
}
