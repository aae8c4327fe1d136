package bench

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
)

// BenchmarkIndexMemory: the conntrack agent's index (index.go) holding
// 1,000,000 UDP entries (half IPv4, half IPv6, over 1,000 destination
// ports): heap per entry and time per event (Put), against the same entries
// kept as a plain []Flow measured in the same run (the least a copy of the
// table can take). No root needed.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	flows := make([]conntrackagent.Flow, n)
	for i := range flows {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%60000))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 200)}), uint16(5000+i%1000))
		if i%2 == 1 {
			src = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), src.Port())
			dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(i % 200)}), dst.Port())
		}
		flows[i] = conntrackagent.Flow{Proto: 17, OrigSrc: src, OrigDst: dst, ReplySrc: dst}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for it := 0; it < b.N; it++ {
		before := heap()
		plain := append([]conntrackagent.Flow(nil), flows...)
		plainBytes := heap() - before
		runtime.KeepAlive(plain)
		plain = nil

		before = heap()
		idx := conntrackagent.NewIndex(2 * n)
		t0 := time.Now()
		for _, f := range flows {
			idx.Put(f)
		}
		put := time.Since(t0)
		indexBytes := heap() - before
		if got, _ := idx.Len(); got != n {
			b.Fatalf("index holds %d", got)
		}
		runtime.KeepAlive(idx)
		fmt.Fprintf(os.Stderr, "index of %d entries: %.0f bytes an entry (a []Flow: %.0f, x%.2f), %.0f ns a Put\n",
			n, float64(indexBytes)/n, float64(plainBytes)/n, float64(indexBytes)/float64(plainBytes), float64(put.Nanoseconds())/n)
		b.ReportMetric(float64(indexBytes)/n, "index-B/entry")
		b.ReportMetric(float64(plainBytes)/n, "slice-B/entry")
		b.ReportMetric(float64(put.Nanoseconds())/n, "ns/put")
	}
}
