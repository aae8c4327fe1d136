// Package cidrset parses, validates and aggregates sets of CIDRs, as both the
// provider (flow sources, allowed sources) and the nlb-policy controller
// (policy source nets) need: overlaps removed, neighbours merged, IPv4 and
// IPv6 kept apart, output sorted so equal sets render equal.
package cidrset

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"go4.org/netipx"
)

// ParseError is one input that is not a canonical CIDR.
type ParseError struct {
	Input  string
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%q: %s", e.Input, e.Reason) }

// ParsePrefix parses one CIDR strictly: an address with a prefix length and
// no host bits set. A bare address or "10.0.0.1/8" is an error that suggests
// the canonical form, so a typo never silently widens or narrows a set.
func ParsePrefix(s string) (netip.Prefix, error) {
	in := strings.TrimSpace(s)
	p, err := netip.ParsePrefix(in)
	if err != nil {
		if a, aerr := netip.ParseAddr(in); aerr == nil {
			return netip.Prefix{}, &ParseError{s, fmt.Sprintf("not a CIDR (no prefix length); for one address write %s/%d", a, a.BitLen())}
		}
		return netip.Prefix{}, &ParseError{s, "not a CIDR (expected address/length, e.g. 192.0.2.0/24)"}
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, &ParseError{s, "zones are not allowed in a CIDR"}
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, &ParseError{s, "IPv4-mapped IPv6 prefixes are not allowed; write the IPv4 CIDR"}
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, &ParseError{s, fmt.Sprintf("host bits are set; the network is %s", m)}
	}
	return p, nil
}

// Set is an aggregated set of prefixes.
type Set struct {
	v4, v6 []netip.Prefix
}

// Parse parses every input. Valid inputs make the set; invalid ones are
// returned as errors and left out, so callers that enforce the valid part
// (the controller) and callers that reject the whole (the provider) both can.
func Parse(inputs []string) (Set, []error) {
	var b netipx.IPSetBuilder
	var errs []error
	for _, in := range inputs {
		p, err := ParsePrefix(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.AddPrefix(p)
	}
	s, err := FromBuilder(&b)
	if err != nil {
		errs = append(errs, err)
	}
	return s, errs
}

// FromBuilder aggregates what a netipx.IPSetBuilder holds.
func FromBuilder(b *netipx.IPSetBuilder) (Set, error) {
	ipset, err := b.IPSet()
	if err != nil {
		return Set{}, err
	}
	var s Set
	for _, p := range ipset.Prefixes() {
		if p.Addr().Is4() {
			s.v4 = append(s.v4, p)
		} else {
			s.v6 = append(s.v6, p)
		}
	}
	return s, nil
}

// MustParse is Parse for literals in tests and tables; it panics on error.
func MustParse(inputs ...string) Set {
	s, errs := Parse(inputs)
	if len(errs) > 0 {
		panic(errors.Join(errs...))
	}
	return s
}

// V4 and V6 are the aggregated prefixes of each family, sorted.
func (s Set) V4() []netip.Prefix { return s.v4 }
func (s Set) V6() []netip.Prefix { return s.v6 }

// Prefixes are all aggregated prefixes, IPv4 first, sorted.
func (s Set) Prefixes() []netip.Prefix {
	return append(append([]netip.Prefix(nil), s.v4...), s.v6...)
}

// Strings renders Prefixes.
func (s Set) Strings() []string {
	out := make([]string, 0, s.Len())
	for _, p := range s.Prefixes() {
		out = append(out, p.String())
	}
	return out
}

// Len is the number of aggregated prefixes.
func (s Set) Len() int { return len(s.v4) + len(s.v6) }

// Contains reports whether the address is in the set.
func (s Set) Contains(a netip.Addr) bool {
	for _, p := range s.Prefixes() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Union aggregates both sets.
func Union(sets ...Set) Set {
	var b netipx.IPSetBuilder
	for _, s := range sets {
		for _, p := range s.Prefixes() {
			b.AddPrefix(p)
		}
	}
	u, _ := FromBuilder(&b) // prefixes already valid: cannot fail
	return u
}

// Subtract is what a covers and b does not (the sources removed when a
// Service's set changes from a to b).
func Subtract(a, b Set) Set {
	var bld netipx.IPSetBuilder
	for _, p := range a.Prefixes() {
		bld.AddPrefix(p)
	}
	for _, p := range b.Prefixes() {
		bld.RemovePrefix(p)
	}
	d, _ := FromBuilder(&bld) // prefixes already valid: cannot fail
	return d
}
