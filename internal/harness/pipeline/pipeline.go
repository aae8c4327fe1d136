// Package pipeline assembles the flow pipeline the product serves from real
// parts, on a local plane: a netlab node running real Felix (enforcing the
// nlb-policy controller's policies), real kube-proxy and the conntrack
// agent; PoPs whose pmacctd exports sFlow and IPFIX of the traffic it sees
// to the node's NodePorts; sfacctd and nfacctd in a collector pod's
// namespace, configured from the ConfigMap telemetry_collector_routing
// wrote and producing into the Topic Operator stand-in's broker (what
// landed where is read with pmacct.Reader). The end-to-end test, the demo
// and the pipeline benchmark use it.
package pipeline

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
)

// Check says what is missing to run the pipeline, or nil.
func Check() error { return errors.Join(netlab.Check(), pmacct.Check()) }

// Options of a node.
type Options struct {
	// Prefix names the lab's namespaces (a few letters, unique per run).
	Prefix string
	// FelixNode is the Node object Felix runs as (the plane's seeded one);
	// empty: no Felix, so the path has no policy at all (a benchmark's
	// baseline).
	FelixNode string
	// KubeRouterNode is the Node kube-router's network policy controller
	// runs as (registered for it with the node's IPv4 and IPv6 addresses);
	// empty: no kube-router. With it and without FelixNode, Kubernetes
	// NetworkPolicies are enforced by kube-router alone.
	KubeRouterNode string
	// ProxyNode is the Node kube-proxy runs as, registered for it; the
	// collectors' endpoints are on it.
	ProxyNode string
	// IPv6 turns Felix's IPv6 support on (the node's IPv6 address in its
	// host endpoint), for IPv6 exporters.
	IPv6 bool
	// Brokers are the Kafka listeners (on loopback) the collector pods reach.
	Brokers []string
	// Log receives the conntrack agent's log.
	Log logr.Logger
}

// Node is a running pipeline node.
type Node struct {
	Lab *netlab.Lab
	// KubeRouter is the node's kube-router, if Options.KubeRouterNode.
	KubeRouter *localplane.KubeRouter
	opts       Options
	stops      []func() // in reverse order at Stop
	daemons    map[string][]*pmacct.Daemon
}

// StartNode builds the lab and starts Felix (unless FelixNode is empty),
// kube-proxy in iptables mode and the conntrack agent in its node
// namespace, and makes the brokers reachable from both pod namespaces.
func StartNode(ctx context.Context, p *localplane.Plane, kube kubernetes.Interface, opts Options) (n *Node, err error) {
	if err := Check(); err != nil {
		return nil, err
	}
	n = &Node{opts: opts, daemons: map[string][]*pmacct.Daemon{}}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if n.Lab, err = netlab.New(opts.Prefix); err != nil {
		return nil, err
	}
	n.onStop(func() { _ = n.Lab.Close() })
	if opts.FelixNode != "" {
		fn := localplane.FelixNode{Name: opts.FelixNode, IP: netlab.NodeIP}
		if opts.IPv6 {
			fn.IP6 = netlab.NodeIP6
		}
		felix, err := p.StartFelix(ctx, n.Lab.NSPath("node"), fn)
		if err != nil {
			return nil, err
		}
		n.onStop(felix.Stop)
	}
	if opts.KubeRouterNode != "" {
		kr, err := p.StartKubeRouter(ctx, n.Lab.NSPath("node"), localplane.KubeRouterOptions{Node: opts.KubeRouterNode,
			NodeIPs: []netip.Addr{netlab.NodeIP, netlab.NodeIP6}})
		if err != nil {
			return nil, err
		}
		n.KubeRouter = kr
		n.onStop(kr.Stop)
	}
	kp, err := p.StartKubeProxy(ctx, n.Lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: opts.ProxyNode,
		NodeIPs: []netip.Addr{netlab.NodeIP}})
	if err != nil {
		return nil, err
	}
	n.onStop(kp.Stop)
	if err := n.startAgent(kube); err != nil {
		return nil, err
	}
	for _, ns := range []string{"pod", "pod2"} {
		stop, err := n.Lab.ForwardLoopback(ns, opts.Brokers...)
		if err != nil {
			return nil, err
		}
		n.onStop(stop)
	}
	n.onStop(func() {
		for key := range n.daemons {
			n.StopDaemons(key)
		}
	})
	return n, nil
}

func (n *Node) onStop(f func()) { n.stops = append(n.stops, f) }

// Stop stops every daemon and part the node started, and removes the lab.
func (n *Node) Stop() {
	for i := len(n.stops) - 1; i >= 0; i-- {
		n.stops[i]()
	}
	n.stops = nil
}

// startAgent runs the conntrack agent on the node with its defaults.
func (n *Node) startAgent(kube kubernetes.Interface) error {
	ct := &conntrackagent.Netlink{NetNS: n.Lab.NodeNS(), Workers: 1, RecvBuffer: 1 << 20}
	cfg := conntrackagent.DefaultConfig()
	cfg.Client, cfg.Conntrack, cfg.NodeName, cfg.LocalAddrs = kube, ct, n.opts.ProxyNode, ct.LocalAddrs
	cfg.Metrics, cfg.Log = conntrackagent.NewMetrics(prometheus.NewRegistry()), n.opts.Log
	cfg.Dataplane = conntrackagent.DataplaneProbe{URL: "http://127.0.0.1:10249", // kube-proxy's metrics, in the node
		Dial: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = n.Lab.InNS("node", func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}.Detect
	a := conntrackagent.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	n.onStop(func() { cancel(); <-done })
	return nil
}

// PodWorkload makes a pod namespace ("pod" or "pod2") the pod on this
// node's enforcer (see Workload): Felix's, else kube-router's.
func (n *Node) PodWorkload(ctx context.Context, kube kubernetes.Interface, ns string, pod *corev1.Pod) (string, error) {
	node := n.opts.FelixNode
	if node == "" {
		node = n.opts.KubeRouterNode
	}
	if node == "" {
		return "", errors.New("neither Felix nor kube-router on this node: a pod's policies would not be enforced")
	}
	return Workload(ctx, kube, n.Lab, node, ns, pod)
}

// Workload makes a lab's pod namespace ("pod" or "pod2") the pod on node
// (its namespace, name and labels; nodeName, IPs, host IPs and phase are
// filled): the Pod object on the node with the namespace's addresses and the
// lab node's as its host's, and the node's link to it named as Calico's CNI
// names it. Felix running as node enforces the policies that select the pod
// (the nlb-policy controller's with ip targets, Kubernetes NetworkPolicies)
// on traffic to it, as a Calico workload; kube-router running as node
// enforces the NetworkPolicies, its pods being those whose host IP is its
// node's. It returns the link's name (Felix's chains for the workload are
// cali-tw-<name> and cali-fw-<name>).
func Workload(ctx context.Context, kube kubernetes.Interface, lab *netlab.Lab, node, ns string, pod *corev1.Pod) (string, error) {
	ip4, ip6 := netlab.PodIP, netlab.PodIP6
	if ns == "pod2" {
		ip4, ip6 = netlab.Pod2IP, netlab.Pod2IP6
	}
	// The service account admission wants the namespace's default account.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: "default"}}
	if _, err := kube.CoreV1().ServiceAccounts(pod.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	pod = pod.DeepCopy()
	pod.Spec.NodeName = node
	pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	if len(pod.Spec.Containers) == 0 {
		pod.Spec.Containers = []corev1.Container{{Name: "collector", Image: "pmacct"}}
	}
	created, err := kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating Pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip4.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: ip4.String()}, {IP: ip6.String()}}
	created.Status.HostIP = netlab.NodeIP.String()
	created.Status.HostIPs = []corev1.HostIP{{IP: netlab.NodeIP.String()}, {IP: netlab.NodeIP6.String()}}
	if _, err := kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("writing Pod %s/%s's addresses: %w", pod.Namespace, pod.Name, err)
	}
	name := calicoVethName(pod.Namespace, pod.Name)
	return name, lab.NamePodLink(ns, name)
}

// calicoVethName is the node-side name Calico's CNI gives a pod's link and
// Felix expects (libcalico-go's VethNameForWorkload, default prefix).
func calicoVethName(namespace, pod string) string {
	h := sha1.Sum([]byte(namespace + "." + pod))
	return "cali" + hex.EncodeToString(h[:])[:11]
}

// Site is a PoP: its name (a site's), its exporter's address, and the index
// that makes its observed flow's addresses distinct.
type Site struct {
	Name  string
	Addr  netip.Addr
	Index int
	PoP   *netlab.PoP
}

// AddPoP gives a site its PoP namespace.
func (n *Node) AddPoP(s *Site) (err error) {
	s.PoP, err = n.Lab.AddPoP(s.Name, s.Addr, s.Index)
	return err
}

// StartExporters starts each site's pmacctd, exporting sFlow to sflow and
// IPFIX to ipfix (the node's NodePorts), and the traffic it observes: a
// datagram every interval from its own source port. Configurations go to
// dir.
func (n *Node) StartExporters(sites []*Site, sflow, ipfix netip.AddrPort, interval time.Duration, dir string) error {
	for i, s := range sites {
		exp := pmacct.Exporter{Iface: "obs", Source: s.Addr, MaxLife: 2 * time.Second, SFlow: sflow, IPFIX: ipfix}
		path, err := pmacct.WriteConfig(dir, "pmacctd-"+s.Name+".conf", exp.Config())
		if err != nil {
			return err
		}
		d, err := pmacct.Start("exporter "+s.Name, n.Lab.NS(s.PoP.NS()), "pmacctd", path)
		if err != nil {
			return err
		}
		n.daemons["exporters"] = append(n.daemons["exporters"], d)
		if interval > 0 {
			traffic, err := s.PoP.Traffic(uint16(5000+i), 6000, interval)
			if err != nil {
				return err
			}
			n.onStop(traffic.Stop)
		}
	}
	return nil
}

// StartCollectors writes the routing ConfigMap's files into mount (where
// the collectors mount it) and starts sfacctd and nfacctd in the pod
// namespace ns ("pod" or "pod2").
func (n *Node) StartCollectors(routing *corev1.ConfigMap, mount, ns string) error {
	for name, text := range routing.Data {
		if err := os.WriteFile(filepath.Join(mount, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	for _, daemon := range []string{"sfacctd", "nfacctd"} {
		d, err := pmacct.Start(daemon+" in "+ns, n.Lab.NS(ns), daemon, filepath.Join(mount, daemon+".conf"))
		if err != nil {
			return err
		}
		n.daemons[ns] = append(n.daemons[ns], d)
	}
	return nil
}

// StopDaemons stops the collectors of a pod namespace, or "exporters".
func (n *Node) StopDaemons(key string) {
	for _, d := range n.daemons[key] {
		d.Stop()
	}
	delete(n.daemons, key)
}

// Logs are the daemons' last lines, for a failure's message.
func (n *Node) Logs() string {
	var out []string
	for _, ds := range n.daemons {
		for _, d := range ds {
			out = append(out, d.LogTail(10))
		}
	}
	return strings.Join(out, "\n")
}

// Endpoints writes a Service's EndpointSlice as the EndpointSlice controller
// does for one ready collector pod at pod on node, with the Service's ports
// (name to target port, UDP).
func Endpoints(ctx context.Context, kube kubernetes.Interface, namespace, service string, pod netip.Addr, node string, ports map[string]int32) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service + "-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		// On kube-proxy's node: the ingress's Service keeps the client's
		// address (externalTrafficPolicy Local), so only local endpoints serve.
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{pod.String()}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	if pod.Is6() {
		slice.AddressType = discoveryv1.AddressTypeIPv6
	}
	for name, port := range ports {
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(port)})
	}
	api := kube.DiscoveryV1().EndpointSlices(namespace)
	if cur, err := api.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
		cur.Endpoints, cur.Ports = slice.Endpoints, slice.Ports
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating EndpointSlice %s/%s: %w", namespace, slice.Name, err)
		}
		return nil
	}
	if _, err := api.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating EndpointSlice %s/%s: %w", namespace, slice.Name, err)
	}
	return nil
}
