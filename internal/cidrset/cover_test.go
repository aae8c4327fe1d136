package cidrset

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// covers reports whether every prefix of s lies inside one of cover.
func covers(s Set, cover Set) bool {
	for _, p := range s.Prefixes() {
		if !slices.ContainsFunc(cover.Prefixes(), func(c netip.Prefix) bool { return c.Bits() <= p.Bits() && c.Contains(p.Addr()) }) {
			return false
		}
	}
	return true
}

func TestCoverTable(t *testing.T) {
	for _, tc := range []struct {
		sources []string
		k       int
		want    []string
		extra   string
	}{
		{[]string{"192.0.2.0/24"}, 1, []string{"192.0.2.0/24"}, "0"},
		{[]string{"192.0.2.1/32", "192.0.2.2/32"}, 1, []string{"192.0.2.0/30"}, "2"},
		{[]string{"192.0.2.1/32", "192.0.2.2/32"}, 2, []string{"192.0.2.1/32", "192.0.2.2/32"}, "0"},
		// Two PoPs far apart and a third near one of them: the budget goes
		// where it saves most, not to the nearest pair.
		{[]string{"10.0.0.1/32", "10.0.0.2/32", "172.16.0.1/32"}, 2, []string{"10.0.0.0/30", "172.16.0.1/32"}, "2"},
		{[]string{"10.0.0.0/32", "10.0.0.3/32", "10.0.0.128/32"}, 2, []string{"10.0.0.0/30", "10.0.0.128/32"}, "2"},
		// IPv6 counts in its own budget and its own size.
		{[]string{"2001:db8::/64", "2001:db8:0:1::/64", "192.0.2.0/24"}, 1, []string{"192.0.2.0/24", "2001:db8::/63"}, "0"},
		{[]string{"2001:db8::1/128", "2001:db8::4/128"}, 1, []string{"2001:db8::/125"}, "6"},
		// The whole IPv6 space as a node: 2^128 minus the two sources.
		{[]string{"::/128", "ffff::/128"}, 1, []string{"::/0"}, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(2)).String()},
		{[]string{"0.0.0.0/0"}, 3, []string{"0.0.0.0/0"}, "0"},
		{[]string{"192.0.2.0/24"}, 0, nil, "0"},
	} {
		t.Run(fmt.Sprint(tc.sources, tc.k), func(t *testing.T) {
			s := MustParse(tc.sources...)
			cover, extra := s.Cover(tc.k)
			if got := cover.Strings(); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("cover %v, want %v", got, tc.want)
			}
			if extra.String() != tc.extra {
				t.Errorf("extra %s, want %s", extra, tc.extra)
			}
			if tc.k > 0 && s.Extra(cover.Prefixes()).Cmp(extra) != 0 {
				t.Errorf("reported extra %s, counted %s", extra, s.Extra(cover.Prefixes()))
			}
		})
	}
}

// TestCoverOptimal compares the cover with an exhaustive search over every
// supernet of the sources (an optimal cover never needs a prefix inside a
// source), on random small sets of both families.
func TestCoverOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 300; trial++ {
		v6 := trial%3 == 0
		var raw []string
		for i, n := 0, 1+rng.IntN(5); i < n; i++ {
			host, bits := rng.IntN(256), 28+rng.IntN(5)
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(host)}), bits).Masked()
			if v6 {
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(host)}), bits+96).Masked()
			}
			raw = append(raw, p.String())
		}
		s := MustParse(raw...)
		var candidates []netip.Prefix
		for _, p := range s.Prefixes() {
			for b := p.Bits(); b >= p.Addr().BitLen()-12; b-- {
				if c := netip.PrefixFrom(p.Addr(), b).Masked(); !slices.Contains(candidates, c) {
					candidates = append(candidates, c)
				}
			}
		}
		for k := 1; k <= 3; k++ {
			cover, extra := s.Cover(k)
			if !covers(s, cover) || len(cover.Prefixes()) > k {
				t.Fatalf("%v k=%d: cover %v does not hold the sources in k prefixes", raw, k, cover.Strings())
			}
			if counted := s.Extra(cover.Prefixes()); counted.Cmp(extra) != 0 {
				t.Fatalf("%v k=%d: reported %s extra, counted %s", raw, k, extra, counted)
			}
			best := bruteForce(s, candidates, k)
			if best.Cmp(extra) != 0 {
				t.Fatalf("%v k=%d: cover %v admits %s extra, the optimum is %s", raw, k, cover.Strings(), extra, best)
			}
		}
	}
}

func bruteForce(s Set, candidates []netip.Prefix, k int) *big.Int {
	var best *big.Int
	var pick func(start int, chosen []netip.Prefix)
	pick = func(start int, chosen []netip.Prefix) {
		if len(chosen) > 0 {
			var b Set
			b.v4, b.v6 = nil, nil
			for _, c := range chosen {
				if c.Addr().Is4() {
					b.v4 = append(b.v4, c)
				} else {
					b.v6 = append(b.v6, c)
				}
			}
			if covers(s, b) {
				if e := s.Extra(chosen); best == nil || e.Cmp(best) < 0 {
					best = e
				}
			}
		}
		if len(chosen) == k {
			return
		}
		for i := start; i < len(candidates); i++ {
			pick(i+1, append(slices.Clone(chosen), candidates[i]))
		}
	}
	pick(0, nil)
	return best
}
