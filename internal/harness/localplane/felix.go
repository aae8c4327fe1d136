package localplane

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Felix is Calico's Felix (built CGO-free by `make calico` from the pinned
// source) running in a network namespace against the plane, as calico-node
// runs it on a node: it programs that namespace's iptables (nft backend)
// from the policies in the API server. What it needs from a cluster that
// calico-node and kube-controllers would otherwise provide is created by
// StartFelix: ClusterInformation ready, FelixConfiguration default, the
// Node's Calico address, and an auto host endpoint for the Node.
//
// IPv6 only when the node has an IPv6 address (FelixNode.IP6; Felix runs
// with FELIX_IPV6SUPPORT=false otherwise). Pods are namespaces behind the
// node's host interfaces, covered by the all-interfaces host endpoint; one
// becomes a workload endpoint when a Pod object on the node names its
// addresses and its link is named as Calico's CNI names it
// (pipeline.Node.PodWorkload). Not modelled: BPF and nftables modes (they
// need the CGO build), a CNI's own set-up of workloads.
type Felix struct {
	nsProcess
}

// FelixNode is the Node a Felix runs as, and its address in the namespace.
type FelixNode struct {
	Name string
	IP   netip.Addr
	// IP6, when valid, turns Felix's IPv6 support on, with this address of
	// the node in its host endpoint.
	IP6 netip.Addr
}

// StartFelix starts Felix in the network namespace at netnsPath (e.g.
// /run/netns/<name>) as the plane's Node node.Name. Felix reaches the API
// server through a bridge listening inside the namespace on the API server's
// own loopback address and port, so no route leaves the namespace; its files
// (/var/lib/calico, /var/run/calico) live in a private tmpfs. Stop ends it.
func (p *Plane) StartFelix(ctx context.Context, netnsPath string, node FelixNode) (*Felix, error) {
	bin, err := calicoArtifact("CALICO_FELIX", "calico-felix", "Felix")
	if err != nil {
		return nil, err
	}
	if err := requireTools("Felix", "apt-get install util-linux ipset iptables (make deps does)", "nsenter", "unshare", "ipset", "iptables-nft"); err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	if err := p.prepareFelixCluster(ctx, c, node); err != nil {
		return nil, err
	}
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		return nil, err
	}
	f := &Felix{}
	logFile, err := f.prepare(p, "felix", netnsPath, api.Host)
	if err != nil {
		return nil, err
	}
	f.cmd = nodeCommand(netnsPath, bin, []string{"/var/lib/calico", "/run/calico"})
	f.cmd.Env = append(f.cmd.Env,
		"KUBECONFIG="+p.Kubeconfig,
		"DATASTORE_TYPE=kubernetes", "FELIX_DATASTORETYPE=kubernetes", "CALICO_API_GROUP=projectcalico.org/v3",
		"FELIX_FELIXHOSTNAME="+node.Name,
		"FELIX_IPTABLESBACKEND=NFT", "FELIX_NFTABLESMODE=Disabled", "FELIX_BPFENABLED=false", "FELIX_XDPENABLED=false",
		"FELIX_IPV6SUPPORT="+strconv.FormatBool(node.IP6.IsValid()), "FELIX_WIREGUARDENABLED=false",
		"FELIX_HEALTHENABLED=false", "FELIX_HEALTHHOST=127.0.0.1",
		"FELIX_PROMETHEUSMETRICSENABLED=false", "FELIX_USAGEREPORTINGENABLED=false",
		"FELIX_LOGFILEPATH=none", "FELIX_LOGSEVERITYSYS=none", "FELIX_LOGSEVERITYSCREEN=info",
		"FELIX_DEFAULTENDPOINTTOHOSTACTION=Accept",
		"FELIX_ENDPOINTSTATUSPATHPREFIX=/run/calico",
		// The CGO-free build panics at start on a libbpf stub without it,
		// even with BPF off (../shared/third_party/README.md).
		"FELIX_DebugSkipCTLBCleanup=true",
	)
	if err := f.start(logFile); err != nil {
		return nil, err
	}
	if err := f.waitProgrammed(ctx); err != nil {
		f.Stop()
		return nil, fmt.Errorf("%w\n%s", err, f.LogTail(40))
	}
	return f, nil
}

// waitProgrammed waits until Felix has written its chains in the namespace.
func (f *Felix) waitProgrammed(ctx context.Context) error {
	return f.waitFor(ctx, "cali- chains", 200*time.Millisecond, func() bool {
		rules, err := f.Rules()
		return err == nil && strings.Contains(rules, ":cali-PREROUTING")
	})
}

// Rules is iptables-save in Felix's namespace.
func (f *Felix) Rules() (string, error) {
	out, err := exec.Command("nsenter", "--net="+f.netns, "iptables-save").CombinedOutput()
	return string(out), err
}

// prepareFelixCluster creates what Felix waits for or needs, normally made
// by calico-node and kube-controllers.
func (p *Plane) prepareFelixCluster(ctx context.Context, c client.Client, node FelixNode) error {
	// ClusterInformation is written by calico-node's service account only
	// (Calico's webhook refuses everyone else, cluster admins included).
	calicoNode := "system:serviceaccount:kube-system:calico-node"
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "calico-node"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "calico-node-clusterinformation"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{calicov3.GroupName}, Resources: []string{"clusterinformations"},
				Verbs: []string{"get", "create", "update"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "calico-node-clusterinformation"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "calico-node-clusterinformation"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "calico-node"}}},
	} {
		if err := createOrKeep(ctx, c, o); err != nil {
			return err
		}
	}
	asNode := rest.CopyConfig(p.Config)
	asNode.Impersonate = rest.ImpersonationConfig{UserName: calicoNode,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	// The binding is in force once the API server's RBAC caches have it,
	// a moment after the create (a create straight after was refused on a
	// loaded machine).
	if err := p.AwaitAllowed(ctx, asNode.Impersonate, authorizationv1.ResourceAttributes{
		Verb: "create", Group: calicov3.GroupName, Resource: "clusterinformations"}); err != nil {
		return err
	}
	nodeClient, err := client.New(asNode, client.Options{Scheme: c.Scheme()})
	if err != nil {
		return err
	}
	ci := &calicov3.ClusterInformation{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: calicov3.ClusterInformationSpec{DatastoreReady: ptr.To(true), ClusterType: "k8s,kdd", CalicoVersion: "v3.34.0-0.dev"}}
	if err := createOrKeep(ctx, nodeClient, ci); err != nil {
		return err
	}
	if err := createOrKeep(ctx, c, &calicov3.FelixConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "default"}}); err != nil {
		return err
	}
	// The Node's Calico address and hostname label, as calico-node sets them.
	var labels map[string]string
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: node.Name}, n); err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Labels[corev1.LabelHostname] = node.Name
		n.Annotations["projectcalico.org/IPv4Address"] = node.IP.String() + "/24"
		if node.IP6.IsValid() {
			n.Annotations["projectcalico.org/IPv6Address"] = node.IP6.String() + "/64"
		}
		labels = n.Labels
		return c.Update(ctx, n)
	})
	if err != nil {
		return fmt.Errorf("labelling Node %s for Felix: %w", node.Name, err)
	}
	// An auto host endpoint, shaped as kube-controllers makes them.
	expected := []string{node.IP.String()}
	if node.IP6.IsValid() {
		expected = append(expected, node.IP6.String())
	}
	hep := &calicov3.HostEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: node.Name + "-auto-hep", Labels: labels},
		Spec: calicov3.HostEndpointSpec{Node: node.Name, InterfaceName: "*", ExpectedIPs: expected,
			Profiles: []string{"projectcalico-default-allow"}},
	}
	return createOrKeep(ctx, c, hep)
}

func createOrKeep(ctx context.Context, c client.Client, o client.Object) error {
	if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
	}
	return nil
}
