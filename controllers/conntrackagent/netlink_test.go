package conntrackagent

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
)

// newNetNS creates an empty network namespace for the test.
func newNetNS(t *testing.T, name string) int {
	t.Helper()
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); _ = exec.Command("ip", "netns", "del", name).Run() })
	return int(f.Fd())
}

func createFlows(t *testing.T, ns int, proto uint8, n int, dst netip.Addr) {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)})
		if dst.Is6() {
			src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i % 250)})
		}
		sport := uint16(10000 + i)
		f := conntrack.NewFlow(proto, 0, src, dst, sport, 6343, 60, 0)
		if err := c.Create(f); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
}

func TestScanFiltersUDPInTheKernelAndDeletes(t *testing.T) {
	ns := newNetNS(t, "ctscan")
	lb := netip.MustParseAddr("203.0.113.10")
	createFlows(t, ns, 17, 1200, lb) // more than a worker's batch (deleteBatch)
	createFlows(t, ns, 6, 200, lb)
	n := &Netlink{NetNS: ns, Workers: 3}
	var flows []Flow
	stats, err := n.Scan(context.Background(), func(f Flow) { flows = append(flows, f) })
	if err != nil {
		t.Fatal(err)
	}
	if !stats.Filter {
		t.Fatal("the kernel refused CTA_FILTER (Linux >= 5.8 expected here)")
	}
	if stats.Scanned != 1200 || len(flows) != 1200 {
		t.Fatalf("scanned %d UDP entries, want 1200 of 1400", stats.Scanned)
	}
	for _, f := range flows {
		if f.Proto != 17 || f.OrigDst != netip.AddrPortFrom(lb, 6343) || f.ReplySrc.Addr() != lb {
			t.Fatalf("unexpected flow %+v", f)
		}
	}
	// Delete half, then all again: the first half is gone (vanished), not an error.
	out, err := n.Delete(context.Background(), flows[:600])
	if ds := Tally(out); err != nil || ds.Deleted != 600 {
		t.Fatalf("delete: %+v %v", ds, err)
	}
	out, err = n.Delete(context.Background(), flows)
	if ds := Tally(out); err != nil || ds.Deleted != 600 || ds.Vanished != 600 {
		t.Fatalf("second delete: %+v %v", ds, err)
	}
	stats, err = n.Scan(context.Background(), func(Flow) {})
	if err != nil || stats.Scanned != 0 {
		t.Fatalf("left after deletion: %d (%v)", stats.Scanned, err)
	}
}

// Deleting IPv6 entries works: ti-mo/conntrack takes the family from both
// tuples, so a delete that fills only the original one used to fail with
// EINVAL on every IPv6 entry.
func TestDeleteIPv6(t *testing.T) {
	ns := newNetNS(t, "ctdel6")
	lb := netip.MustParseAddr("2001:db8:ffff::10")
	createFlows(t, ns, 17, 50, lb)
	createFlows(t, ns, 17, 50, netip.MustParseAddr("203.0.113.10"))
	n := &Netlink{NetNS: ns, Workers: 2}
	var flows []Flow
	if _, err := n.Scan(context.Background(), func(f Flow) { flows = append(flows, f) }); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 100 {
		t.Fatalf("scanned %d entries, want 100", len(flows))
	}
	outcomes, err := n.Delete(context.Background(), flows)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := Tally(outcomes); got.Deleted != 100 {
		t.Fatalf("deleted %+v, want all 100 (50 IPv6, 50 IPv4)", got)
	}
	stats, err := n.Scan(context.Background(), func(Flow) {})
	if err != nil || stats.Scanned != 0 {
		t.Fatalf("left after deletion: %d (%v)", stats.Scanned, err)
	}
}

// decodeTuples reads the same tuples as conntrack's full decoding, on real
// entries of both families, NATed or not.
func TestDecodeTuplesMatchesConntrack(t *testing.T) {
	ns := newNetNS(t, "ctdecode")
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flows := []conntrack.Flow{
		conntrack.NewFlow(17, 0, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.10"), 40000, 6343, 60, 0),
		conntrack.NewFlow(6, 0, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("203.0.113.11"), 40001, 443, 60, 0),
		conntrack.NewFlow(17, 0, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::10"), 40002, 4739, 60, 0),
	}
	nated := conntrack.NewFlow(17, 0, netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("203.0.113.10"), 40003, 6343, 60, 0)
	nated.TupleReply.IP.SourceAddress, nated.TupleReply.Proto.SourcePort = netip.MustParseAddr("198.51.100.20"), 16343
	flows = append(flows, nated)
	for _, f := range flows {
		if err := c.Create(f); err != nil {
			t.Fatal(err)
		}
	}
	dumped, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Flow]bool{}
	for _, f := range dumped {
		o, r := f.TupleOrig, f.TupleReply
		want[Flow{Proto: o.Proto.Protocol, OrigSrc: netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort),
			OrigDst:  netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort),
			ReplySrc: netip.AddrPortFrom(r.IP.SourceAddress, r.Proto.SourcePort)}] = true
	}
	n := &Netlink{NetNS: ns}
	got := map[Flow]bool{}
	if _, err := n.Scan(context.Background(), func(f Flow) { got[f] = true }); err != nil {
		t.Fatal(err)
	}
	udp := 0
	for f := range want {
		if f.Proto == 17 {
			udp++
			if !got[f] {
				t.Errorf("Scan missed or misread %+v; got %v", f, got)
			}
		}
	}
	if len(got) != udp || udp != 3 {
		t.Fatalf("Scan returned %d flows, conntrack dumped %d UDP", len(got), udp)
	}
}

func TestForEachAttrStopsOnMalformedInput(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, {2, 0, 1, 0}, {200, 0, 1, 0, 1, 2, 3, 4}} {
		if _, ok := decodeTuples(append([]byte{2, 0, 0, 0}, b...)); ok {
			t.Errorf("decoded %v", b)
		}
	}
}

// The kernel filters a dump by original destination address and port
// (CTA_FILTER): a targeted scan reads only one Service's entries.
func TestScanFilteredByDestination(t *testing.T) {
	ns := newNetNS(t, "ctfilter")
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	add := func(proto uint8, src, dst string, sport, dport uint16) {
		t.Helper()
		if err := c.Create(conntrack.NewFlow(proto, 0, netip.MustParseAddr(src), netip.MustParseAddr(dst), sport, dport, 60, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint16(0); i < 20; i++ {
		add(17, "192.0.2.50", "203.0.113.10", 10000+i, 6343) // the Service's LB IP and port
		add(17, "192.0.2.50", "203.0.113.10", 20000+i, 4739) // same address, another port
		add(17, "192.0.2.50", "203.0.113.11", 30000+i, 6343) // another address, same port
		add(6, "192.0.2.50", "203.0.113.10", 40000+i, 6343)  // TCP
		add(17, "2001:db8::50", "2001:db8:71::10", 10000+i, 6343)
		add(17, "2001:db8::50", "2001:db8:71::10", 20000+i, 30100) // a NodePort on IPv6
		add(17, "192.0.2.50", "192.0.2.1", 20000+i, 30100)         // the same NodePort on IPv4
	}
	n := &Netlink{NetNS: ns}
	for _, tc := range []struct {
		name    string
		filters []Filter
		want    int
	}{
		{"LB IP and port", []Filter{{Proto: 17, Dst: netip.MustParseAddr("203.0.113.10"), DstPort: 6343}}, 20},
		{"IPv6 LB IP and port", []Filter{{Proto: 17, Dst: netip.MustParseAddr("2001:db8:71::10"), DstPort: 6343}}, 20},
		{"a NodePort, both families", []Filter{{Proto: 17, DstPort: 30100}}, 40},
		{"TCP to the LB IP", []Filter{{Proto: 6, Dst: netip.MustParseAddr("203.0.113.10")}}, 20},
		{"two filters", []Filter{{Proto: 17, Dst: netip.MustParseAddr("203.0.113.10"), DstPort: 6343}, {Proto: 17, DstPort: 30100}}, 60},
		{"all UDP", []Filter{{Proto: 17}}, 120},
	} {
		var got []Flow
		stats, err := n.ScanFiltered(context.Background(), tc.filters, func(f Flow) { got = append(got, f) })
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !stats.Filter {
			t.Fatalf("%s: the kernel refused the filter", tc.name)
		}
		if len(got) != tc.want || stats.Scanned != tc.want {
			t.Errorf("%s: %d entries (scanned %d), want %d", tc.name, len(got), stats.Scanned, tc.want)
		}
		for _, f := range got {
			if !slices.ContainsFunc(tc.filters, func(fl Filter) bool { return fl.match(f) }) {
				t.Errorf("%s: %+v matches no filter", tc.name, f)
			}
		}
	}
}

// Lookup reads entries by their original tuple, both families, and skips
// those that are gone.
func TestLookup(t *testing.T) {
	ns := newNetNS(t, "ctlookup")
	createFlows(t, ns, 17, 5, netip.MustParseAddr("203.0.113.10"))
	createFlows(t, ns, 17, 5, netip.MustParseAddr("2001:db8:71::10"))
	n := &Netlink{NetNS: ns}
	var flows []Flow
	if _, err := n.Scan(context.Background(), func(f Flow) { flows = append(flows, f) }); err != nil {
		t.Fatal(err)
	}
	got, err := n.Lookup(context.Background(), flows)
	if err != nil || len(got) != 10 {
		t.Fatalf("lookup: %d of 10 (%v)", len(got), err)
	}
	for i, f := range got {
		if f != flows[i] {
			t.Fatalf("lookup %d: %+v, scanned %+v", i, f, flows[i])
		}
	}
	if _, err := n.Delete(context.Background(), flows[:3]); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Lookup(context.Background(), flows); err != nil || len(got) != 7 {
		t.Fatalf("after deleting 3: %d (%v)", len(got), err)
	}
}

// The kernel's conntrack events reach Watch: a NEW for each UDP entry
// created (IPv4 and IPv6, with its reply tuple), a destroy for each
// deleted; TCP events are dropped in the kernel by the socket filter (not
// one of their 200 datagrams reaches the agent).
func TestWatch(t *testing.T) {
	ns := newNetNS(t, "ctwatch")
	n := &Netlink{NetNS: ns, RecvBuffer: 1 << 20}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	created, destroyed := map[Flow]bool{}, map[Flow]bool{}
	lost := 0
	errc, err := n.Watch(ctx, func(f Flow, gone bool) {
		mu.Lock()
		defer mu.Unlock()
		if gone {
			destroyed[f] = true
		} else {
			created[f] = true
		}
	}, func() { mu.Lock(); lost++; mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	createFlows(t, ns, 17, 5, netip.MustParseAddr("203.0.113.10"))
	createFlows(t, ns, 17, 5, netip.MustParseAddr("2001:db8:71::10"))
	createFlows(t, ns, 6, 200, netip.MustParseAddr("203.0.113.11"))
	var flows []Flow
	if _, err := n.Scan(ctx, func(f Flow) { flows = append(flows, f) }); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Delete(ctx, flows[:3]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		c, d := len(created), len(destroyed)
		mu.Unlock()
		if c == 10 && d == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: %d created (want 10 UDP), %d destroyed (want 3)", c, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	for _, f := range flows {
		if !created[f] {
			t.Errorf("no NEW event for %+v (or a different tuple)", f)
		}
	}
	for _, f := range flows[:3] {
		if !destroyed[f] {
			t.Errorf("no destroy event for %+v", f)
		}
	}
	if lost != 0 {
		t.Errorf("lost %d times", lost)
	}
	if got := n.eventDatagrams.Load(); got > 13 {
		t.Errorf("%d datagrams reached the agent for 13 UDP events: the kernel filter let TCP's through", got)
	}
	mu.Unlock()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
}

// Events that trickle in (one every 100 ms) each reach fn promptly: the
// reader must not hold the first one while it waits to fill its batch. It
// used to (recvmmsg without MSG_WAITFORONE waits for the whole batch, each
// datagram up to the socket's receive timeout): a trickle kept the index
// seconds behind the kernel.
func TestWatchDeliversEachEventPromptly(t *testing.T) {
	ns := newNetNS(t, "ctwatch2")
	n := &Netlink{NetNS: ns, RecvBuffer: 1 << 20}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan time.Time, 16)
	if _, err := n.Watch(ctx, func(Flow, bool) { seen <- time.Now() }, func() {}); err != nil {
		t.Fatal(err)
	}
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var worst time.Duration
	for i := 0; i < 5; i++ {
		f := conntrack.NewFlow(17, 0, netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("203.0.113.9"), uint16(20000+i), 6343, 60, 0)
		created := time.Now()
		if err := c.Create(f); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-seen:
			worst = max(worst, at.Sub(created))
		case <-time.After(2 * time.Second):
			t.Fatalf("event %d not seen within 2 s", i)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// eventBatchDelay (5 ms) plus scheduling; a held batch took 200 ms or more.
	if worst > 100*time.Millisecond {
		t.Fatalf("an event reached the index %v after its entry was created", worst)
	}
	t.Logf("slowest event: %v", worst)
}
