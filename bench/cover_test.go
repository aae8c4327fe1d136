package bench

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// BenchmarkCoarseCover: the coarse cover telemetry_nlb_ingress writes into
// the NLB's security group for 1,000 random /32 exporters spread over 12 PoP
// ranges (/20s across the IPv4 space), K = 10. Measured against what the
// group admitted before (0.0.0.0/0) and against a greedy merge (repeatedly
// merging the adjacent pair whose supernet adds the fewest addresses), with
// the time to compute the optimal cover (goal: under 10 ms).
//
//	go test ./bench/ -run '^$' -bench BenchmarkCoarseCover -count=3
func BenchmarkCoarseCover(b *testing.B) {
	const k = 10
	rng := rand.New(rand.NewPCG(2026, 11))
	var pops []netip.Prefix
	for len(pops) < 12 {
		a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(16) * 16), 0})
		if p := netip.PrefixFrom(a, 20).Masked(); !slices.Contains(pops, p) {
			pops = append(pops, p)
		}
	}
	var raw []string
	for len(raw) < 1000 {
		pop := pops[rng.IntN(len(pops))].Addr().As4()
		pop[2] += byte(rng.IntN(16))
		pop[3] = byte(rng.IntN(256))
		s := netip.PrefixFrom(netip.AddrFrom4(pop), 32).String()
		if !slices.Contains(raw, s) {
			raw = append(raw, s)
		}
	}
	sources := cidrset.MustParse(raw...)

	var cover cidrset.Set
	var extra *big.Int
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cover, extra = sources.Cover(k)
	}
	perOp := time.Since(start) / time.Duration(b.N)
	b.StopTimer()

	everyone := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 32), big.NewInt(int64(sources.Len())))
	greedy := greedyMerge(sources.V4(), k)
	greedyExtra := sources.Extra(greedy)
	if counted := sources.Extra(cover.Prefixes()); counted.Cmp(extra) != 0 || len(cover.Prefixes()) > k {
		b.Fatalf("cover %v: reported %s extra, counted %s", cover.Strings(), extra, counted)
	}
	if extra.Cmp(greedyExtra) > 0 {
		b.Fatalf("optimal cover admits %s extra, greedy merge %s", extra, greedyExtra)
	}
	ratio := func(a, b *big.Int) string {
		if a.Sign() == 0 {
			return "inf"
		}
		f, _ := new(big.Float).Quo(new(big.Float).SetInt(b), new(big.Float).SetInt(a)).Float64()
		return fmt.Sprintf("%.1f", f)
	}
	for _, wider := range []int{12, 16, 24} {
		c, e := sources.Cover(wider)
		g := sources.Extra(greedyMerge(sources.V4(), wider))
		fmt.Printf("K=%d: optimal cover %d prefixes, %s extra addresses; greedy merge %s (x%s)\n", wider, len(c.Prefixes()), e, g, ratio(e, g))
	}
	b.ReportMetric(float64(perOp.Microseconds())/1000, "ms/cover")
	b.ReportMetric(float64(extra.Int64()), "extra-addrs")
	fmt.Printf("sources %d (in %d PoPs), K=%d: optimal cover %d prefixes, %s extra addresses; greedy merge %s (x%s); 0.0.0.0/0 %s (x%s); %.2f ms per cover\n",
		sources.Len(), len(pops), k, len(cover.Prefixes()), extra, greedyExtra, ratio(extra, greedyExtra), everyone, ratio(extra, everyone),
		float64(perOp.Microseconds())/1000)
}

// greedyMerge is the baseline: while more than k prefixes remain, replace the
// adjacent pair (and whatever else its supernet holds) by their smallest
// common supernet, choosing the merge that adds the fewest addresses.
func greedyMerge(ps []netip.Prefix, k int) []netip.Prefix {
	ps = slices.Clone(ps)
	size := func(p netip.Prefix) *big.Int { return new(big.Int).Lsh(big.NewInt(1), uint(32-p.Bits())) }
	for len(ps) > k {
		best, bestI, bestJ, bestCost := netip.Prefix{}, 0, 0, (*big.Int)(nil)
		for i := 0; i+1 < len(ps); i++ {
			super := supernet(ps[i], ps[i+1])
			lo, hi := i, i+1
			for lo > 0 && super.Contains(ps[lo-1].Addr()) {
				lo--
			}
			for hi+1 < len(ps) && super.Contains(ps[hi+1].Addr()) {
				hi++
			}
			cost := size(super)
			for _, p := range ps[lo : hi+1] {
				cost.Sub(cost, size(p))
			}
			if bestCost == nil || cost.Cmp(bestCost) < 0 {
				best, bestI, bestJ, bestCost = super, lo, hi, cost
			}
		}
		ps = slices.Replace(ps, bestI, bestJ+1, best)
	}
	return ps
}

func supernet(a, b netip.Prefix) netip.Prefix {
	x, y := a.Addr().As4(), b.Addr().As4()
	n := min(a.Bits(), b.Bits())
	for i := 0; i < n; i++ {
		if (x[i/8]>>(7-i%8))&1 != (y[i/8]>>(7-i%8))&1 {
			n = i
			break
		}
	}
	return netip.PrefixFrom(a.Addr(), n).Masked()
}
