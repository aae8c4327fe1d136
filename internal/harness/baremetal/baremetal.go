// Package baremetal is a bare-metal site for the tests and the demo: a
// netlab lab whose node runs real kube-proxy (iptables), real kube-router
// (its network policy controller) and real MetalLB (controller and
// speaker), the collector pod registered on the node, and the PoP's router
// (Debian's gobgpd) in the lab's client namespace, peering with the node's
// speaker and with no route to the pool's addresses but what it learns
// (a less specific route into a veth whose peer drops the datagrams). The
// exporters are the client's addresses: they send through the router.
// IPv4 over BGP: MetalLB's native BGP mode refuses IPv6 pools.
package baremetal

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
)

// The AS numbers of the site: the cluster's speakers and the PoP's router.
const (
	ClusterASN = 64513
	RouterASN  = 64512
)

// Options describe the site.
type Options struct {
	// Prefix names the lab's namespaces (unique among labs running at once);
	// the node is <Prefix>-node.
	Prefix string
	// Exporters are more addresses of the client (behind the router).
	Exporters []netip.Prefix
	// Pool is the MetalLB IPAddressPool (announced over BGP) of Addresses.
	Pool      string
	Addresses []netip.Prefix
	// Collector is the collector pod's object (namespace, name, labels),
	// registered on the node at netlab.PodIP.
	Collector *corev1.Pod
	// KubeProxy are kube-proxy's other options (MinSyncPeriod); its mode,
	// node and addresses are the site's.
	KubeProxy localplane.KubeProxyOptions
}

// Site is a running bare-metal site.
type Site struct {
	Lab        *netlab.Lab
	Node       string
	KubeProxy  *localplane.KubeProxy
	KubeRouter *localplane.KubeRouter
	MetalLB    *localplane.MetalLB
	Router     *netlab.BGPRouter
	stops      []func()
}

// Start builds the site against the plane. Stop ends it.
func Start(ctx context.Context, p *localplane.Plane, o Options) (s *Site, err error) {
	if err := netlab.Check(); err != nil {
		return nil, err
	}
	s = &Site{Node: o.Prefix + "-node"}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.Lab, err = netlab.New(o.Prefix); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { _ = s.Lab.Close() })
	for _, e := range o.Exporters {
		if err := s.Lab.AddClientAddress(e); err != nil {
			return nil, err
		}
	}
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	nodeIPs := []netip.Addr{netlab.NodeIP, netlab.NodeIP6}
	kpOpts := o.KubeProxy
	kpOpts.Mode, kpOpts.Node, kpOpts.NodeIPs = "iptables", s.Node, nodeIPs
	if s.KubeProxy, err = p.StartKubeProxy(ctx, s.Lab.NSPath("node"), kpOpts); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.KubeProxy.Stop)
	if s.KubeRouter, err = p.StartKubeRouter(ctx, s.Lab.NSPath("node"), localplane.KubeRouterOptions{Node: s.Node, NodeIPs: nodeIPs}); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.KubeRouter.Stop)
	if s.MetalLB, err = p.StartMetalLB(ctx, s.Lab.NSPath("node"), localplane.MetalLBOptions{Node: s.Node}); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.MetalLB.Stop)
	if o.Collector != nil {
		if err := ensureNamespace(ctx, kube, o.Collector.Namespace); err != nil {
			return nil, err
		}
		if _, err := pipeline.Workload(ctx, kube, s.Lab, s.Node, "pod", o.Collector); err != nil {
			return nil, err
		}
	}
	// The node's gateway is the PoP's router, as on a site: what the node
	// does not NAT or own goes back to it (a flow to an address announced
	// before kube-proxy has it: forwarded, its conntrack entry confirmed).
	if err := s.Lab.Run("node", "ip", "-4", "route", "add", "default", "via", netlab.ClientIP.String()); err != nil {
		return nil, err
	}
	if s.Router, err = Router(s.Lab, o.Addresses, netlab.BGPPeer{Addr: netlab.NodeIP, ASN: ClusterASN}); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.Router.Stop)
	if err := s.MetalLB.BGPPool(ctx, c, o.Pool, ClusterASN, RouterASN, []netip.Addr{netlab.ClientIP}, o.Addresses...); err != nil {
		return nil, err
	}
	return s, nil
}

// Router makes the lab's client the PoP's router: its default route gone,
// a drop for what it learns no route to (each address's /24, less specific
// than what it learns, so a withdrawn route falls back to the drop), and
// gobgpd peering with the speakers (ClusterASN) from RouterASN.
func Router(lab *netlab.Lab, addresses []netip.Prefix, speakers ...netlab.BGPPeer) (*netlab.BGPRouter, error) {
	for _, step := range [][]string{{"-4", "route", "del", "default"},
		{"link", "add", "null0", "type", "veth", "peer", "name", "null0-drop"}, {"link", "set", "null0", "up"},
		{"link", "set", "null0-drop", "up"},
		{"neigh", "replace", "169.254.9.9", "lladdr", "02:00:00:00:00:09", "dev", "null0", "nud", "permanent"}} {
		if err := lab.Run("client", append([]string{"ip"}, step...)...); err != nil {
			return nil, err
		}
	}
	covers := map[netip.Prefix]bool{}
	for _, a := range addresses {
		cover := netip.PrefixFrom(a.Addr(), 24).Masked()
		if covers[cover] {
			continue
		}
		covers[cover] = true
		if err := lab.Run("client", "ip", "-4", "route", "add", cover.String(), "via", "169.254.9.9", "dev", "null0", "onlink"); err != nil {
			return nil, err
		}
	}
	return lab.StartBGPRouter("client", RouterASN, netlab.ClientIP, speakers...)
}

func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	_, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// Logs are the ends of the router's, MetalLB's, kube-router's and
// kube-proxy's logs, for failure messages.
func (s *Site) Logs(lines int) string {
	var out []string
	if s.Router != nil {
		out = append(out, s.Router.Log(lines))
	}
	if s.MetalLB != nil {
		out = append(out, s.MetalLB.LogTail(lines))
	}
	if s.KubeRouter != nil {
		out = append(out, s.KubeRouter.LogTail(lines))
	}
	if s.KubeProxy != nil {
		out = append(out, s.KubeProxy.LogTail(lines))
	}
	return strings.Join(out, "\n")
}

// Stop ends everything the site started, the lab last.
func (s *Site) Stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// Module is a root module (after the provider block) applying
// examples/modules/telemetry-pop with platform "metal": one site whose
// exporters are sources, its Kafka topic in the kafka namespace of the
// cluster "telemetry", the collectors (app=collector) in namespace behind an
// address of MetalLB's pool, sFlow on UDP 6343, not waiting for the topic
// (no Topic Operator needed). Outputs: addresses, policy_enforced.
func Module(providerBlock, namespace, pool, site string, sources ...netip.Prefix) string {
	var quoted []string
	for _, s := range sources {
		quoted = append(quoted, fmt.Sprintf("%q", s))
	}
	return providerBlock + fmt.Sprintf(`
terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}

module "pop" {
  source   = %q
  platform = "metal"
  kafka    = { cluster = "telemetry", namespace = "kafka" }
  sites    = { %s = { expected_flows_per_second = 1000, flow_sources = [%s] } }
  collector = {
    namespace    = %q
    selector     = { app = "collector" }
    address_pool = %q
    ports        = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  }
  wait = false
}

output "addresses" { value = module.pop.addresses }
output "policy_enforced" { value = module.pop.policy_enforced }
`, filepath.Join(localplane.RepoRoot(), "examples", "modules", "telemetry-pop"), site, strings.Join(quoted, ", "), namespace, pool)
}
