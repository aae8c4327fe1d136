package localplane

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KubeProxy is the upstream kube-proxy (built by `make kubeproxy` from
// k8s.io/kubernetes at the versions pinned in tools/kubeproxy/) running in a
// network namespace against the plane, as on a node: it programs that
// namespace's iptables or nftables from the Services and EndpointSlices in
// the API server, and cleans up UDP conntrack entries as its version does.
//
// What differs from a node: no kubelet (the test writes EndpointSlices and
// Node objects), conntrack sysctls left alone (--conntrack-max-per-core=0 and
// zero timeouts, so nothing outside the namespace changes), NodePorts only on
// the addresses given, and its files (/run/xtables.lock, /var/lib/kube-proxy)
// in a private tmpfs.
type KubeProxy struct {
	Version string
	Mode    string
	nsProcess
}

// KubeProxyOptions say which kube-proxy runs where.
type KubeProxyOptions struct {
	// Version is a directory of bin/kubeproxy/ (e.g. "v1.37.2"); empty: the
	// newest built.
	Version string
	// Mode is "iptables" or "nftables".
	Mode string
	// Node is the Node kube-proxy runs as; its addresses are its InternalIPs
	// (the NodePort addresses).
	Node     string
	NodeIPs  []netip.Addr
	PodCIDRs []netip.Prefix
	// MinSyncPeriod is --iptables-min-sync-period (both modes; 0: kube-proxy's
	// default, 1 s): how long a change may wait for the next sync, as on a
	// cluster that rate-limits kube-proxy's syncs.
	MinSyncPeriod time.Duration
}

// KubeProxyVersions lists the kube-proxy versions `make kubeproxy` built.
func KubeProxyVersions() []string {
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "kubeproxy", "v*", "kube-proxy"))
	var out []string
	for _, m := range matches {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(out)
	return out
}

// StartKubeProxy starts kube-proxy in the network namespace at netnsPath.
// It returns once kube-proxy has written its rules for the first time.
func (p *Plane) StartKubeProxy(ctx context.Context, netnsPath string, opts KubeProxyOptions) (*KubeProxy, error) {
	versions := KubeProxyVersions()
	if opts.Version == "" && len(versions) > 0 {
		opts.Version = versions[len(versions)-1]
	}
	bin := filepath.Join(RepoRoot(), "bin", "kubeproxy", opts.Version, "kube-proxy")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-proxy %q not built (have %v): run `make kubeproxy`, which builds it from tools/kubeproxy/", opts.Version, versions)
	}
	tools := []string{"nsenter", "unshare", "iptables", "ip6tables"}
	if opts.Mode == "nftables" {
		tools = append(tools, "nft")
	}
	if err := requireTools("kube-proxy", "make deps installs it", tools...); err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	if err := registerProxyNode(ctx, c, opts); err != nil {
		return nil, err
	}
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		return nil, err
	}
	kp := &KubeProxy{Version: opts.Version, Mode: opts.Mode}
	logFile, err := kp.prepare(p, "kube-proxy", netnsPath, api.Host)
	if err != nil {
		return nil, err
	}
	var nodePortAddrs []string
	for _, ip := range opts.NodeIPs {
		nodePortAddrs = append(nodePortAddrs, netip.PrefixFrom(ip, ip.BitLen()).String())
	}
	args := []string{"--kubeconfig=" + p.Kubeconfig,
		"--hostname-override=" + opts.Node,
		"--proxy-mode=" + opts.Mode,
		"--nodeport-addresses=" + strings.Join(nodePortAddrs, ","),
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
		"--v=2"}
	if opts.MinSyncPeriod > 0 {
		args = append(args, "--iptables-min-sync-period="+opts.MinSyncPeriod.String())
	}
	kp.cmd = nodeCommand(netnsPath, bin, nil, args...)
	if err := kp.start(logFile); err != nil {
		return nil, err
	}
	if err := kp.waitSynced(ctx); err != nil {
		kp.Stop()
		return nil, fmt.Errorf("%w\n%s", err, kp.LogTail(40))
	}
	return kp, nil
}

// registerProxyNode creates the Node kube-proxy runs as, with its addresses.
func registerProxyNode(ctx context.Context, c client.Client, opts KubeProxyOptions) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: opts.Node}}
	for _, p := range opts.PodCIDRs {
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, p.String())
	}
	if len(n.Spec.PodCIDRs) > 0 {
		n.Spec.PodCIDR = n.Spec.PodCIDRs[0]
	}
	if err := createOrKeep(ctx, c, n); err != nil {
		return err
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
		return err
	}
	n.Status.Addresses = nil
	for _, ip := range opts.NodeIPs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	return c.Status().Update(ctx, n)
}

// waitSynced waits until kube-proxy has written its rules once (one family
// is enough: a single-stack node has no IPv6 table).
func (k *KubeProxy) waitSynced(ctx context.Context) error {
	return k.waitFor(ctx, "rules", 100*time.Millisecond, func() bool {
		rules, _ := k.Rules()
		return strings.Contains(rules, "KUBE-SERVICES") || strings.Contains(rules, "services")
	})
}

// Rules is what kube-proxy wrote, both families: iptables-save and
// ip6tables-save, or its nftables tables.
func (k *KubeProxy) Rules() (string, error) {
	cmds := [][]string{{"iptables-save"}, {"ip6tables-save"}}
	if k.Mode == "nftables" {
		cmds = [][]string{{"nft", "list", "table", "ip", "kube-proxy"}, {"nft", "list", "table", "ip6", "kube-proxy"}}
	}
	var out strings.Builder
	for _, c := range cmds {
		b, err := exec.Command("nsenter", append([]string{"--net=" + k.netns}, c...)...).CombinedOutput()
		if err != nil {
			return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, b)
		}
		out.Write(b)
	}
	return out.String(), nil
}
