package conntrackagent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// unrelated are n entries to other destinations (NATed: not stale).
func unrelated(n int) []Flow {
	out := make([]Flow, n)
	for i := range out {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000)
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 53)
		out[i] = natedTo(src, dst, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, 0, 9}), 53))
	}
	return out
}

// With the index (kept from conntrack events, built by the start pass), a
// pass triggered by one Service reads no kernel table: the stale entries
// created after the start pass come from the events. A lost event makes
// triggered passes read the kernel again until a full pass rebuilds the
// index; so does a table larger than IndexMax.
func TestTriggeredPassReadsTheIndex(t *testing.T) {
	u := newUnit(t, udpService("a", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0),
		udpService("b", []string{"10.96.0.20", "fd00:10:96::20"}, "203.0.113.20", 6344, 0),
		udpService("c", []string{"10.96.0.30"}, "203.0.113.30", 6345, 0))
	u.agent.IndexMax = 10_000
	u.ct.Add(unrelated(1000)...)
	u.start()
	scans := func() int {
		u.ct.mu.Lock()
		defer u.ct.mu.Unlock()
		return u.ct.Scans
	}
	if n := scans(); n != 1 {
		t.Fatalf("the start pass read the kernel %d times, want 1", n)
	}
	// Flows to a and b, pinned while they have no endpoint: they reach the
	// agent as events only.
	toA := unNATed(exporter, ap("203.0.113.10:6343"))
	toB := unNATed(ap("[2001:db8:5::5]:40000"), ap("[fd00:10:96::20]:6344"))
	toC := unNATed(ap("192.0.2.55:40000"), ap("203.0.113.30:6345"))
	u.ct.Add(toA, toB, toC)
	endpoints := func(name string, port int32, addrs ...string) {
		t.Helper()
		if _, err := u.kube.DiscoveryV1().EndpointSlices("telemetry").Create(context.Background(), slice(name, port, addrs...), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(f Flow) func() bool {
		return func() bool {
			for _, g := range u.ct.Flows() {
				if g == f {
					return false
				}
			}
			return true
		}
	}
	endpoints("a", 16343, "198.51.100.7")
	waitFor(t, "a's stale entry deleted", gone(toA))
	endpoints("b", 16344, "198.51.100.7", "2001:db8:7::7")
	waitFor(t, "b's stale IPv6 entry deleted", gone(toB))
	if n := scans(); n != 1 {
		t.Fatalf("triggered passes read the kernel %d times, want none (the index)", n-1)
	}
	if got := u.counter("telemetry_conntrack_pass_reads_total", "index"); got < 2 {
		t.Fatalf("passes read from the index: %v, want 2", got)
	}
	if got := u.gauge("telemetry_conntrack_index_complete"); got != 1 {
		t.Fatalf("index_complete = %v", got)
	}
	// Events lost: c's pass reads the kernel (and still finds its entry).
	u.ct.LoseEvents()
	endpoints("c", 16345, "198.51.100.7")
	waitFor(t, "c's stale entry deleted", gone(toC))
	if n := scans(); n != 2 {
		t.Fatalf("after lost events the triggered pass read the kernel %d times, want 1", n-1)
	}
	if got := u.counter("telemetry_conntrack_events_lost_total"); got != 1 {
		t.Fatalf("events_lost_total = %v", got)
	}
	// A full pass rebuilds it; an entry the index holds but the kernel
	// dropped without an event is swept by it.
	phantom := unNATed(ap("192.0.2.56:40000"), ap("203.0.113.10:6343"))
	u.ct.Add(phantom)
	u.ct.Expire(phantom)
	if _, err := u.agent.Pass(context.Background(), "period"); err != nil {
		t.Fatal(err)
	}
	if n, complete := u.agent.index.Len(); !complete || n != 1000 {
		t.Fatalf("after the full pass the index holds %d entries (complete %v), want the 1000 unrelated", n, complete)
	}
}

// More entries than IndexMax: no index (its memory is bounded), every
// triggered pass reads the kernel, and says so.
func TestIndexOverItsLimit(t *testing.T) {
	u := newUnit(t, udpService("a", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0))
	u.agent.IndexMax = 100
	u.ct.Add(unrelated(1000)...)
	stale := unNATed(exporter, ap("203.0.113.10:6343"))
	u.ct.Add(stale)
	u.start()
	if _, err := u.kube.DiscoveryV1().EndpointSlices("telemetry").Create(context.Background(), slice("a", 16343, "198.51.100.7"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's stale entry deleted", func() bool { return len(u.ct.Flows()) == 1000 })
	if got := u.counter("telemetry_conntrack_pass_reads_total", "kernel"); got != 2 {
		t.Fatalf("passes that read the kernel: %v, want 2 (start, triggered)", got)
	}
	if n, complete := u.agent.index.Len(); complete || n != 0 {
		t.Fatalf("index over its limit holds %d (complete %v)", n, complete)
	}
}

// The agent's share of a recovery is measured: from the change reaching it
// to the kernel's first deletion it caused (at least the debounce), once per
// change; a change that deleted nothing is not counted.
func TestChangeToDeleteLatency(t *testing.T) {
	u := newUnit(t, udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0),
		udpService("empty", []string{"10.96.0.11"}, "203.0.113.11", 6344, 0))
	u.agent.Debounce = 50 * time.Millisecond
	u.ct.Add(unNATed(exporter, lbFlows))
	u.start()
	if _, err := u.kube.DiscoveryV1().EndpointSlices("telemetry").Create(context.Background(), slice("empty", 16344, "198.51.100.7"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	u.endpointComesBack()
	waitFor(t, "the stale entry deleted", func() bool { return len(u.ct.Flows()) == 0 })
	u.waitMeasured("telemetry_conntrack_change_to_delete_seconds")
	h := u.histogram("telemetry_conntrack_change_to_delete_seconds")
	if h.SampleCount != 1 || h.SampleSum < 0.05 || h.SampleSum > 2 {
		t.Fatalf("change_to_delete: %d samples, sum %v s; want 1, between the debounce and 2 s", h.SampleCount, h.SampleSum)
	}
}

// A change answered by a pass over every entry (another trigger asked for
// one in the same debounce) is measured too: its start time used to stay
// behind, unmeasured, for a later targeted pass to report as one long
// latency.
func TestChangeToDeleteLatencyOfAFullPass(t *testing.T) {
	u := newUnit(t, udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0))
	u.agent.Debounce = 200 * time.Millisecond
	u.ct.Add(unNATed(exporter, lbFlows))
	u.start()
	u.agent.kick("every entry (test)")
	u.endpointComesBack()
	waitFor(t, "the stale entry deleted", func() bool { return len(u.ct.Flows()) == 0 })
	u.waitMeasured("telemetry_conntrack_change_to_delete_seconds")
	if got := u.counter("telemetry_conntrack_passes_total", "every entry (test)"); got != 1 {
		t.Fatalf("the deleting pass was not the full one the test asked for (%v)", got)
	}
	if n := u.histogram("telemetry_conntrack_change_to_delete_seconds").SampleCount; n != 1 {
		t.Fatalf("change_to_delete: %d samples, want 1", n)
	}
}
