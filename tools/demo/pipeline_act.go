package main

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// The pipeline: real exporters at three PoPs (and one unlisted), through the
// ingress's path (real Felix with the controller's policies, real
// kube-proxy), to real sfacctd and nfacctd configured from the routing
// ConfigMap the apply wrote, into the broker: counted per topic.

// pipelineSites is how many of the example's PoPs export in the act.
const pipelineSites = 3

func (d *demo) pipeline() error {
	if err := pipeline.Check(); err != nil {
		return fmt.Errorf("the pipeline cannot run here: %w. As root, `make deps` installs what is missing and `make demo` runs it", err)
	}
	kube, err := kubernetes.NewForConfig(d.plane.Config)
	if err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := d.kube.List(d.ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		return fmt.Errorf("no Node in the plane (%v)", err)
	}
	node, err := pipeline.StartNode(d.ctx, d.plane, kube, pipeline.Options{Prefix: "dpl", FelixNode: nodes.Items[0].Name,
		ProxyNode: "demo-node", Brokers: d.topics.Brokers(), Log: logr.Discard()})
	if err != nil {
		return err
	}
	defer node.Stop()
	d.note("a node in network namespaces: Felix (the controller's policies), kube-proxy and the conntrack agent")
	reader, err := pmacct.NewReader(d.topics.Brokers())
	if err != nil {
		return err
	}
	defer reader.Close()

	listed, topicOf, err := d.pipelineSites()
	if err != nil {
		return err
	}
	unlisted := &pipeline.Site{Name: "rogue", Addr: netip.MustParseAddr("100.64.9.1"), Index: 9}
	all := append(slices.Clone(listed), unlisted)
	for _, s := range all {
		if err := node.AddPoP(s); err != nil {
			return err
		}
	}

	// The collector pod: the ingress Service's endpoint, its daemons
	// configured from the routing ConfigMap.
	var svc corev1.Service
	if err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, &svc); err != nil {
		return err
	}
	nodePort := map[string]uint16{}
	for _, p := range svc.Spec.Ports {
		nodePort[p.Name] = uint16(p.NodePort)
	}
	if err := pipeline.Endpoints(d.ctx, kube, "telemetry", "flows", netlab.PodIP, "demo-node",
		map[string]int32{"sflow": 6343, "ipfix-udp": 4739}); err != nil {
		return err
	}
	var routing corev1.ConfigMap
	if err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flow-routing"}, &routing); err != nil {
		return fmt.Errorf("the routing ConfigMap the apply wrote: %w", err)
	}
	if err := node.StartCollectors(&routing, d.collectorConfig, "pod"); err != nil {
		return err
	}
	d.note("sfacctd and nfacctd (Debian's pmacct) in the collector pod, from ConfigMap telemetry/flow-routing (%d sites)", strings.Count(routing.Data["sfacctd.conf"], "kafka_topic["))
	dir, err := os.MkdirTemp("", "telemetry-demo-exporters-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if err := node.StartExporters(all, netip.AddrPortFrom(netlab.NodeIP, nodePort["sflow"]),
		netip.AddrPortFrom(netlab.NodeIP, nodePort["ipfix-udp"]), 20*time.Millisecond, dir); err != nil {
		return err
	}
	for _, s := range listed {
		d.note("PoP %s: pmacctd exports sFlow and IPFIX from %s to the NodePorts", s.Name, s.Addr)
	}
	d.note("PoP rogue: pmacctd exports from %s, in no site", unlisted.Addr)

	// Until every listed PoP's sFlow and IPFIX are in its topic, then one
	// more flush of both collectors.
	arrived := func(since time.Time) bool { return pmacct.AllLanded(reader.Since(since), topicOf) }
	if err := d.waitFor(90*time.Second, func() (bool, error) { return arrived(start), nil }); err != nil {
		return fmt.Errorf("not every PoP's flows reached its topic: %v\n%s\n%s", err, pmacct.Describe(pmacct.Landed(reader.Since(start))), node.Logs())
	}
	more := time.Now()
	if err := d.waitFor(30*time.Second, func() (bool, error) { return arrived(more), nil }); err != nil {
		return fmt.Errorf("the collectors stopped writing: %v", err)
	}
	return d.countPerTopic(reader.Since(start), listed, unlisted, topicOf)
}

// countPerTopic prints what landed where, read from the broker, and fails
// on any record in a topic not its exporter's site's.
func (d *demo) countPerTopic(recs []pmacct.Record, listed []*pipeline.Site, unlisted *pipeline.Site, topicOf map[netip.Addr]string) error {
	type count struct{ sflow, ipfix, foreign int }
	perTopic := map[string]*count{}
	for _, s := range listed {
		perTopic[topicOf[s.Addr]] = &count{}
	}
	rogue, misrouted := 0, 0
	for _, r := range recs {
		c := perTopic[r.Topic]
		if c == nil {
			c = &count{}
			perTopic[r.Topic] = c
		}
		switch {
		case r.Peer == unlisted.Addr:
			rogue++
			c.foreign++
		case topicOf[r.Peer] != r.Topic:
			misrouted++
			c.foreign++
		case r.Version == 5:
			c.sflow++
		default:
			c.ipfix++
		}
	}
	topics := make([]string, 0, len(perTopic))
	for t := range perTopic {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "    TOPIC\tsFLOW RECORDS\tIPFIX RECORDS\tRECORDS OF OTHER EXPORTERS")
	total := 0
	for _, t := range topics {
		c := perTopic[t]
		total += c.sflow + c.ipfix
		fmt.Fprintf(w, "    %s\t%d\t%d\t%d\n", t, c.sflow, c.ipfix, c.foreign)
	}
	w.Flush()
	d.note("the unlisted exporter %s: %d records in any topic (refused by Felix, and in no site's routing)", unlisted.Addr, rogue)
	if rogue > 0 || misrouted > 0 {
		return fmt.Errorf("records landed where they must not: %d of the unlisted exporter, %d in another site's topic", rogue, misrouted)
	}
	d.result("Pipeline", fmt.Sprintf("%d PoPs' sFlow and IPFIX in their own %d topics (%d records), unlisted exporter: 0",
		len(listed), len(listed), total))
	return nil
}

// pipelineSites are the first PoPs of the example, each exporting from the
// first address of its first source range (read from its KafkaTopic), and
// each exporter's topic.
func (d *demo) pipelineSites() ([]*pipeline.Site, map[netip.Addr]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
	if err := d.kube.List(d.ctx, list, client.InNamespace("kafka")); err != nil {
		return nil, nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	var sites []*pipeline.Site
	topicOf := map[netip.Addr]string{}
	for i, t := range list.Items {
		if len(sites) == pipelineSites {
			break
		}
		sources := strings.Split(t.GetAnnotations()[annotations.FlowSources], ",")
		p, err := netip.ParsePrefix(strings.TrimSpace(sources[0]))
		if err != nil {
			return nil, nil, fmt.Errorf("KafkaTopic %s: flow sources %q: %w", t.GetName(), sources, err)
		}
		s := &pipeline.Site{Name: t.GetLabels()[annotations.Site], Addr: p.Addr().Next(), Index: i + 1}
		sites = append(sites, s)
		topicOf[s.Addr] = t.GetName()
	}
	if len(sites) < pipelineSites {
		return nil, nil, fmt.Errorf("%d KafkaTopics in namespace kafka, want %d", len(sites), pipelineSites)
	}
	return sites, topicOf, nil
}
