package nlbpolicy_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/baremetal"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
)

// The addresses of the MetalLB pool: on the exporters' LAN (the lab's
// client link), so the exporters reach them through the speaker's ARP and
// NDP answers, as on a bare-metal site. The run without the product has
// addresses of its own (kube-proxy keeps the conntrack entries of a deleted
// Service's flows when another Service takes its address within a sync, so
// reusing them would carry that run's flows into the next).
var (
	metalLBIP4, metalLBIP6       = netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8:2::100")
	baselineLBIP4, baselineLBIP6 = netip.MustParseAddr("192.0.2.101"), netip.MustParseAddr("2001:db8:2::101")
)

// TestNetworkPolicyBackendWithMetalLB: bare metal, with every part real:
// MetalLB's controller gives a Service (externalTrafficPolicy Local,
// dual-stack) an IPv4 and an IPv6 address of a pool on the exporters' LAN,
// its speaker announces them over L2 from the node, kube-proxy forwards them
// to the collector pod, and kube-router enforces the NetworkPolicy the
// controller writes (no cloud firewall anywhere).
//
// First without the product (the Service not opted in), what the cluster
// alone does: kube-proxy refuses new flows of unlisted sources to the
// load balancer's address (it implements loadBalancerSourceRanges there),
// but not through the Service's NodePort, and a source removed from the list
// keeps its running one-way flow (kube-proxy's filter is in the nat table,
// which only a flow's first packet traverses).
//
// Then opted in, without NodePorts: the exporters, listed and unlisted,
// send to the addresses from before the Service exists; the listed ones
// arrive over IPv4 and IPv6, the unlisted ones never at any moment of the
// create, the edit or the delete; a source removed by an edit stops (the
// time is logged), and after the delete nothing arrives.
func TestNetworkPolicyBackendWithMetalLB(t *testing.T) {
	t.Parallel() // on a plane of its own
	rootBefore := rootFirewall(t)
	bm := startBareMetal(t, "mlb")
	lab, c, kube, kp, node, logs := bm.lab, bm.c, bm.kube, bm.kp, bm.node, bm.logs
	ctx := context.Background()
	var pool []netip.Prefix
	for _, a := range []netip.Addr{metalLBIP4, metalLBIP6, baselineLBIP4, baselineLBIP6} {
		pool = append(pool, netip.PrefixFrom(a, a.BitLen()))
	}
	if err := bm.mlb.Pool(ctx, c, "exporters", pool...); err != nil {
		t.Fatal(err)
	}

	r := &npRun{t: t, lab: lab, c: c, enforcer: logs,
		npKey: client.ObjectKey{Namespace: "telemetry", Name: nlbpolicy.NetworkPolicyName("telemetry", "bare-metal")}}
	baseline(t, r, kube, kp, node)

	lb4, lb6 := netip.AddrPortFrom(metalLBIP4, 6343), netip.AddrPortFrom(metalLBIP6, 6343)

	r.r4, r.r6 = r.listen(netip.AddrPortFrom(netlab.PodIP, 6343)), r.listen(netip.AddrPortFrom(netlab.PodIP6, 6343))
	r.l4, r.l6 = r.send(netlab.ClientIP, 40001, lb4), r.send(netlab.ClientIP6, 40002, lb6)
	r.send(unlisted4, 40003, lb4)
	r.send(unlisted6, 40004, lb6)

	r.svc = metalLBService("bare-metal", metalLBIP4, metalLBIP6, func(s *corev1.Service) {
		s.Annotations[annotations.NLBPolicy] = annotations.Enabled
		s.Annotations[annotations.PolicyBackend] = string(nlbpolicy.BackendNetworkPolicy)
		s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	})
	created := time.Now()
	createWithEndpoints(t, r, kube, node)
	r.acknowledged("the acknowledgement of the NetworkPolicy")
	if err := c.Get(ctx, r.npKey, &networkingv1.NetworkPolicy{}); err != nil {
		t.Fatalf("the Service's NetworkPolicy: %v", err)
	}
	eventually(t, "the listed exporters' datagrams at the collector, through MetalLB's addresses", func() (bool, string) {
		n4, _ := r.r4.From(netlab.ClientIP)
		n6, _ := r.r6.From(netlab.ClientIP6)
		return n4 > 0 && n6 > 0, fmt.Sprintf("IPv4 %d, IPv6 %d; %s", n4, n6, logs(5))
	})
	t.Logf("the listed flows arrived %.0f ms (IPv4) and %.0f ms (IPv6) after the Service was created",
		r.r4.First().Sub(created).Seconds()*1000, r.r6.First().Sub(created).Seconds()*1000)
	r.unlistedNever("through the create")

	update(t, c, r.svc, func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{netlab.ClientIP6.String() + "/128"}
	})
	edited := time.Now()
	stopped(t, "the removed IPv4 source's flow", r.r4, netlab.ClientIP)
	_, last := r.r4.From(netlab.ClientIP)
	t.Logf("a removed source's one-way UDP flow through MetalLB stopped %.0f ms after the Service edit", last.Sub(edited).Seconds()*1000)
	r.acknowledged("the acknowledgement of the edit")
	r.unlistedNever("through the edit")

	if err := c.Delete(ctx, r.svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Service and its NetworkPolicy gone", func() (bool, string) {
		_, ok := get(t, c, r.svc)
		err := c.Get(ctx, r.npKey, &networkingv1.NetworkPolicy{})
		return !ok && apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	// Nothing NATs the flow any more, but kube-proxy leaves its conntrack
	// entry (before 1.38), so the flow stops when the exporter can no longer
	// reach the node: once the speaker no longer answers for the address and
	// the exporter's neighbour entry fails (NUD: reachable up to 45 s, then
	// 5 s of delay and 3 probes a second apart), beyond eventually's 30 s on
	// some runs.
	stoppedWithin(t, "the listed IPv6 flow, once the Service is gone", r.r6, netlab.ClientIP6, 60*time.Second)
	r.unlistedNever("through the delete")
	if after := rootFirewall(t); after != rootBefore {
		t.Errorf("the root namespace's firewall changed:\nbefore:\n%s\nafter:\n%s", rootBefore, after)
	}
}

// endpointSlice gives the Service a ready endpoint of one family on the
// node (what the EndpointSlice controller writes for a ready pod there).
func endpointSlice(ctx context.Context, kube kubernetes.Interface, service string, pod netip.Addr, node string) error {
	family := discoveryv1.AddressTypeIPv4
	if pod.Is6() {
		family = discoveryv1.AddressTypeIPv6
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: service + "-" + strings.ToLower(string(family)), Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{pod.String()}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("sflow"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(6343))}},
	}
	_, err := kube.DiscoveryV1().EndpointSlices("telemetry").Create(ctx, slice, metav1.CreateOptions{})
	return err
}

// metalLBService is a Service of type LoadBalancer asking MetalLB for these
// addresses of the pool "exporters", externalTrafficPolicy Local, listing
// the lab's client (IPv4 and IPv6), not opted in.
func metalLBService(name string, ip4, ip6 netip.Addr, mutate func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: name, Annotations: map[string]string{
			localplane.PoolAnnotation: "exporters", localplane.AddressesAnnotation: ip4.String() + "," + ip6.String()}},

		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "sfacctd"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicyRequireDualStack), IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			LoadBalancerSourceRanges: []string{netlab.ClientIP.String() + "/32", netlab.ClientIP6.String() + "/128"},
			Ports:                    []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343, TargetPort: intstr.FromInt32(6343)}},
		},
	}
	mutate(svc)
	return svc
}

// createWithEndpoints creates r.svc with a ready endpoint of each family on
// the node and waits for MetalLB's two addresses in its status.
func createWithEndpoints(t *testing.T, r *npRun, kube kubernetes.Interface, node string) {
	t.Helper()
	ctx := context.Background()
	if err := r.c.Create(ctx, r.svc); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []netip.Addr{netlab.PodIP, netlab.PodIP6} {
		if err := endpointSlice(ctx, kube, r.svc.Name, pod, node); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "MetalLB's addresses in the Service's status", func() (bool, string) {
		got, ok := get(t, r.c, r.svc)
		var have []string
		for _, in := range got.Status.LoadBalancer.Ingress {
			have = append(have, in.IP)
		}
		for _, want := range strings.Split(r.svc.Annotations[localplane.AddressesAnnotation], ",") {
			if !slices.Contains(have, want) {
				return false, fmt.Sprintf("%v; %s", have, r.enforcer(5))
			}
		}
		return ok, "not found"
	})
}

// stopped waits until the flow of src at rc has been silent for half a
// second (ten of its intervals).
func stopped(t *testing.T, what string, rc *netlab.Receiver, src netip.Addr) {
	t.Helper()
	stoppedWithin(t, what, rc, src, 30*time.Second)
}

// stoppedWithin is stopped with its own bound.
func stoppedWithin(t *testing.T, what string, rc *netlab.Receiver, src netip.Addr, bound time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(bound)
	for {
		_, last := rc.From(src)
		if time.Since(last) > 500*time.Millisecond {
			t.Logf("%s: the last datagram came %v after the wait began", what, last.Sub(start).Round(10*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s to stop: last datagram %s ago", what, time.Since(last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// baseline is the run without the product: a Service through the same
// MetalLB, kube-proxy and kube-router, not opted in, with its NodePort, at
// addresses of its own, from exporters of its own (192.0.2.4 to .7), so
// nothing of it is counted later. It leaves no Service, flow or receiver
// behind. What it shows of kube-proxy alone: it refuses new flows of
// unlisted sources at the load balancer's address, not at the NodePort; a
// source removed from the list keeps its running one-way flow (the filter
// is in the nat table, which only a flow's first packet traverses); and a
// Service whose list names no IPv4 net admits every IPv4 source at the
// address (kube-proxy filters a family only when the list names one of it).
func baseline(t *testing.T, r *npRun, kube kubernetes.Interface, kp *localplane.KubeProxy, node string) {
	ctx := context.Background()
	var (
		listed, kept, unlisted, viaNodePort = netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("192.0.2.6"),
			netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.4")
	)
	for _, a := range []netip.Addr{listed, kept, unlisted, viaNodePort} {
		if err := r.lab.AddClientAddress(netip.PrefixFrom(a, 24)); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := r.lab.Listen("pod", netip.AddrPortFrom(netlab.PodIP, 6343))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var senders []*netlab.Sender
	defer func() {
		for _, s := range senders {
			s.Stop()
		}
	}()
	send := func(src netip.Addr, port uint16, dst netip.AddrPort) {
		s, err := r.lab.SendFrom(netip.AddrPortFrom(src, port), dst, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, s)
	}
	lb := netip.AddrPortFrom(baselineLBIP4, 6343)
	send(listed, 41001, lb)
	send(unlisted, 41003, lb)
	base := r.svc
	r.svc = metalLBService("baseline", baselineLBIP4, baselineLBIP6, func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{listed.String() + "/32", kept.String() + "/32", netlab.ClientIP6.String() + "/128"}
	})
	defer func() { r.svc = base }()
	createWithEndpoints(t, r, kube, node)
	eventually(t, "the listed flow at the collector without the product", func() (bool, string) {
		n, _ := rc.From(listed)
		return n > 0, r.enforcer(5)
	})
	got, _ := get(t, r.c, r.svc)
	nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(got.Spec.Ports[0].NodePort))
	send(viaNodePort, 41005, nodePort)
	eventually(t, "an unlisted source through the NodePort at the collector without the product", func() (bool, string) {
		n, _ := rc.From(viaNodePort)
		return n > 0, fmt.Sprintf("none yet through %s", nodePort)
	})
	if n, _ := rc.From(unlisted); n != 0 {
		t.Errorf("without the product, %d datagrams of an unlisted source reached the collector through the load balancer's "+
			"address: kube-proxy no longer filters loadBalancerSourceRanges there?", n)
	}

	// kube-proxy's IPv4 rules for the Service that mention a source.
	fw := func(src netip.Addr) []string {
		rules, _ := kp.Rules()
		var lines []string
		for _, l := range strings.Split(rules, "\n") {
			if strings.Contains(l, "telemetry/baseline") && strings.Contains(l, "-s "+src.String()+"/32") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	update(t, r.c, r.svc, func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{kept.String() + "/32", netlab.ClientIP6.String() + "/128"}
	})
	eventually(t, "kube-proxy's rules without the removed source", func() (bool, string) {
		lines := fw(listed)
		return len(lines) == 0 && len(fw(kept)) > 0, strings.Join(lines, "\n")
	})
	before, _ := rc.From(listed)
	eventually(t, "the removed source's running flow to go on through kube-proxy alone", func() (bool, string) {
		n, _ := rc.From(listed)
		return n >= before+50, fmt.Sprintf("%d datagrams since kube-proxy dropped the source", n-before)
	})

	update(t, r.c, r.svc, func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{netlab.ClientIP6.String() + "/128"}
	})
	eventually(t, "kube-proxy's rules without any IPv4 source", func() (bool, string) {
		lines := fw(kept)
		return len(lines) == 0, strings.Join(lines, "\n")
	})
	// A new flow: the unlisted source's running one may be pinned to a
	// conntrack entry that was never NATed (its first datagrams reached the
	// node before kube-proxy had the address, which kube-proxy does not
	// clean: the conntrack agent's case), and would then never arrive.
	send(unlisted, 41007, lb)
	eventually(t, "an unlisted IPv4 source's new flow at the collector once the list names IPv6 nets alone", func() (bool, string) {
		n, _ := rc.From(unlisted)
		return n > 0, "none yet"
	})
	t.Logf("without the product: an unlisted source reached the collector through the NodePort; a source removed from " +
		"loadBalancerSourceRanges kept its one-way flow through kube-proxy (50 datagrams and counting after its rules dropped " +
		"it); with IPv6 sources alone listed, an unlisted IPv4 source reached the collector through the address")

	if err := r.c.Delete(ctx, r.svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the baseline Service gone", func() (bool, string) {
		_, ok := get(t, r.c, r.svc)
		return !ok, "still there"
	})
	for _, family := range []string{"ipv4", "ipv6"} {
		if err := kube.DiscoveryV1().EndpointSlices("telemetry").Delete(ctx, r.svc.Name+"-"+family, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// bareMetal is a bare-metal node with every part real: the plane with the
// nlb-policy controller (networkpolicy backend), and in the lab's node
// namespace kube-proxy (iptables), kube-router's firewall and MetalLB (no
// pool yet), the collector pod on the node, the lab's unlisted client
// addresses added.
type bareMetal struct {
	lab  *netlab.Lab
	c    client.Client
	kube kubernetes.Interface
	kp   *localplane.KubeProxy
	mlb  *localplane.MetalLB
	node string
	logs func(lines int) string
}

func startBareMetal(t *testing.T, prefix string) *bareMetal {
	t.Helper()
	lab := netlab.ForTest(t, prefix, netip.MustParsePrefix("192.0.2.3/24"), netip.MustParsePrefix("2001:db8:2::3/64"))
	p, c := planeWithNamespace(t)
	ctx := context.Background()
	startControllerBackends(t, p, nlbpolicy.BackendNetworkPolicy)
	bm := &bareMetal{lab: lab, c: c, node: prefix + "-node", kube: kubernetes.NewForConfigOrDie(p.Config)}
	nodeIPs := []netip.Addr{netlab.NodeIP, netlab.NodeIP6}
	var err error
	if bm.kp, err = p.StartKubeProxy(ctx, lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: bm.node, NodeIPs: nodeIPs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bm.kp.Stop)
	kr, err := p.StartKubeRouter(ctx, lab.NSPath("node"), localplane.KubeRouterOptions{Node: bm.node, NodeIPs: nodeIPs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kr.Stop)
	if bm.mlb, err = p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: bm.node}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bm.mlb.Stop)
	if _, err := pipeline.Workload(ctx, bm.kube, lab, bm.node, "pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: "telemetry", Name: "collector-0", Labels: map[string]string{"app": "sfacctd"}}}); err != nil {
		t.Fatal(err)
	}
	bm.logs = func(lines int) string {
		return bm.mlb.LogTail(lines) + "\n" + kr.LogTail(lines) + "\n" + bm.kp.LogTail(lines)
	}
	return bm
}

// The address MetalLB announces over BGP: off the exporters' LAN, so the
// router reaches it only by the route it learns.
var bgpLBIP4 = netip.MustParseAddr("203.0.113.50")

// TestNetworkPolicyBackendWithMetalLBOverBGP: MetalLB's speaker announces the
// Service's address over BGP (native mode) to a real BGP daemon (Debian's
// gobgpd) in the exporters' namespace, which has no other route to it (its
// default routes removed) and installs what it learns (dropping what it has
// no route for). The exporters, listed and unlisted, send from before the
// Service exists: the route arrives, the listed flow reaches the collector,
// the unlisted one never; deleted, the route is withdrawn and nothing
// arrives. IPv4 alone: MetalLB's native BGP mode refuses a pool with IPv6
// addresses ("native bgp mode does not support ipv6"; its FRR mode, which
// needs FRR beside the speaker, is not run here). (The exporters share the
// router's namespace: behind it, as a PoP's exporters are, is one hop more
// that changes nothing here.)
func TestNetworkPolicyBackendWithMetalLBOverBGP(t *testing.T) {
	t.Parallel() // on a plane of its own
	bm := startBareMetal(t, "mbgp")
	lab, c := bm.lab, bm.c
	ctx := context.Background()
	router, err := baremetal.Router(lab, []netip.Prefix{netip.PrefixFrom(bgpLBIP4, 32)}, netlab.BGPPeer{Addr: netlab.NodeIP, ASN: baremetal.ClusterASN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Stop)
	if err := bm.mlb.BGPPool(ctx, c, "bgp", baremetal.ClusterASN, baremetal.RouterASN, []netip.Addr{netlab.ClientIP}, netip.PrefixFrom(bgpLBIP4, 32)); err != nil {
		t.Fatal(err)
	}
	logs := func(lines int) string { return router.Log(lines) + "\n" + bm.logs(lines) }
	r := &npRun{t: t, lab: lab, c: c, enforcer: logs,
		npKey: client.ObjectKey{Namespace: "telemetry", Name: nlbpolicy.NetworkPolicyName("telemetry", "over-bgp")}}
	r.r4, r.r6 = r.listen(netip.AddrPortFrom(netlab.PodIP, 6343)), r.listen(netip.AddrPortFrom(netlab.PodIP6, 6343))
	lb4 := netip.AddrPortFrom(bgpLBIP4, 6343)
	r.l4 = r.send(netlab.ClientIP, 40001, lb4)
	r.send(unlisted4, 40003, lb4)

	r.svc = metalLBService("over-bgp", bgpLBIP4, netip.Addr{}, func(s *corev1.Service) {
		s.Annotations[localplane.PoolAnnotation] = "bgp"
		s.Annotations[localplane.AddressesAnnotation] = bgpLBIP4.String()
		s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = ptr.To(corev1.IPFamilyPolicySingleStack), []corev1.IPFamily{corev1.IPv4Protocol}
		s.Spec.LoadBalancerSourceRanges = []string{netlab.ClientIP.String() + "/32"}
		s.Annotations[annotations.NLBPolicy] = annotations.Enabled
		s.Annotations[annotations.PolicyBackend] = string(nlbpolicy.BackendNetworkPolicy)
		s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	})
	created := time.Now()
	createWithEndpoints(t, r, bm.kube, bm.node)
	routes := []netip.Prefix{netip.PrefixFrom(bgpLBIP4, 32)}
	eventually(t, "the router's route to the Service's address, learnt over BGP", func() (bool, string) {
		for _, p := range routes {
			if _, ok := router.Route(p); !ok {
				return false, fmt.Sprintf("none to %s yet; %s", p, logs(5))
			}
		}
		return true, ""
	})
	r.acknowledged("the acknowledgement of the NetworkPolicy")
	eventually(t, "the listed exporter's datagrams at the collector, over the BGP route", func() (bool, string) {
		n, _ := r.r4.From(netlab.ClientIP)
		return n > 0, fmt.Sprintf("none yet; %s", logs(5))
	})
	at, _ := router.Route(routes[0])
	t.Logf("the route at the router %.0f ms after the Service was created; the listed flow arrived %.0f ms after",
		at.Sub(created).Seconds()*1000, r.r4.First().Sub(created).Seconds()*1000)
	r.unlistedNever("through the create")

	if err := c.Delete(ctx, r.svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the route withdrawn once the Service is gone", func() (bool, string) {
		for _, p := range routes {
			if _, ok := router.Route(p); ok {
				return false, fmt.Sprintf("%s still routed", p)
			}
		}
		return true, ""
	})
	stopped(t, "the listed flow, once the route is withdrawn", r.r4, netlab.ClientIP)
	r.unlistedNever("through the delete")
}
