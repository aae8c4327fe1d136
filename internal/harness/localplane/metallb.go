package localplane

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MetalLB is MetalLB (the pinned build of `make metallb`): its controller,
// which gives Services of type LoadBalancer addresses from IPAddressPools,
// and its speaker, which announces them from a node, here over L2 (ARP and
// NDP answers on the node's links). Both run in the node's network
// namespace: the speaker must, and the controller, which only talks to the
// API server (through the namespace's bridge), keeps its health port there
// instead of on the machine. Each has a Pod object of its own, which both
// read at start; memberlist stays off, so the speaker takes every Node as
// running a speaker: announce with externalTrafficPolicy Local (only nodes
// with a ready endpoint), or through an L2Advertisement limited to the node
// (Pool does both).
type MetalLB struct {
	Namespace  string
	Node       string
	plane      *Plane
	controller nsProcess
	speakers   []*nsProcess // the first on Node; AddSpeaker's after it
}

// MetalLBOptions say where MetalLB runs.
type MetalLBOptions struct {
	// Node is the Node the speaker runs as (registered already, as
	// kube-proxy and kube-router do); it is labelled with
	// kubernetes.io/hostname for advertisements to select it.
	Node string
	// Namespace is MetalLB's (its pools, advertisements and Pods);
	// default metallb-system.
	Namespace string
}

// metalLBGroup is the API group of MetalLB's CRDs.
var metalLBGroup = schema.GroupVersion{Group: "metallb.io", Version: "v1beta1"}

// builtArtifact finds what `make <part>` produces: the path in the
// environment variable, else the one file bin/<part>/*/name.
func builtArtifact(env, part, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run `make %s`)", env, p, err, part)
		}
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", part, "*", name))
	if len(matches) != 1 {
		return "", fmt.Errorf("%s not found in bin/%s/ (%d candidates): run `make %s`, which builds it from the pinned source "+
			"(../shared/third_party, or a clone of upstream at the pinned commit)", name, part, len(matches), part)
	}
	return matches[0], nil
}

// StartMetalLB installs MetalLB's CRDs and starts its controller and speaker
// in the network namespace at netnsPath, with none of the configuration an
// earlier MetalLB on the plane had (its test's pools and peers are deleted
// first). It returns once both have started their controllers. Stop ends
// both.
func (p *Plane) StartMetalLB(ctx context.Context, netnsPath string, opts MetalLBOptions) (*MetalLB, error) {
	if opts.Namespace == "" {
		opts.Namespace = "metallb-system"
	}
	controllerBin, err := builtArtifact("METALLB_CONTROLLER", "metallb", "metallb-controller")
	if err != nil {
		return nil, err
	}
	crds, err := builtArtifact("METALLB_CRDS", "metallb", "crds")
	if err != nil {
		return nil, err
	}
	if err := p.installCRDDir(ctx, crds, "MetalLB's", "make metallb"); err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	m := &MetalLB{Namespace: opts.Namespace, Node: opts.Node, plane: p}
	if err := createOrKeep(ctx, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}); err != nil {
		return nil, err
	}
	if err := m.clearConfiguration(ctx, c); err != nil {
		return nil, err
	}
	controllerPod := "controller-" + opts.Node
	port, err := m.pod(ctx, c, controllerPod, opts.Node)
	if err != nil {
		return nil, err
	}
	if err := m.start(ctx, &m.controller, "metallb-controller", controllerBin, netnsPath, controllerPod, nil,
		"--port=0", "--webhook-mode=disabled", "--disable-cert-rotation", "--health-probe-port="+strconv.Itoa(port),
		"--log-level=debug"); err != nil {
		return nil, err
	}
	if err := m.AddSpeaker(ctx, netnsPath, opts.Node); err != nil {
		m.controller.Stop()
		return nil, err
	}
	return m, nil
}

// AddSpeaker starts a speaker as node (registered already) in the network
// namespace at netnsPath: a second node of the cluster announcing from its
// own links (the first is StartMetalLB's). The node is labelled with
// kubernetes.io/hostname.
func (m *MetalLB) AddSpeaker(ctx context.Context, netnsPath, node string) error {
	speakerBin, err := builtArtifact("METALLB_SPEAKER", "metallb", "metallb-speaker")
	if err != nil {
		return err
	}
	c, err := m.plane.Client()
	if err != nil {
		return err
	}
	n := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		return fmt.Errorf("the speaker's Node %s (register it first, as kube-proxy does): %w", node, err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	metav1.SetMetaDataLabel(&n.ObjectMeta, corev1.LabelHostname, node)
	if err := c.Patch(ctx, n, patch); err != nil {
		return err
	}
	speakerPod := "speaker-" + node
	port, err := m.pod(ctx, c, speakerPod, node)
	if err != nil {
		return err
	}
	speaker := &nsProcess{}
	if err := m.start(ctx, speaker, "metallb-speaker-"+node, speakerBin, netnsPath, speakerPod, []string{"METALLB_NODE_NAME=" + node},
		"--port=0", "--health-probe-port="+strconv.Itoa(port), "--log-level=debug"); err != nil {
		return err
	}
	m.speakers = append(m.speakers, speaker)
	return nil
}

// metalLBConfigKinds are the kinds of MetalLB's configuration that Pool,
// BGPPool and BGPPoolNodes write, by version.
var metalLBConfigKinds = []schema.GroupVersionKind{
	metalLBGroup.WithKind("IPAddressPool"),
	metalLBGroup.WithKind("L2Advertisement"),
	metalLBGroup.WithKind("BGPAdvertisement"),
	{Group: metalLBGroup.Group, Version: "v1beta2", Kind: "BGPPeer"},
}

// clearConfiguration deletes the configuration an earlier MetalLB on the
// plane was given (tests share planes through a Pool): a new MetalLB starts
// with none, then has exactly the pools, advertisements and peers its test
// asks for. A kept pool of the same name but other addresses, or one
// overlapping the new one (MetalLB then refuses the whole configuration),
// left a dual-stack Service without an address.
func (m *MetalLB) clearConfiguration(ctx context.Context, c client.Client) error {
	for _, gvk := range metalLBConfigKinds {
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(gvk)
		if err := c.DeleteAllOf(ctx, o, client.InNamespace(m.Namespace)); err != nil {
			return fmt.Errorf("deleting an earlier MetalLB's %s objects: %w", gvk.Kind, err)
		}
	}
	return nil
}

// pod creates the Pod object a MetalLB process reads at start, on node, and
// returns a free port for its health probe.
func (m *MetalLB) pod(ctx context.Context, c client.Client, name, node string) (int, error) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: name,
		Labels: map[string]string{"app": "metallb", "component": strings.SplitN(name, "-", 2)[0]}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "metallb", Image: "metallb:pinned"}}}}
	if err := createOrKeep(ctx, c, pod); err != nil {
		return 0, err
	}
	return freePort()
}

// start runs a MetalLB binary in the network namespace at netnsPath as the
// Pod pod, and waits until its controllers run.
func (m *MetalLB) start(ctx context.Context, n *nsProcess, name, bin, netnsPath, pod string, extraEnv []string, args ...string) error {
	api, err := url.Parse(m.plane.Config.Host)
	if err != nil {
		return err
	}
	logFile, err := n.prepare(m.plane, name, netnsPath, api.Host)
	if err != nil {
		return err
	}
	n.cmd = nodeCommand(netnsPath, bin, nil, args...)
	env := []string{"KUBECONFIG=" + m.plane.Kubeconfig, "METALLB_NAMESPACE=" + m.Namespace, "METALLB_POD_NAME=" + pod}
	n.cmd.Env = append(append(n.cmd.Env, env...), extraEnv...)
	if err := n.start(logFile); err != nil {
		return err
	}
	// controller-runtime's managers log this once their caches have
	// synced and their reconcilers run.
	if err := n.waitFor(ctx, `"Starting workers"`, 100*time.Millisecond, func() bool {
		return strings.Contains(n.LogTail(400), "Starting workers")
	}); err != nil {
		n.Stop()
		return fmt.Errorf("%w\n%s", err, n.LogTail(40))
	}
	return nil
}

// Pool creates an IPAddressPool of these addresses (prefixes or ranges,
// IPv4 and IPv6), not assigned automatically (a Service asks for it with
// the metallb.io/address-pool annotation), and an L2Advertisement of it
// from the speaker's node alone.
func (m *MetalLB) Pool(ctx context.Context, c client.Client, name string, addresses ...netip.Prefix) error {
	var addrs []any
	for _, a := range addresses {
		addrs = append(addrs, a.String())
	}
	for _, o := range []*unstructured.Unstructured{
		metalLBObject("v1beta1", "IPAddressPool", m.Namespace, name, map[string]any{"addresses": addrs, "autoAssign": false}),
		metalLBObject("v1beta1", "L2Advertisement", m.Namespace, name, map[string]any{"ipAddressPools": []any{name},
			"nodeSelectors": []any{map[string]any{"matchLabels": map[string]any{corev1.LabelHostname: m.Node}}}}),
	} {
		if err := createOrReplace(ctx, c, o); err != nil {
			return err
		}
	}
	return nil
}

// createOrReplace creates one of MetalLB's objects, or gives the one of its
// name this spec.
func createOrReplace(ctx context.Context, c client.Client, o *unstructured.Unstructured) error {
	err := c.Create(ctx, o)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(o.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
		return err
	}
	live.Object["spec"] = o.Object["spec"]
	return c.Update(ctx, live)
}

// BGPPool creates an IPAddressPool of these addresses (not assigned
// automatically), a BGPPeer (v1beta2) towards each router address, from the
// speaker's node alone, and a BGPAdvertisement of the pool: the speaker opens
// the sessions (native BGP) and announces each address of the pool a Service
// takes, as a /32 or /128.
func (m *MetalLB) BGPPool(ctx context.Context, c client.Client, name string, myASN, peerASN uint32, routers []netip.Addr,
	addresses ...netip.Prefix) error {
	var peers []NodePeer
	for _, r := range routers {
		peers = append(peers, NodePeer{Node: m.Node, Router: r})
	}
	return m.BGPPoolNodes(ctx, c, name, myASN, peerASN, peers, addresses...)
}

// NodePeer is a router a node's speaker opens a BGP session to.
type NodePeer struct {
	Node   string
	Router netip.Addr
}

// BGPPoolNodes is BGPPool with each peer's session from its own node (a
// BGPPeer per node and router), the pool advertised from all these nodes.
func (m *MetalLB) BGPPoolNodes(ctx context.Context, c client.Client, name string, myASN, peerASN uint32, peers []NodePeer,
	addresses ...netip.Prefix) error {
	var addrs []any
	for _, a := range addresses {
		addrs = append(addrs, a.String())
	}
	var nodes []any
	for _, p := range peers {
		if !slices.Contains(nodes, any(p.Node)) {
			nodes = append(nodes, p.Node)
		}
	}
	onNodes := []any{map[string]any{"matchExpressions": []any{map[string]any{
		"key": corev1.LabelHostname, "operator": "In", "values": nodes}}}}
	objs := []*unstructured.Unstructured{
		metalLBObject("v1beta1", "IPAddressPool", m.Namespace, name, map[string]any{"addresses": addrs, "autoAssign": false}),
		metalLBObject("v1beta1", "BGPAdvertisement", m.Namespace, name, map[string]any{"ipAddressPools": []any{name}, "nodeSelectors": onNodes}),
	}
	for i, p := range peers {
		objs = append(objs, metalLBObject("v1beta2", "BGPPeer", m.Namespace, fmt.Sprintf("%s-%d", name, i), map[string]any{
			"myASN": int64(myASN), "peerASN": int64(peerASN), "peerAddress": p.Router.String(),
			"nodeSelectors": []any{map[string]any{"matchLabels": map[string]any{corev1.LabelHostname: p.Node}}},
			"holdTime":      "9s", // native mode refuses keepaliveTime and connectTime
		}))
	}
	for _, o := range objs {
		if err := createOrReplace(ctx, c, o); err != nil {
			return err
		}
	}
	return nil
}

// metalLBObject is one of MetalLB's objects.
func metalLBObject(version, kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	o.SetGroupVersionKind(schema.GroupVersionKind{Group: metalLBGroup.Group, Version: version, Kind: kind})
	o.SetNamespace(namespace)
	o.SetName(name)
	return o
}

// PoolAnnotation is the annotation by which a Service asks MetalLB for an
// address of a pool, AddressesAnnotation the one by which it asks for given
// addresses (comma-separated, one per family).
const (
	PoolAnnotation      = "metallb.io/address-pool"
	AddressesAnnotation = "metallb.io/loadBalancerIPs"
)

// LogTail is the end of every log, for failure messages.
func (m *MetalLB) LogTail(lines int) string {
	out := m.controller.LogTail(lines)
	for _, s := range m.speakers {
		out += "\n" + s.LogTail(lines)
	}
	return out
}

// Stop ends the speakers (their announcements stop: ARP and NDP go
// unanswered, BGP sessions close) and the controller.
func (m *MetalLB) Stop() {
	for _, s := range m.speakers {
		s.Stop()
	}
	m.controller.Stop()
}
