package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// BenchmarkPipeline measures the whole pipeline (pipeline.Node: three PoPs'
// pmacctd exporting sFlow and IPFIX to the NodePorts, real Felix and
// kube-proxy, sfacctd and nfacctd configured from the ConfigMap
// telemetry_collector_routing wrote, the broker) twice in one run: with the
// product's policies (the Service opted in, the nlb-policy controller's
// Calico policies acknowledged) and without them (the same Service opted out,
// its policies removed), the baseline. Each phase offers the same load for
// BENCH_PIPELINE_SECONDS (default 20): every PoP's exporter observes
// BENCH_PIPELINE_PPS packets per second (default 500), plus 20 probe flows a
// second, each to a destination port of its own, whose records give the
// exporter-to-topic latency (from the probe's send to the record read from
// the topic). Reported per phase: export datagrams per second through the
// path (the node's counter of its link to the collector pod: what passed
// Felix and kube-proxy), observed packets per second accounted in the topics
// by protocol (records' packet counts, of records produced within the
// phase), and latency p50/p99 per protocol.
func BenchmarkPipeline(b *testing.B) {
	if err := pipeline.Check(); err != nil {
		b.Fatal(err)
	}
	seconds := envInt(b, "BENCH_PIPELINE_SECONDS", 20)
	pps := envInt(b, "BENCH_PIPELINE_PPS", 500)
	ctx := context.Background()
	p := localplane.New(b, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		b.Fatal(err)
	}
	for _, ns := range []string{"kafka", "flows"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
	}
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	stop, err := p.StartNLBPolicyController(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stop() }()
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		b.Fatalf("no Node (%v)", err)
	}
	node, err := pipeline.StartNode(ctx, p, kube, pipeline.Options{Prefix: "bpl", FelixNode: nodes.Items[0].Name,
		ProxyNode: "bench-node", Brokers: op.Brokers(), Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Stop()
	sites := []*pipeline.Site{
		{Name: "ams", Addr: netip.MustParseAddr("100.64.1.1"), Index: 1},
		{Name: "fra", Addr: netip.MustParseAddr("100.64.2.1"), Index: 2},
		{Name: "sin", Addr: netip.MustParseAddr("100.64.3.1"), Index: 3},
	}
	for _, s := range sites {
		if err := node.AddPoP(s); err != nil {
			b.Fatal(err)
		}
	}

	// The sites and the routing, by the provider.
	mount := b.TempDir()
	routing := applyRouting(b, p, op.Brokers()[0], mount, sites)

	// The ingress's Service, as telemetry_nlb_ingress writes it.
	var sources []string
	for _, s := range sites {
		sources = append(sources, netip.PrefixFrom(s.Addr, 32).String())
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "flows", Name: "flows", Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.Scheme: lbc.SchemeInternetFacing, lbc.ManageBackendSecurityGroupRule: "false"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "collector"}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: sources,
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343},
				{Name: "ipfix", Protocol: corev1.ProtocolUDP, Port: 4739}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "the acknowledgement", func() bool { _ = c.Get(ctx, client.ObjectKeyFromObject(svc), svc); return ack.Current(svc) })
	if err := pipeline.Endpoints(ctx, kube, "flows", "flows", netlab.PodIP, "bench-node", map[string]int32{"sflow": 6343, "ipfix": 4739}); err != nil {
		b.Fatal(err)
	}
	if err := node.StartCollectors(routing, mount, "pod"); err != nil {
		b.Fatal(err)
	}
	reader, err := pmacct.NewReader(op.Brokers())
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close()
	interval := time.Second / time.Duration(pps)
	if err := node.StartExporters(sites, netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[0].NodePort)),
		netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[1].NodePort)), interval, b.TempDir()); err != nil {
		b.Fatal(err)
	}

	// Warm: every exporter's sFlow and IPFIX (its templates learnt) landed.
	warm := time.Now()
	topicOf := map[netip.Addr]string{}
	for _, s := range sites {
		topicOf[s.Addr] = "sfacctd-flows-" + s.Name
	}
	waitFor(b, "every site's sFlow and IPFIX in its topic", func() bool { return pmacct.AllLanded(reader.Since(warm), topicOf) })
	setPolicy := func(value string) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
				return err
			}
			svc.Annotations[annotations.NLBPolicy] = value
			return c.Update(ctx, svc)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	policies := func() int {
		var l calicov3.GlobalNetworkPolicyList
		_ = c.List(ctx, &l)
		return len(l.Items)
	}
	b.ResetTimer()
	for range b.N {
		// With, without, with again: the order's own effect (flows carried
		// over from the phase before) shows as the two "with" differing.
		with1 := measurePipeline(b, node, reader, sites, seconds)
		setPolicy(annotations.Disabled)
		waitFor(b, "the policies removed", func() bool { return policies() == 0 })
		without := measurePipeline(b, node, reader, sites, seconds)
		setPolicy(annotations.Enabled)
		waitFor(b, "the acknowledgement again", func() bool { _ = c.Get(ctx, client.ObjectKeyFromObject(svc), svc); return ack.Current(svc) })
		with2 := measurePipeline(b, node, reader, sites, seconds)
		b.Logf("offered: %d observed packets/s per PoP x %d PoPs, plus 20 probe flows/s per PoP, for %d s per phase", pps, len(sites), seconds)
		b.Logf("%-38s %10s %10s %10s %7s", "", "with (1)", "without", "with (2)", "ratio")
		row := func(name string, a, z, a2 float64) {
			b.Logf("%-38s %10.1f %10.1f %10.1f %7.2f", name, a, z, a2, (a+a2)/2/z)
		}
		row("export datagrams/s through the path", with1.datagrams, without.datagrams, with2.datagrams)
		for _, proto := range []string{"sFlow", "IPFIX"} {
			row("observed packets/s in topics, "+proto, with1.accounted[proto], without.accounted[proto], with2.accounted[proto])
		}
		for _, proto := range []string{"sFlow", "IPFIX"} {
			row(proto+" latency p50 (ms)", with1.p50[proto], without.p50[proto], with2.p50[proto])
			row(proto+" latency p99 (ms)", with1.p99[proto], without.p99[proto], with2.p99[proto])
		}
		b.Logf("probes landed: %d/%d, %d/%d, %d/%d", with1.probesLanded, with1.probes, without.probesLanded, without.probes, with2.probesLanded, with2.probes)
		if n := with1.misrouted + without.misrouted + with2.misrouted; n > 0 {
			b.Errorf("%d records in another site's topic", n)
		}
	}
}

// pipelineRun is one phase's figures.
type pipelineRun struct {
	datagrams            float64
	accounted            map[string]float64 // observed packets/s in the topics' records, by protocol
	p50, p99             map[string]float64 // ms, by protocol
	probes, probesLanded int
	misrouted            int
}

// measurePipeline runs the probes for seconds and reads what the phase
// carried.
func measurePipeline(b *testing.B, node *pipeline.Node, reader *pmacct.Reader, sites []*pipeline.Site, seconds int) pipelineRun {
	b.Helper()
	before := podPackets(b, node)
	start := time.Now()
	sent := map[string]time.Time{} // "<exporter> <dst port>" -> send time
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, s := range sites {
		conn, err := s.PoP.Socket(uint16(7000 + i))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for port := uint16(20000); time.Since(start) < time.Duration(seconds)*time.Second; port++ {
				mu.Lock()
				sent[fmt.Sprintf("%s %d", s.Addr, port)] = time.Now()
				mu.Unlock()
				_, _ = conn.WriteToUDPAddrPort([]byte("probe"), netip.AddrPortFrom(s.PoP.ObsDst, port))
				<-t.C
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := podPackets(b, node)
	// The last probes' records come a flush interval plus IPFIX's expiry
	// later: read until every probe has landed in both protocols, or
	// nothing more has come for 3 s.
	probeRecords := func() int {
		n := 0
		for _, r := range reader.Since(start) {
			if r.DstPort >= 20000 {
				n++
			}
		}
		return n
	}
	for last, since := -1, time.Now(); probeRecords() < 2*len(sent) && time.Since(since) < 3*time.Second; time.Sleep(100 * time.Millisecond) {
		if n := probeRecords(); n != last {
			last, since = n, time.Now()
		}
	}
	run := pipelineRun{datagrams: float64(after-before) / elapsed.Seconds(), accounted: map[string]float64{}, p50: map[string]float64{}, p99: map[string]float64{}, probes: len(sent)}
	topicOf := map[netip.Addr]string{}
	for _, s := range sites {
		topicOf[s.Addr] = "sfacctd-flows-" + s.Name
	}
	lat := map[string][]float64{}
	landed := map[string]bool{}
	packets := map[string]int64{}
	for _, r := range reader.Since(start) {
		if topicOf[r.Peer] != r.Topic {
			run.misrouted++
		}
		if r.Produced.Before(start.Add(elapsed)) {
			packets[pmacct.ProtoName(r.Version)] += r.Packets
		}
		if t0, ok := sent[fmt.Sprintf("%s %d", r.Peer, r.DstPort)]; ok && r.DstPort >= 20000 {
			proto := pmacct.ProtoName(r.Version)
			lat[proto] = append(lat[proto], float64(r.Arrived.Sub(t0).Microseconds())/1000)
			landed[fmt.Sprintf("%s %d", r.Peer, r.DstPort)] = true
		}
	}
	for proto, n := range packets {
		run.accounted[proto] = float64(n) / elapsed.Seconds()
	}
	run.probesLanded = len(landed)
	for proto, ls := range lat {
		slices.Sort(ls)
		run.p50[proto] = ls[len(ls)/2]
		run.p99[proto] = ls[min(len(ls)-1, len(ls)*99/100)]
	}
	return run
}

// podPackets is how many packets the node has sent to the collector pod
// (its veth's counter): the export datagrams that passed Felix and
// kube-proxy (the pod reaches the broker over its loopback, not this link).
func podPackets(b *testing.B, node *pipeline.Node) int64 {
	b.Helper()
	out, err := node.Lab.Output("node", "cat", "/sys/class/net/to-pod/statistics/tx_packets")
	n, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil || perr != nil {
		b.Fatalf("reading to-pod's counter: %v %v %q", err, perr, out)
	}
	return n
}

// applyRouting applies the sites and their routing with the provider and
// returns the ConfigMap it wrote.
func applyRouting(b *testing.B, p *localplane.Plane, broker, mount string, sites []*pipeline.Site) *corev1.ConfigMap {
	b.Helper()
	ctx := context.Background()
	env, err := tfdev.Build(ctx, localplane.RepoRoot(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var sitesHCL []string
	for _, s := range sites {
		sitesHCL = append(sitesHCL, fmt.Sprintf("%s = [%q]", s.Name, netip.PrefixFrom(s.Addr, 32).String()))
	}
	cfg := fmt.Sprintf(`
terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}
%s
resource "telemetry_site" "pop" {
  for_each     = { %s }
  name         = each.key
  kafka        = { cluster = "telemetry", namespace = "kafka" }
  flow_sources = each.value
}
resource "telemetry_collector_routing" "flows" {
  name                    = "flow-routing"
  namespace               = "flows"
  kafka_bootstrap_servers = [%q]
  sites = { for k, s in telemetry_site.pop : k => { topic = s.topic_name, flow_sources = s.flow_sources } }
  flush_interval = "1s"
  mount_path     = %q
}
`, p.ProviderBlock(), strings.Join(sitesHCL, ", "), broker, mount)
	work := b.TempDir()
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := env.Run(ctx, work, "apply", "-auto-approve", "-no-color", "-input=false"); err != nil {
		b.Fatal(err)
	}
	c, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: "flows", Name: "flow-routing"}, &cm); err != nil {
		b.Fatal(err)
	}
	return &cm
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
