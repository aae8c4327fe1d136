package cidrset

import (
	"math/big"
	"math/bits"
	"net/netip"

	"go4.org/netipx"
)

// Cover is the coarse allow-list the NLB's security group holds: at most k
// prefixes per address family that together contain every address of the
// set, chosen to admit the fewest addresses beyond it.
//
// It is optimal, not a greedy merge: every prefix of an optimal cover can be
// shrunk to the longest prefix holding the same sources, which is a node of
// the set's path-compressed binary trie; a dynamic programme over that trie
// (per node and budget j: either the node's own prefix, or the best split of
// j between its two children) finds the minimum. With n source prefixes it
// costs O(n k^2) time and O(n k) memory.
//
// Extra is the number of addresses the cover admits beyond the set (IPv4 and
// IPv6 added up). With k < 1 the cover is empty and Extra zero.
func (s Set) Cover(k int) (cover Set, extra *big.Int) {
	extra = new(big.Int)
	if k < 1 {
		return Set{}, extra
	}
	for _, fam := range []struct {
		in  []netip.Prefix
		out *[]netip.Prefix
	}{{s.v4, &cover.v4}, {s.v6, &cover.v6}} {
		if len(fam.in) == 0 {
			continue
		}
		root := buildTrie(fam.in)
		root.solve(k)
		root.pick(k, fam.out)
		extra.Add(extra, root.cost[k].big())
	}
	return cover, extra
}

// Extra is how many addresses the prefixes admit beyond the set. The
// prefixes are taken as given (overlaps counted once).
func (s Set) Extra(prefixes []netip.Prefix) *big.Int {
	var b netipx.IPSetBuilder
	for _, p := range prefixes {
		b.AddPrefix(p)
	}
	for _, p := range s.Prefixes() {
		b.RemovePrefix(p)
	}
	rest, _ := b.IPSet()
	n := new(big.Int)
	for _, p := range rest.Prefixes() {
		n.Add(n, new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits())))
	}
	return n
}

// trieNode is a node of the path-compressed binary trie over disjoint,
// sorted prefixes: a leaf is a source prefix; an inner node is the longest
// prefix common to the sources below it, which lie in both of its halves.
type trieNode struct {
	prefix      netip.Prefix
	covered     u128 // source addresses below
	left, right *trieNode
	// cost[j] is the fewest extra addresses with at most j prefixes; split[j]
	// is how many of them go left (0: the node's own prefix).
	cost  []u128
	split []int
}

func buildTrie(ps []netip.Prefix) *trieNode {
	if len(ps) == 1 {
		return &trieNode{prefix: ps[0], covered: prefixSize(ps[0])}
	}
	first, last := ps[0].Addr(), lastAddr(ps[len(ps)-1])
	n := commonBits(first, last)
	// Sources are disjoint and sorted: those with bit n clear come first.
	i := 0
	for i < len(ps) && !bitSet(ps[i].Addr(), n) {
		i++
	}
	node := &trieNode{prefix: netip.PrefixFrom(first, n).Masked(), left: buildTrie(ps[:i]), right: buildTrie(ps[i:])}
	node.covered = node.left.covered.add(node.right.covered)
	return node
}

func (t *trieNode) solve(k int) {
	t.cost, t.split = make([]u128, k+1), make([]int, k+1)
	t.cost[0] = inf
	if t.left == nil {
		return // a source: covered exactly by itself, cost 0 for any j >= 1
	}
	t.left.solve(k)
	t.right.solve(k)
	// The node's own prefix: its size minus the sources below, computed as
	// (size-1) - covered + 1 so that ::/0 does not overflow.
	own := maxInPrefix(t.prefix).sub(t.covered).add(u128{lo: 1})
	for j := 1; j <= k; j++ {
		t.cost[j] = own
		for l := 1; l < j; l++ {
			if c := t.left.cost[l].add(t.right.cost[j-l]); c.less(t.cost[j]) {
				t.cost[j], t.split[j] = c, l
			}
		}
	}
}

func (t *trieNode) pick(j int, out *[]netip.Prefix) {
	if t.left == nil || t.split[j] == 0 {
		*out = append(*out, t.prefix)
		return
	}
	t.left.pick(t.split[j], out)
	t.right.pick(j-t.split[j], out)
}

// u128 is an unsigned 128-bit count of addresses; inf saturates additions.
type u128 struct{ hi, lo uint64 }

var inf = u128{^uint64(0), ^uint64(0)}

func (a u128) add(b u128) u128 {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, over := bits.Add64(a.hi, b.hi, carry)
	if over != 0 || a == inf || b == inf {
		return inf
	}
	return u128{hi, lo}
}

func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, borrow)
	return u128{hi, lo}
}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) big() *big.Int {
	n := new(big.Int).SetUint64(a.hi)
	return n.Lsh(n, 64).Or(n, new(big.Int).SetUint64(a.lo))
}

// maxInPrefix is the prefix's size minus one (all host bits set).
func maxInPrefix(p netip.Prefix) u128 {
	host := p.Addr().BitLen() - p.Bits()
	switch {
	case host >= 128:
		return inf
	case host >= 64:
		return u128{hi: 1<<(host-64) - 1, lo: ^uint64(0)}
	default:
		return u128{lo: 1<<host - 1}
	}
}

// prefixSize is the number of addresses in p; ::/0 saturates at 2^128-1.
func prefixSize(p netip.Prefix) u128 {
	if m := maxInPrefix(p); m != inf {
		return m.add(u128{lo: 1})
	}
	return inf.sub(u128{lo: 1}) // never inf: inf means infeasible
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func commonBits(a, b netip.Addr) int {
	x, y := a.AsSlice(), b.AsSlice()
	for i := range x {
		if d := x[i] ^ y[i]; d != 0 {
			return i*8 + bits.LeadingZeros8(d)
		}
	}
	return len(x) * 8
}

func bitSet(a netip.Addr, n int) bool {
	b := a.AsSlice()
	return b[n/8]&(1<<(7-n%8)) != 0
}
