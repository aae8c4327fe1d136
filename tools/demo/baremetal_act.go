package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/baremetal"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
)

// The bare-metal act: the same module on a cluster where MetalLB announces
// the collectors' address over BGP, no cloud firewall exists, and the
// conntrack agent restores a flow MetalLB's early announcement pinned.

var (
	metalListed, metalUnlisted = netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("100.64.9.1")
	metalLB, metalLateLB       = netip.MustParseAddr("203.0.113.80"), netip.MustParseAddr("203.0.113.81")
)

func (d *demo) bareMetal() error {
	if err := netlab.Check(); err != nil {
		return fmt.Errorf("the bare-metal act cannot run here: %w. As root, `make deps` installs the packages and `make demo` runs it", err)
	}
	site, err := baremetal.Start(d.ctx, d.plane, baremetal.Options{Prefix: "dbm",
		Exporters: []netip.Prefix{netip.PrefixFrom(metalListed, 32), netip.PrefixFrom(metalUnlisted, 32)},
		Pool:      "metal", Addresses: []netip.Prefix{netip.PrefixFrom(metalLB, 32), netip.PrefixFrom(metalLateLB, 32)},
		Collector: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "metal", Name: "collector-0", Labels: map[string]string{"app": "collector"}}}})
	if err != nil {
		return err
	}
	defer site.Stop()
	d.note("a bare-metal node (network namespaces): kube-proxy %s, kube-router's network policy controller, MetalLB's", site.KubeProxy.Version)
	d.note("  controller and speaker, all real; the PoP's router (gobgpd) peers with the speaker and knows no route to the pool")
	kube, err := kubernetes.NewForConfig(d.plane.Config)
	if err != nil {
		return err
	}
	receiver, err := site.Lab.Listen("pod", netip.AddrPortFrom(netlab.PodIP, 6343))
	if err != nil {
		return err
	}
	defer receiver.Close()
	for i, src := range []netip.Addr{metalListed, metalUnlisted} {
		s, err := site.Lab.SendFrom(netip.AddrPortFrom(src, uint16(42000+i)), netip.AddrPortFrom(metalLB, 6343), 20*time.Millisecond)
		if err != nil {
			return err
		}
		defer s.Stop()
	}
	d.note("two exporters behind the router send sFlow to %s, 50 datagrams/s each: %s (listed), %s (not)", metalLB, metalListed, metalUnlisted)

	// The module, platform "metal", in a folder of its own.
	work, err := os.MkdirTemp("", "telemetry-demo-metal-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	config := baremetal.Module(d.plane.ProviderBlock(), "metal", "metal", "metal1", netip.PrefixFrom(metalListed, 32))
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(config), 0o644); err != nil {
		return err
	}
	if _, err := d.tf.Run(d.ctx, work, "get", "-no-color"); err != nil {
		return err
	}
	applied := time.Now()
	res, err := d.tf.Run(d.ctx, work, "apply", "-auto-approve", "-no-color", "-input=false")
	if err != nil {
		return err
	}
	d.note("terraform apply of examples/modules/telemetry-pop with platform = \"metal\" (%v): waits for the controller's", res.Duration.Round(100*time.Millisecond))
	d.note("  acknowledgement of the NetworkPolicy, then MetalLB's address")
	// The EndpointSlice controller's part (the plane does not run it).
	if err := pipeline.Endpoints(d.ctx, kube, "metal", "flows", netlab.PodIP, site.Node, map[string]int32{"sflow": 6343}); err != nil {
		return err
	}
	route := netip.PrefixFrom(metalLB, 32)
	var first time.Time
	if err := d.waitFor(time.Minute, func() (bool, error) {
		n, at := receiver.From(metalListed)
		first = at
		return n > 0, nil
	}); err != nil {
		return fmt.Errorf("the listed exporter's datagrams never reached the collector pod (route at the router: %v): %w\n%s",
			site.Router.NextHops(route), err, site.Logs(10))
	}
	d.note("the router learnt %s via %v over BGP; the listed exporter's datagrams at the pod %v after the apply began",
		route, site.Router.NextHops(route), first.Sub(applied).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second) // what the pod then receives, over two seconds of both flows
	listed, _ := receiver.From(metalListed)
	unlisted, _ := receiver.From(metalUnlisted)
	if unlisted != 0 {
		return fmt.Errorf("%d datagrams of the unlisted exporter reached the collector pod: this act's claim is false", unlisted)
	}
	nps, err := kube.NetworkingV1().NetworkPolicies("metal").List(d.ctx, metav1.ListOptions{})
	if err != nil || len(nps.Items) != 1 {
		return fmt.Errorf("want the Service's one NetworkPolicy in metal, got %d (%v)", len(nps.Items), err)
	}
	d.note("no cloud firewall here: NetworkPolicy %s (enforced by kube-router) and kube-proxy's source filter at the address", nps.Items[0].Name)
	d.note("  are the fence; at the pod: %d datagrams of the listed exporter, 0 of the unlisted one", listed)

	restored, err := d.pinnedByMetalLB(site, kube)
	if err != nil {
		return err
	}
	d.result("Bare metal", fmt.Sprintf("the module over MetalLB BGP: listed exporter at the pod, unlisted exporter: 0; a flow MetalLB's early announcement pinned restored %v after the agent started", restored))
	return nil
}

// pinnedByMetalLB shows the conntrack agent's bare-metal case: kube-proxy
// syncing at most every 10 s (busy nodes set --iptables-min-sync-period),
// a Service turned LoadBalancer gets its address announced by MetalLB
// before kube-proxy's rules for it exist, and the exporter's flow already
// sent to the address is pinned to a never-NATed entry until the agent
// deletes it.
func (d *demo) pinnedByMetalLB(site *baremetal.Site, kube kubernetes.Interface) (time.Duration, error) {
	site.KubeProxy.Stop()
	kp, err := d.plane.StartKubeProxy(d.ctx, site.Lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: site.Node,
		NodeIPs: []netip.Addr{netlab.NodeIP, netlab.NodeIP6}, MinSyncPeriod: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	defer kp.Stop()
	svc, err := kube.CoreV1().Services("metal").Create(d.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "metal", Name: "late", Annotations: map[string]string{
			localplane.PoolAnnotation: "metal", localplane.AddressesAnnotation: metalLateLB.String()}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "collector"},
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 7100, TargetPort: intstr.FromInt32(7101)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	if err := pipeline.Endpoints(d.ctx, kube, "metal", "late", netlab.PodIP, site.Node, map[string]int32{"sflow": 7101}); err != nil {
		return 0, err
	}
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, fmt.Sprintf("%s:7101", netlab.PodIP)), err
	}); err != nil {
		return 0, fmt.Errorf("kube-proxy wrote no rule for the Service's endpoint: %w", err)
	}
	r, err := site.Lab.Listen("pod", netip.AddrPortFrom(netlab.PodIP, 7101))
	if err != nil {
		return 0, err
	}
	defer r.Close()
	sender, err := site.Lab.Send(42100, netip.AddrPortFrom(metalLateLB, 7100), 20*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer sender.Stop()
	svc.Spec.Type, svc.Spec.ExternalTrafficPolicy = corev1.ServiceTypeLoadBalancer, corev1.ServiceExternalTrafficPolicyLocal
	svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	if _, err := kube.CoreV1().Services("metal").Update(d.ctx, svc, metav1.UpdateOptions{}); err != nil {
		return 0, err
	}
	d.note("a second Service, its collector ready, becomes a LoadBalancer (%s) while kube-proxy waits out its sync period", metalLateLB)
	d.note("  (10 s here: busy nodes raise --iptables-min-sync-period); an exporter already sends to the address")
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		out, _ := site.Lab.Output("node", "conntrack", "-L", "-p", "udp", "-d", metalLateLB.String())
		return strings.Contains(out, "dport=7100") && !strings.Contains(out, "src="+netlab.PodIP.String()+" "), nil
	}); err != nil {
		return 0, fmt.Errorf("MetalLB's announcement brought no un-NATed entry to the node: %w", err)
	}
	out, _ := site.Lab.Output("node", "conntrack", "-L", "-p", "udp", "-d", metalLateLB.String())
	d.note("MetalLB announced it first: the node's entry, never NATed: %s", firstLine(out))
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, "-d "+metalLateLB.String()+"/32"), err
	}); err != nil {
		return 0, fmt.Errorf("kube-proxy wrote no rule for %s: %w", metalLateLB, err)
	}
	const window = 3 * time.Second
	time.Sleep(window)
	if n := r.Packets(); n != 0 {
		return 0, fmt.Errorf("the pod received %d datagrams with kube-proxy's rules alone: the flow was not pinned, so this act's claim is false", n)
	}
	d.note("kube-proxy's rules for %s exist; %v later the pod has 0 datagrams of the flow: adding an address is no", metalLateLB, window)
	d.note("  endpoint change, after which kube-proxy would clean up")
	t0 := time.Now()
	reg, stop := d.startAgent(kube, site.Lab.NodeNS(), site.Node)
	defer stop()
	wctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	at, err := r.WaitPacket(wctx, t0)
	if err != nil {
		return 0, fmt.Errorf("the pinned flow was not restored by the agent: %w", err)
	}
	deleted, err := metricread.Sum(reg, "telemetry_conntrack_entries_deleted_total")
	if err != nil {
		return 0, err
	}
	latency := at.Sub(t0).Round(time.Millisecond)
	d.note("the conntrack agent starts on the node: it deleted %v stale entry; the flow at the pod %v later", deleted, latency)
	return latency, nil
}
