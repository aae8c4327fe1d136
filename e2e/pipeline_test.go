package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
)

// TestPipeline: the product between real parts, end to end. Four PoPs in
// network namespaces run pmacctd, which captures the traffic each sees and
// exports it as sFlow and IPFIX from the PoP's address; three are sites of
// the telemetry-pop module (applied with the real terraform CLI), the fourth
// is listed nowhere. Their datagrams go to the node's NodePorts of the
// ingress's Service, through real Felix (the nlb-policy controller's
// policies) and real kube-proxy, to sfacctd and nfacctd in the collector
// pod's namespace, configured from the ConfigMap telemetry_collector_routing
// wrote, producing into a Kafka-protocol broker whose topics the Topic
// Operator stand-in made from the sites' KafkaTopics. Read back with a Kafka
// client:
//   - each site's sFlow and IPFIX records land in its topic and only there,
//     carrying the exporter's own address (kept end to end);
//   - the unlisted exporter's land nowhere;
//   - a site removed by `terraform apply` stops landing (its topic goes, and
//     no other topic gets its records);
//   - the flows go on landing after the collector pod is replaced (kube-proxy
//     and the conntrack agent move the UDP flows to the new pod);
//   - every apply converges (the next plan is empty) and destroy removes it all.
func TestPipeline(t *testing.T) {
	t.Parallel() // on a plane and in a lab of its own
	e := newEnv(t, envOptions{})
	all := []pipeline.Site{
		{Name: "ams", Addr: netip.MustParseAddr("100.64.1.1"), Index: 1},
		{Name: "fra", Addr: netip.MustParseAddr("100.64.2.1"), Index: 2},
		{Name: "sin", Addr: netip.MustParseAddr("100.64.3.1"), Index: 3},
	}
	unlisted := pipeline.Site{Name: "rogue", Addr: netip.MustParseAddr("100.64.9.1"), Index: 9}
	for i := range all {
		e.addPoP(&all[i])
	}
	e.addPoP(&unlisted)

	// 1. Three sites.
	e.apply(all)
	e.endpoints(netlab.PodIP)
	e.startCollectors("pod")
	e.startExporters()
	start := time.Now()
	e.waitLanded("three sites", start, all, unlisted)

	// 2. A site removed by terraform apply: its topic goes, its exporter's
	// records land nowhere; the others keep landing. The collectors restart
	// with the new routing, as the checksum on their pod template makes them.
	removed := all[2]
	e.apply(all[:2])
	e.waitTopicGone(removed)
	e.node.StopDaemons("pod")
	e.startCollectors("pod")
	e.waitLanded("after removing "+removed.Name, time.Now(), all[:2], unlisted, removed)

	// 3. The collector pod replaced: the new pod (pod2) runs, the Service's
	// endpoint moves to it, the old one stops.
	e.startCollectors("pod2")
	moved := time.Now()
	e.endpoints(netlab.Pod2IP)
	e.node.StopDaemons("pod")
	took := e.waitLanded("after replacing the collector pod", moved, all[:2], unlisted, removed)
	t.Logf("the flows landed again %s after the endpoint moved", took.Round(10*time.Millisecond))

	if bad := e.reader.Malformed(); len(bad) > 0 {
		t.Errorf("records that are not pmacct's JSON: %v", bad[:min(len(bad), 5)])
	}
	e.destroy()
}

// waitLanded waits until every listed site's exporter has had sFlow and
// IPFIX records land in its own topic since `since`, then judges every
// record read since then: each in its exporter's site's topic, none from an
// exporter of absent. It returns how long the landing took.
func (e *env) waitLanded(phase string, since time.Time, listed []pipeline.Site, absent ...pipeline.Site) time.Duration {
	t := e.t
	t.Helper()
	topicOf := map[netip.Addr]string{}
	srcOf := map[netip.Addr]netip.Addr{}
	for _, s := range listed {
		topicOf[s.Addr] = e.topic(s)
		srcOf[s.Addr] = s.PoP.ObsSrc
	}
	var first time.Time
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		if !pmacct.AllLanded(e.reader.Since(since), topicOf) {
			return false, nil
		}
		first = time.Now()
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: not every site's sFlow and IPFIX landed in its topic within 90 s; landed since then:\n%s\n%s",
			phase, pmacct.Describe(pmacct.Landed(e.reader.Since(since))), e.node.Logs())
	}
	// One more flush of every collector, so records of an exporter that
	// should not land would have had the same chance as the listed ones'.
	more := time.Now()
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		n := map[int]bool{}
		for _, r := range e.reader.Since(more) {
			n[r.Version] = true
		}
		return n[5] && n[10], nil
	})
	if err != nil {
		t.Fatalf("%s: the collectors stopped writing\n%s", phase, e.node.Logs())
	}
	for _, r := range e.reader.Since(since) {
		want, ok := topicOf[r.Peer]
		switch {
		case !ok:
			t.Errorf("%s: a %s record of exporter %s (no listed site's) landed in %s", phase, pmacct.ProtoName(r.Version), r.Peer, r.Topic)
		case r.Topic != want:
			t.Errorf("%s: a %s record of exporter %s landed in %s, not its site's %s", phase, pmacct.ProtoName(r.Version), r.Peer, r.Topic, want)
		case r.Src != srcOf[r.Peer]:
			t.Errorf("%s: a record of exporter %s describes a flow from %s, which it never saw (its own: %s)", phase, r.Peer, r.Src, srcOf[r.Peer])
		}
	}
	firstBy := map[string]time.Duration{}
	for _, r := range e.reader.Since(since) {
		k := pmacct.ProtoName(r.Version)
		if d := r.Arrived.Sub(since); firstBy[k] == 0 || d < firstBy[k] {
			firstBy[k] = d
		}
	}
	t.Logf("%s: first records after %v", phase, firstBy)
	for _, s := range absent {
		for _, r := range e.reader.Since(since) {
			if r.Peer == s.Addr {
				t.Errorf("%s: exporter %s (%s) landed in %s", phase, s.Addr, s.Name, r.Topic)
				break
			}
		}
	}
	return first.Sub(since)
}

// tfvars writes the sites' variable for the next apply.
func (e *env) tfvars(sites []pipeline.Site) {
	e.t.Helper()
	vars := map[string]any{}
	for _, s := range sites {
		vars[s.Name] = map[string]any{"expected_flows_per_second": 1000,
			"flow_sources": []string{netip.PrefixFrom(s.Addr, s.Addr.BitLen()).String()}}
	}
	b, _ := json.Marshal(map[string]any{"sites": vars})
	if err := os.WriteFile(filepath.Join(e.work, "sites.auto.tfvars.json"), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// apply applies the module with these sites, then checks the plan is empty
// and the topics exist in the broker.
func (e *env) apply(sites []pipeline.Site) {
	e.t.Helper()
	e.tfvars(sites)
	e.terraform("apply", "-auto-approve", "-no-color", "-input=false")
	if res := e.terraform("plan", "-detailed-exitcode", "-no-color", "-input=false"); res.ExitCode != 0 {
		e.t.Fatalf("the plan after apply is not empty:\n%s", res.Output)
	}
	for _, s := range sites {
		e.waitTopic(s)
	}
}

// topic is a site's topic name, as telemetry_site names it.
func (e *env) topic(s pipeline.Site) string { return "sfacctd-flows-" + s.Name }

// waitTopic waits for a site's topic in the broker.
func (e *env) waitTopic(s pipeline.Site) {
	e.t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		topics, err := e.admin.ListTopics(ctx)
		return err == nil && topics.Has(e.topic(s)), nil
	}); err != nil {
		e.t.Fatalf("topic %s never appeared in the broker", e.topic(s))
	}
}

func (e *env) waitTopicGone(s pipeline.Site) {
	e.t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		topics, err := e.admin.ListTopics(ctx)
		return err == nil && !topics.Has(e.topic(s)), nil
	}); err != nil {
		e.t.Fatalf("topic %s is still in the broker after its site was removed", e.topic(s))
	}
}

// nodePorts are the ingress Service's NodePorts by port name.
func (e *env) nodePorts() map[string]uint16 {
	e.t.Helper()
	var svc corev1.Service
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: collectorNS, Name: "flows"}, &svc); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]uint16{}
	for _, p := range svc.Spec.Ports {
		out[p.Name] = uint16(p.NodePort)
	}
	return out
}

// TestPipelineIPv6: IPv6 exporters, with the ingress on ip targets (the NLB
// delivers to the pods, keeping the exporters' IPv6 addresses; with instance
// targets it cannot, and the provider refuses IPv6 sources at plan time).
// The ingress uses the networkpolicy backend: the controller writes a
// Kubernetes NetworkPolicy and no Calico policy, and Felix enforces it (as
// any NetworkPolicy dataplane would) on the collector pod, a Calico workload
// (a Pod on Felix's node, its link named as Calico's CNI names it). sFlow
// and IPFIX go over IPv6 through real Felix (IPv6 on) to the pod: each
// site's records land in its topic with the exporter's IPv6 address, and the
// unlisted IPv6 exporter's datagrams never reach the pod (Felix refuses
// them; TestRoutingWithRealPmacct shows the routing alone also keeps such
// records out of every topic).
func TestPipelineIPv6(t *testing.T) {
	t.Parallel() // on a plane and in a lab of its own
	e := newEnv(t, envOptions{ipv6: true, policyBackend: "networkpolicy"})
	veth := ""
	networkPolicyPipeline(e,
		[]pipeline.Site{
			{Name: "ams6", Addr: netip.MustParseAddr("2001:db8:a1::1"), Index: 1},
			{Name: "fra6", Addr: netip.MustParseAddr("2001:db8:a2::1"), Index: 2},
		},
		[]pipeline.Site{{Name: "rogue6", Addr: netip.MustParseAddr("2001:db8:99::1"), Index: 9}},
		func(link string) { veth = link },
		// Felix enforces a policy on traffic to the pod, in both families.
		func() (bool, string) {
			for _, save := range []string{"iptables-save", "ip6tables-save"} {
				rules, err := e.node.Lab.Output("node", save)
				if err != nil || !regexp.MustCompile(`-A cali-tw-`+veth+` .*-j cali-[pg]i-`).MatchString(rules) {
					return false, rules
				}
			}
			return true, ""
		})
}

// TestPipelineWithKubeRouter: the same module and apply on a cluster
// without Calico: the controller runs with the networkpolicy backend alone
// (its default, the only one allowed, as --policy-backend=networkpolicy
// --allowed-policy-backends=networkpolicy give it: no Calico tier, no
// Calico kind watched), the module does not choose a backend, and
// kube-router's network policy controller is the node's only enforcer (no
// Felix, no Calico object anywhere): an IPv4 and an IPv6 site on ip targets
// land in their topics, and neither the unlisted IPv4 nor the unlisted IPv6
// exporter's datagrams reach the collector pod (kube-router drops them).
func TestPipelineWithKubeRouter(t *testing.T) {
	t.Parallel() // on a plane and in a lab of its own
	e := newEnv(t, envOptions{ipv6: true, kubeRouter: true,
		controllerBackends: []nlbpolicy.Backend{nlbpolicy.BackendNetworkPolicy}})
	networkPolicyPipeline(e,
		[]pipeline.Site{
			{Name: "ams", Addr: netip.MustParseAddr("100.64.1.1"), Index: 1},
			{Name: "fra6", Addr: netip.MustParseAddr("2001:db8:a2::1"), Index: 2},
		},
		[]pipeline.Site{
			{Name: "rogue", Addr: netip.MustParseAddr("100.64.9.1"), Index: 8},
			{Name: "rogue6", Addr: netip.MustParseAddr("2001:db8:99::1"), Index: 9},
		},
		func(string) {},
		// kube-router's chain for the pod, in both families, running through
		// the Service's policy (chains written by a sync before kube-router's
		// informers had the pod's labels admit everyone: see
		// TestNetworkPolicyBackendWithKubeRouter).
		func() (bool, string) {
			rules, err := e.node.KubeRouter.Rules()
			return err == nil && strings.Count(rules, ":KUBE-POD-FW-") >= 2 && strings.Count(rules, ":KUBE-NWPLCY-") >= 2 &&
					strings.Count(rules, "run through nw policy ") >= 2,
				rules + "\n" + e.node.KubeRouter.LogTail(20)
		})
}

// networkPolicyPipeline applies the module with the listed sites (an env
// with ip targets and the networkpolicy backend), makes the lab's pod the
// collector pod on the enforcer's node (pod is told its link's name), waits
// until enforced says the enforcer has programmed a policy for it, and
// checks the pipeline through the enforcer: no Calico policy of the
// controller's, the namespace's one NetworkPolicy, every listed site's
// records in its topic, and no datagram of an unlisted exporter at the pod.
func networkPolicyPipeline(e *env, all, unlisted []pipeline.Site, pod func(link string), enforced func() (bool, string)) {
	t := e.t
	t.Helper()
	for i := range all {
		e.addPoP(&all[i])
	}
	for i := range unlisted {
		e.addPoP(&unlisted[i])
	}
	e.apply(all)
	// The collector pod as a cluster's enforcer sees it, which the
	// controller's NetworkPolicy selects.
	link, err := e.node.PodWorkload(context.Background(), e.kube, "pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: collectorNS, Name: "collector-0", Labels: map[string]string{"app": "collector"}}})
	if err != nil {
		t.Fatal(err)
	}
	pod(link)
	var last string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		ok, why := enforced()
		last = why
		return ok, nil
	}); err != nil {
		t.Fatalf("the enforcer never enforced a policy on traffic to the collector pod:\n%s", last)
	}
	// Enforced by the Service's NetworkPolicy alone: no Calico policy of the
	// controller's exists.
	var gnps calicov3.GlobalNetworkPolicyList
	if err := e.c.List(context.Background(), &gnps, client.MatchingLabels{annotations.ManagedBy: annotations.NLBPolicyManager}); err != nil {
		t.Fatal(err)
	}
	if len(gnps.Items) != 0 {
		t.Fatalf("the networkpolicy backend, but %d Calico policies of the controller", len(gnps.Items))
	}
	// A controller without the calico backend makes no Calico object at
	// all: not even its tier.
	if len(e.opts.controllerBackends) > 0 && !slices.Contains(e.opts.controllerBackends, nlbpolicy.BackendCalico) {
		var tiers calicov3.TierList
		if err := e.c.List(context.Background(), &tiers); err != nil {
			t.Fatal(err)
		}
		for _, tier := range tiers.Items {
			if tier.Name == nlbpolicy.DefaultTier {
				t.Fatalf("the controller has no calico backend, but the Calico tier %s exists", tier.Name)
			}
		}
	}
	var nps networkingv1.NetworkPolicyList
	if err := e.c.List(context.Background(), &nps, client.InNamespace(collectorNS)); err != nil || len(nps.Items) != 1 {
		t.Fatalf("the collectors' namespace holds %d NetworkPolicies (%v), want the Service's one", len(nps.Items), err)
	}
	e.startCollectors("pod")
	everyone := append(slices.Clone(all), unlisted...)
	// What reaches the pod from each exporter, counted in the pod.
	for _, s := range everyone {
		if err := e.node.Lab.CountFrom("pod", "INPUT", s.Addr); err != nil {
			t.Fatal(err)
		}
	}
	// The NLB with ip targets sends to the pod's address, in the
	// exporter's family.
	var sites4, sites6 []*pipeline.Site
	for _, s := range e.pops {
		if s.Addr.Is4() {
			sites4 = append(sites4, s)
		} else {
			sites6 = append(sites6, s)
		}
	}
	for _, fam := range []struct {
		sites []*pipeline.Site
		pod   netip.Addr
	}{{sites4, netlab.PodIP}, {sites6, netlab.PodIP6}} {
		if len(fam.sites) == 0 {
			continue
		}
		if err := e.node.StartExporters(fam.sites, netip.AddrPortFrom(fam.pod, 6343), netip.AddrPortFrom(fam.pod, 4739),
			20*time.Millisecond, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	e.waitLanded("through the NetworkPolicy", time.Now(), all, unlisted...)
	for _, s := range everyone {
		n, err := e.node.Lab.PacketsFrom("pod", "INPUT", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		listed := slices.ContainsFunc(all, func(l pipeline.Site) bool { return l.Addr == s.Addr })
		switch {
		case !listed && n != 0:
			_, rules := enforced()
			t.Errorf("%d datagrams of the unlisted exporter %s reached the collector pod: the enforcer let them through\n%s", n, s.Addr, rules)
		case listed && n == 0:
			t.Errorf("the pod's counter of %s is 0 though its records landed: the count is wrong", s.Addr)
		}
	}
	e.destroy()
}
