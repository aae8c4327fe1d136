package provider

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pmacct"
)

// TestRoutingWithRealPmacct: what render writes, run by Debian's sfacctd and
// nfacctd, routes real sFlow and IPFIX from pmacctd exporters over IPv4 and
// over IPv6 (as an NLB with ip targets delivers them, the client's address
// kept) each to its site's topic, by an IPv4 and an IPv6 prefix, and an
// unlisted IPv6 exporter's nowhere (it reaches the collectors: only the
// routing keeps it out here). The Kubernetes path is e2e's; this is the
// rendering against the daemons that read it.
func TestRoutingWithRealPmacct(t *testing.T) {
	for _, check := range []func() error{netlab.Check, pmacct.Check} {
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
	lab, err := netlab.New("rpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	pops := []struct {
		name, topic string
		addr        netip.Addr
		pop         *netlab.PoP
	}{
		{"v4", "flows-v4", netip.MustParseAddr("100.64.1.1"), nil},
		{"v6", "flows-v6", netip.MustParseAddr("2001:db8:a6::1"), nil},
		{"x6", "", netip.MustParseAddr("2001:db8:99::1"), nil},
	}
	for i := range pops {
		if pops[i].pop, err = lab.AddPoP(pops[i].name, pops[i].addr, i+1); err != nil {
			t.Fatal(err)
		}
	}
	// Count what the node forwards from the unlisted exporter to the pod.
	unlisted := pops[2].addr
	if err := lab.CountFrom("node", "FORWARD", unlisted); err != nil {
		t.Fatal(err)
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows-v4", "flows-v6"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	stop, err := lab.ForwardLoopback("pod", kafka.ListenAddrs()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	dir := t.TempDir()
	spec := routingSpec{Namespace: "flows", Name: "routing", Brokers: kafka.ListenAddrs()[:1], SFlowPort: 6343, IPFIXPort: 4739,
		FlushInterval: time.Second, MountPath: dir, Aggregate: defaultAggregate, Sites: []routingSite{
			{Name: "v4", Topic: "flows-v4", Sources: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}},
			{Name: "v6", Topic: "flows-v6", Sources: []netip.Prefix{netip.MustParsePrefix("2001:db8:a6::/48")}},
		}}
	for name, text := range spec.render() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var daemons []*pmacct.Daemon
	t.Cleanup(func() {
		for _, d := range daemons {
			d.Stop()
		}
	})
	logs := func() string {
		out := ""
		for _, d := range daemons {
			out += d.LogTail(10) + "\n"
		}
		return out
	}
	for _, daemon := range []string{"sfacctd", "nfacctd"} {
		d, err := pmacct.Start(daemon, lab.NS("pod"), daemon, filepath.Join(dir, daemon+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		daemons = append(daemons, d)
	}
	for i, p := range pops {
		pod := netlab.PodIP
		if p.addr.Is6() {
			pod = netlab.PodIP6
		}
		exp := pmacct.Exporter{Iface: "obs", Source: p.addr, MaxLife: 2 * time.Second,
			SFlow: netip.AddrPortFrom(pod, 6343), IPFIX: netip.AddrPortFrom(pod, 4739)}
		conf, err := pmacct.WriteConfig(dir, "pmacctd-"+p.name+".conf", exp.Config())
		if err != nil {
			t.Fatal(err)
		}
		d, err := pmacct.Start("exporter "+p.name, lab.NS(p.pop.NS()), "pmacctd", conf)
		if err != nil {
			t.Fatal(err)
		}
		daemons = append(daemons, d)
		traffic, err := p.pop.Traffic(uint16(5000+i), 6000, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(traffic.Stop)
	}

	reader, err := pmacct.NewReader(kafka.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	start := time.Now()
	// Until both sites' sFlow and IPFIX landed, then one more flush of both.
	topicOf := map[netip.Addr]string{pops[0].addr: pops[0].topic, pops[1].addr: pops[1].topic}
	landed := func(since time.Time) bool { return pmacct.AllLanded(reader.Since(since), topicOf) }
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return landed(start), nil }); err != nil {
		t.Fatalf("not both sites' flows landed in their topics: %s\n%s", pmacct.Describe(pmacct.Landed(reader.Since(start))), logs())
	}
	more := time.Now()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return landed(more), nil }); err != nil {
		t.Fatalf("the collectors stopped writing\n%s", logs())
	}
	for _, r := range reader.Since(start) {
		switch {
		case r.Peer == pops[2].addr:
			t.Errorf("the unlisted exporter's %s record landed in %s", pmacct.ProtoName(r.Version), r.Topic)
		case r.Peer == pops[0].addr && r.Topic != "flows-v4", r.Peer == pops[1].addr && r.Topic != "flows-v6":
			t.Errorf("exporter %s's %s record landed in %s", r.Peer, pmacct.ProtoName(r.Version), r.Topic)
		case r.Tag != siteTag(map[string]string{"flows-v4": "v4", "flows-v6": "v6"}[r.Topic]):
			t.Errorf("a record in %s carries tag %d, not its site's", r.Topic, r.Tag)
		}
	}
	// The unlisted exporter's datagrams did reach the collectors' pod: it is
	// the routing that kept them out of every topic.
	forwarded, err := lab.PacketsFrom("node", "FORWARD", unlisted)
	if err != nil {
		t.Fatal(err)
	}
	if forwarded == 0 {
		t.Error("no datagram of the unlisted exporter reached the pod, so the test shows nothing of the routing")
	}
	t.Logf("the unlisted exporter's %d datagrams reached the collectors; none landed", forwarded)
}
