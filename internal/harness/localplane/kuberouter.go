package localplane

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KubeRouter is kube-router's network policy controller (v2.9.0, built by
// `make kuberouter` from the pinned source) running in a network namespace
// against the plane, as on a node with --run-firewall alone: it enforces the
// Kubernetes NetworkPolicies selecting the node's pods with iptables and
// ipsets in that namespace, on traffic it forwards to them.
//
// What differs from a node: no kubelet (the test writes the Pods, with their
// status.hostIP, which kube-router takes as "on this node"), no routing and
// no service proxy of its own, and its files (/run/xtables.lock, ipset
// state) in a private tmpfs.
type KubeRouter struct {
	nsProcess
}

// KubeRouterOptions say where kube-router runs: the Node it runs as and that
// Node's addresses (an InternalIP per family, each on an interface of the
// namespace, or kube-router refuses the family).
type KubeRouterOptions struct {
	Node    string
	NodeIPs []netip.Addr
}

// KubeRouterBinary is where `make kuberouter` leaves kube-router's network
// policy controller ($KUBEROUTER_BINARY, else
// bin/kuberouter/<commit>/kube-router-netpol-<checksum of its main>).
func KubeRouterBinary() string {
	if b := os.Getenv("KUBEROUTER_BINARY"); b != "" {
		return b
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "kuberouter", "*", "kube-router-netpol-*"))
	if len(matches) == 0 {
		return ""
	}
	return matches[0]
}

// StartKubeRouter starts kube-router's firewall in the network namespace at
// netnsPath. It returns once kube-router has synced its iptables once.
func (p *Plane) StartKubeRouter(ctx context.Context, netnsPath string, opts KubeRouterOptions) (*KubeRouter, error) {
	bin := KubeRouterBinary()
	if bin == "" {
		return nil, fmt.Errorf("kube-router not built: run `make kuberouter`, which builds it from ../shared/third_party/")
	}
	if err := requireTools("kube-router", "make deps installs it", "nsenter", "unshare", "iptables", "ip6tables", "ipset"); err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	if err := registerProxyNode(ctx, c, KubeProxyOptions{Node: opts.Node, NodeIPs: opts.NodeIPs}); err != nil {
		return nil, err
	}
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		return nil, err
	}
	kr := &KubeRouter{}
	logFile, err := kr.prepare(p, "kube-router", netnsPath, api.Host)
	if err != nil {
		return nil, err
	}
	kr.cmd = nodeCommand(netnsPath, bin, nil,
		"--kubeconfig="+p.Kubeconfig,
		"--hostname-override="+opts.Node,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--enable-ipv4=true", "--enable-ipv6=true",
		"--service-cluster-ip-range=10.96.0.0/16", "--service-cluster-ip-range=fd00:10:96::/108",
		"--health-port=0", "--metrics-port=0",
		"--v=1")
	if err := kr.start(logFile); err != nil {
		return nil, err
	}
	if err := kr.waitFor(ctx, "its first iptables sync", 100*time.Millisecond, func() bool {
		return strings.Contains(kr.LogTail(200), "sync iptables took")
	}); err != nil {
		kr.Stop()
		return nil, fmt.Errorf("%w\n%s", err, kr.LogTail(40))
	}
	return kr, nil
}

// Rules is what kube-router wrote: iptables-save and ip6tables-save of its
// namespace.
func (k *KubeRouter) Rules() (string, error) {
	var out strings.Builder
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		b, err := exec.Command("nsenter", "--net="+k.netns, save).CombinedOutput()
		if err != nil {
			return out.String(), fmt.Errorf("%s: %v: %s", save, err, b)
		}
		out.Write(b)
	}
	return out.String(), nil
}
