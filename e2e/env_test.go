package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
)

const (
	collectorNS = "flows"
	kafkaNS     = "kafka"
	routingName = "flow-routing"
	proxyNode   = "e2e-node" // the node kube-proxy runs as
)

// env is the pipeline's parts: the plane (API server, moto), the nlb-policy
// controller, the Topic Operator stand-in and its broker, a netlab node with
// real Felix, real kube-proxy and the conntrack agent, the PoPs, the
// terraform working directory, and the pmacct daemons.
type env struct {
	t      *testing.T
	p      *localplane.Plane
	c      client.Client
	kube   kubernetes.Interface
	node   *pipeline.Node
	op     *standin.TopicOperator
	admin  *kadm.Client
	reader *pmacct.Reader
	tf     *tfdev.Env
	work   string // terraform's working directory
	mount  string // where the collectors "mount" the routing ConfigMap
	volume string // a volume that outlives the collector pods
	pops   []*pipeline.Site
	opts   envOptions
}

// envOptions: ipv6 puts the ingress on ip targets (the NLB sends to the
// pods, keeping IPv6 clients' addresses) and turns Felix's IPv6 on;
// policyBackend is the ingress's policy_backend ("": the controller's
// default); kubeRouter puts kube-router's network policy controller on the
// node instead of Felix; controllerBackends are the controller's backends,
// its default first (nil: calico, networkpolicy allowed).
type envOptions struct {
	ipv6               bool
	policyBackend      string
	kubeRouter         bool
	controllerBackends []nlbpolicy.Backend
}

func newEnv(t *testing.T, opts envOptions) *env {
	if os.Getenv("TF_ACC") == "" {
		t.Fatal("TF_ACC is not set: run the tests with `make test`")
	}
	if err := pipeline.Check(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := &env{t: t, opts: opts}
	e.p = localplane.New(t, localplane.Options{})
	var err error
	if e.c, err = e.p.Client(); err != nil {
		t.Fatal(err)
	}
	if e.kube, err = kubernetes.NewForConfig(e.p.Config); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{collectorNS, kafkaNS} {
		if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	e.op = standin.StartTopicOperator(e.c, "telemetry")
	t.Cleanup(e.op.Stop)
	if e.admin, err = kadm.NewOptClient(kgo.SeedBrokers(e.op.Brokers()...), kgo.MetadataMinAge(10*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.admin.Close)
	if e.reader, err = pmacct.NewReader(e.op.Brokers()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.reader.Close)
	stopCtl, err := e.p.StartNLBPolicyControllerWith(ctx, localplane.ControllerOptions{Backends: opts.controllerBackends})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stopCtl(); err != nil {
			t.Errorf("nlb-policy controller: %v", err)
		}
	})
	var nodes corev1.NodeList
	if err := e.c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no Node in the plane (%v)", err)
	}
	// Each variant's lab has its own namespaces, so the tests run side by
	// side, each on its own plane.
	prefix := "e2e"
	switch {
	case opts.kubeRouter:
		prefix = "ekr"
	case opts.ipv6:
		prefix = "e26"
	}
	nodeOpts := pipeline.Options{Prefix: prefix, FelixNode: nodes.Items[0].Name,
		ProxyNode: proxyNode, Brokers: e.op.Brokers(), Log: testr.New(t), IPv6: opts.ipv6}
	if opts.kubeRouter {
		nodeOpts.FelixNode, nodeOpts.KubeRouterNode = "", "e2e-kube-router"
	}
	e.node, err = pipeline.StartNode(ctx, e.p, e.kube, nodeOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.node.Stop)

	e.tf, err = tfdev.Build(ctx, localplane.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.work, e.mount, e.volume = t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(e.work, "main.tf"), []byte(e.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.terraform("get", "-no-color")
	return e
}

// config is the root module: the provider reaching the plane, and the
// telemetry-pop module with the routing on.
func (e *env) config() string {
	p := e.p
	return fmt.Sprintf(`
terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}

%s
variable "sites" {
  type = map(object({
    expected_flows_per_second = number
    flow_sources              = set(string)
  }))
}

module "pop" {
  source = %q
  kafka  = { cluster = "telemetry", namespace = %q }
  sites  = var.sites
  collector = {
    namespace              = %q
    selector               = { app = "collector" }
    node_security_group_id = %q
    target_type            = %q
    policy_backend         = %s
    ports = [
      { name = "sflow", protocol = "UDP", port = 6343 },
      { name = "ipfix", protocol = "UDP", port = 4739 },
    ]
  }
  routing = {
    kafka_bootstrap_servers = [%q]
    config_map_name         = %q
    flush_interval          = "1s"
    mount_path              = %q
    ipfix_templates_file    = %q
  }
  wait = false
}
`, p.ProviderBlock(),
		filepath.Join(localplane.RepoRoot(), "examples", "modules", "telemetry-pop"), kafkaNS, collectorNS,
		p.AWS.NodeSecurityGroupID, e.targetType(), e.policyBackend(), e.op.Brokers()[0], routingName, e.mount, filepath.Join(e.volume, "ipfix-templates.json"))
}

func (e *env) targetType() string {
	if e.opts.ipv6 {
		return "ip"
	}
	return "instance"
}

// policyBackend is policy_backend's value in HCL.
func (e *env) policyBackend() string {
	if e.opts.policyBackend == "" {
		return "null"
	}
	return fmt.Sprintf("%q", e.opts.policyBackend)
}

func (e *env) terraform(args ...string) tfdev.Result {
	e.t.Helper()
	res, err := e.tf.Run(context.Background(), e.work, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// destroy removes everything and checks the broker and the cluster are
// left without the sites' topics and the routing.
func (e *env) destroy() {
	e.t.Helper()
	e.terraform("destroy", "-auto-approve", "-no-color", "-input=false")
	topics, err := e.admin.ListTopics(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if names := topics.Names(); len(names) > 0 {
		e.t.Errorf("topics left in the broker after destroy: %v", names)
	}
	var cm corev1.ConfigMap
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: collectorNS, Name: routingName}, &cm); !apierrors.IsNotFound(err) {
		e.t.Errorf("the routing ConfigMap after destroy: %v", err)
	}
}

func (e *env) addPoP(s *pipeline.Site) {
	e.t.Helper()
	if err := e.node.AddPoP(s); err != nil {
		e.t.Fatal(err)
	}
	e.pops = append(e.pops, s)
}

// startExporters starts each PoP's pmacctd, exporting to the NodePorts, and
// the traffic it observes.
func (e *env) startExporters() {
	e.t.Helper()
	ports := e.nodePorts()
	if err := e.node.StartExporters(e.pops, netip.AddrPortFrom(netlab.NodeIP, ports["sflow"]),
		netip.AddrPortFrom(netlab.NodeIP, ports["ipfix"]), 20*time.Millisecond, e.t.TempDir()); err != nil {
		e.t.Fatal(err)
	}
}

// startCollectors starts the collectors in a pod namespace, configured
// from the routing ConfigMap as it is now.
func (e *env) startCollectors(ns string) {
	e.t.Helper()
	var cm corev1.ConfigMap
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: collectorNS, Name: routingName}, &cm); err != nil {
		e.t.Fatal(err)
	}
	if err := e.node.StartCollectors(&cm, e.mount, ns); err != nil {
		e.t.Fatal(err)
	}
}

// endpoints moves the ingress Service's endpoint to the collector pod at pod.
func (e *env) endpoints(pod netip.Addr) {
	e.t.Helper()
	if err := pipeline.Endpoints(context.Background(), e.kube, collectorNS, "flows", pod, proxyNode,
		map[string]int32{"sflow": 6343, "ipfix": 4739}); err != nil {
		e.t.Fatal(err)
	}
}
