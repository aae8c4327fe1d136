package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
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
	t          *testing.T
	p          *localplane.Plane
	c          client.Client
	kube       kubernetes.Interface
	lab        *netlab.Lab
	op         *standin.TopicOperator
	admin      *kadm.Client
	reader     *topicReader
	tf         *tfdev.Env
	work       string // terraform's working directory
	mount      string // where the collectors "mount" the routing ConfigMap
	volume     string // a volume that outlives the collector pods
	pops       []*site
	exporters  []*pmacct.Daemon
	collectors map[string][]*pmacct.Daemon // by namespace
}

func newEnv(t *testing.T) *env {
	if os.Getenv("TF_ACC") == "" {
		t.Fatal("TF_ACC is not set: run the tests with `make test`")
	}
	for _, check := range []func() error{netlab.Check, pmacct.Check} {
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	e := &env{t: t, collectors: map[string][]*pmacct.Daemon{}}
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
	if e.reader, err = newTopicReader(e.op.Brokers()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.reader.Close)
	stopCtl, err := e.p.StartNLBPolicyController(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stopCtl(); err != nil {
			t.Errorf("nlb-policy controller: %v", err)
		}
	})

	if e.lab, err = netlab.New("e2e"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.lab.Close() })
	var nodes corev1.NodeList
	if err := e.c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no Node in the plane (%v)", err)
	}
	felix, err := e.p.StartFelix(ctx, e.lab.NSPath("node"), localplane.FelixNode{Name: nodes.Items[0].Name, IP: netlab.NodeIP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(felix.Stop)
	kp, err := e.p.StartKubeProxy(ctx, e.lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: proxyNode,
		NodeIPs: []netip.Addr{netlab.NodeIP}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kp.Stop)
	e.startAgent(nodes.Items[0].Name)
	// The collectors reach the broker at its own addresses, as pods reach
	// the cluster's Kafka.
	for _, ns := range []string{"pod", "pod2"} {
		stop, err := e.lab.ForwardLoopback(ns, e.op.Brokers()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	t.Cleanup(e.stopAll)

	e.tf, err = tfdev.Build(ctx, localplane.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.work, e.mount, e.volume = t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(e.work, "main.tf"), []byte(e.config(nodes)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.terraform("get", "-no-color")
	return e
}

// config is the root module: the provider reaching the plane, and the
// telemetry-pop module with the routing on.
func (e *env) config(_ corev1.NodeList) string {
	p := e.p
	return fmt.Sprintf(`
terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}

provider "telemetry" {
  kubernetes {
    config_path = %q
  }
  aws {
    region     = %q
    access_key = %q
    secret_key = %q
    endpoints {
      ec2   = %q
      elbv2 = %q
      sts   = %q
    }
  }
}

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
`, p.Kubeconfig, p.AWS.Region, localplane.AccessKeyID, localplane.SecretAccessKey, p.AWS.Endpoint, p.AWS.Endpoint, p.AWS.Endpoint,
		filepath.Join(localplane.RepoRoot(), "examples", "modules", "telemetry-pop"), kafkaNS, collectorNS,
		p.AWS.NodeSecurityGroupID, e.op.Brokers()[0], routingName, e.mount, filepath.Join(e.volume, "ipfix-templates.json"))
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

func (e *env) addPoP(s *site) {
	e.t.Helper()
	pop, err := e.lab.AddPoP(s.name, s.addr, s.index)
	if err != nil {
		e.t.Fatal(err)
	}
	s.pop = pop
	e.pops = append(e.pops, s)
}

// startExporters starts each PoP's pmacctd, exporting to the NodePorts, and
// the traffic it observes.
func (e *env) startExporters() {
	e.t.Helper()
	ports := e.nodePorts()
	for i, s := range e.pops {
		exp := pmacct.Exporter{Iface: "obs", Source: s.addr, MaxLife: 2 * time.Second,
			SFlow: netip.AddrPortFrom(netlab.NodeIP, ports["sflow"]), IPFIX: netip.AddrPortFrom(netlab.NodeIP, ports["ipfix"])}
		path, err := pmacct.WriteConfig(e.t.TempDir(), "pmacctd.conf", exp.Config())
		if err != nil {
			e.t.Fatal(err)
		}
		d, err := pmacct.Start("exporter "+s.name, e.lab.NS(s.pop.NS()), "pmacctd", path)
		if err != nil {
			e.t.Fatal(err)
		}
		e.exporters = append(e.exporters, d)
		traffic, err := s.pop.Traffic(uint16(5000+i), 6000, 20*time.Millisecond)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(traffic.Stop)
	}
}

// startCollectors writes the routing ConfigMap's files where the collectors
// mount it and starts sfacctd and nfacctd in a pod namespace.
func (e *env) startCollectors(ns string) {
	e.t.Helper()
	var cm corev1.ConfigMap
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: collectorNS, Name: routingName}, &cm); err != nil {
		e.t.Fatal(err)
	}
	for name, text := range cm.Data {
		if err := os.WriteFile(filepath.Join(e.mount, name), []byte(text), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, daemon := range []string{"sfacctd", "nfacctd"} {
		d, err := pmacct.Start(daemon+" in "+ns, e.lab.NS(ns), daemon, filepath.Join(e.mount, daemon+".conf"))
		if err != nil {
			e.t.Fatal(err)
		}
		e.collectors[ns] = append(e.collectors[ns], d)
	}
}

func (e *env) stopCollectorsIn(ns string) {
	for _, d := range e.collectors[ns] {
		d.Stop()
	}
	delete(e.collectors, ns)
}

func (e *env) stopCollectors() {
	for ns := range e.collectors {
		e.stopCollectorsIn(ns)
	}
}

func (e *env) stopAll() {
	e.stopCollectors()
	for _, d := range e.exporters {
		d.Stop()
	}
}

// logs are the daemons' last lines, for a failure's message.
func (e *env) logs() string {
	var out []string
	for _, ds := range e.collectors {
		for _, d := range ds {
			out = append(out, d.LogTail(15))
		}
	}
	for _, d := range e.exporters {
		out = append(out, d.LogTail(8))
	}
	if os.Getenv("E2E_DEBUG") != "" {
		nat, _ := e.lab.Output("node", "iptables-save", "-c")
		ct, _ := e.lab.Output("node", "conntrack", "-L")
		out = append(out, nat, ct)
	}
	return strings.Join(out, "\n")
}

// endpoints writes the ingress Service's EndpointSlice, as the EndpointSlice
// controller does for the collector pod at pod.
func (e *env) endpoints(pod netip.Addr) {
	e.t.Helper()
	ctx := context.Background()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: collectorNS, Name: "flows-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: "flows", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("sflow"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](6343)},
			{Name: ptr.To("ipfix"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](4739)},
		},
		// On kube-proxy's node: the ingress's Service keeps the client's
		// address (externalTrafficPolicy Local), so only local endpoints serve.
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{pod.String()}, NodeName: ptr.To(proxyNode),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	api := e.kube.DiscoveryV1().EndpointSlices(collectorNS)
	if cur, err := api.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
		cur.Endpoints, cur.Ports = slice.Endpoints, slice.Ports
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if _, err := api.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// startAgent runs the conntrack agent on the lab's node until the test ends.
func (e *env) startAgent(node string) {
	e.t.Helper()
	ct := &conntrackagent.Netlink{NetNS: e.lab.NodeNS(), Workers: 1, RecvBuffer: 1 << 20}
	cfg := conntrackagent.DefaultConfig()
	cfg.Client, cfg.Conntrack, cfg.NodeName, cfg.LocalAddrs = e.kube, ct, node, ct.LocalAddrs
	cfg.Metrics, cfg.Log = conntrackagent.NewMetrics(prometheus.NewRegistry()), testr.New(e.t)
	cfg.Dataplane = conntrackagent.DataplaneProbe{URL: "http://127.0.0.1:10249",
		Dial: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = e.lab.InNS("node", func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}.Detect
	a := conntrackagent.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("conntrack agent: %v", err)
		}
	})
}
