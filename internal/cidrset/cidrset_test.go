package cidrset

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseAggregates(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, []string{}},
		{"duplicates", []string{"192.0.2.0/24", "192.0.2.0/24"}, []string{"192.0.2.0/24"}},
		{"overlap removed", []string{"192.0.2.0/24", "192.0.2.128/25"}, []string{"192.0.2.0/24"}},
		{"neighbours merged", []string{"198.51.100.0/25", "198.51.100.128/25"}, []string{"198.51.100.0/24"}},
		{"non-neighbours kept", []string{"198.51.100.128/25", "198.51.101.0/25"}, []string{"198.51.100.128/25", "198.51.101.0/25"}},
		{"families apart, v4 first", []string{"2001:db8::/33", "203.0.113.0/24", "2001:db8:8000::/33"}, []string{"203.0.113.0/24", "2001:db8::/32"}},
		{"sorted", []string{"203.0.113.0/24", "192.0.2.0/24"}, []string{"192.0.2.0/24", "203.0.113.0/24"}},
		{"whitespace trimmed", []string{" 192.0.2.0/24 "}, []string{"192.0.2.0/24"}},
		{"host route", []string{"192.0.2.7/32"}, []string{"192.0.2.7/32"}},
		{"everything", []string{"0.0.0.0/0", "192.0.2.0/24"}, []string{"0.0.0.0/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, errs := Parse(tc.in)
			if len(errs) > 0 {
				t.Fatalf("unexpected errors: %v", errs)
			}
			if got := s.Strings(); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseRejectsAndKeepsTheValidPart(t *testing.T) {
	cases := []struct {
		in, wantErr string
	}{
		{"192.0.2.1/24", "host bits are set; the network is 192.0.2.0/24"},
		{"192.0.2.1", "for one address write 192.0.2.1/32"},
		{"2001:db8::1", "for one address write 2001:db8::1/128"},
		{"192.0.2.0/33", "not a CIDR"},
		{"not-a-cidr", "not a CIDR"},
		{"", "not a CIDR"},
		{"::ffff:192.0.2.0/120", "IPv4-mapped"},
		{"fe80::%eth0/64", "not a CIDR"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			s, errs := Parse([]string{"198.51.100.0/24", tc.in})
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.wantErr) {
				t.Fatalf("want one error containing %q, got %v", tc.wantErr, errs)
			}
			if got := s.Strings(); !slices.Equal(got, []string{"198.51.100.0/24"}) {
				t.Fatalf("the valid part must survive, got %v", got)
			}
		})
	}
}

func TestContainsAndUnion(t *testing.T) {
	u := Union(MustParse("192.0.2.0/25"), MustParse("192.0.2.128/25", "2001:db8::/32"))
	if got := u.Strings(); !slices.Equal(got, []string{"192.0.2.0/24", "2001:db8::/32"}) {
		t.Fatalf("union: %v", got)
	}
	for addr, want := range map[string]bool{"192.0.2.200": true, "192.0.3.1": false, "2001:db8::5": true, "2001:db9::": false} {
		if got := u.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	if len(u.V4()) != 1 || len(u.V6()) != 1 || u.Len() != 2 {
		t.Errorf("families: v4 %v v6 %v", u.V4(), u.V6())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "192.0.2.1/24", "::/0", "2001:db8::/32", "x"} {
		f.Add(s, "198.51.100.0/24")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		s, _ := Parse([]string{a, b})
		// Every valid input is covered by the aggregate, and the aggregate
		// covers nothing the valid inputs do not (checked at each prefix's
		// first and last address).
		var valid []netip.Prefix
		for _, in := range []string{a, b} {
			if p, err := ParsePrefix(in); err == nil {
				valid = append(valid, p)
				if !s.Contains(p.Addr()) {
					t.Fatalf("%s lost from %v", in, s.Strings())
				}
			}
		}
		for _, p := range s.Prefixes() {
			covered := false
			for _, v := range valid {
				if v.Overlaps(p) && v.Bits() <= p.Bits() {
					covered = true
				}
			}
			if !covered && len(valid) > 0 {
				// p may be the merge of two valid neighbours.
				if !(len(valid) == 2 && p.Contains(valid[0].Addr()) && p.Contains(valid[1].Addr())) {
					t.Fatalf("aggregate %s widens %v", p, valid)
				}
			}
		}
	})
}

func TestSubtract(t *testing.T) {
	for _, tc := range []struct {
		a, b []string
		want string
	}{
		{[]string{"192.0.2.0/24"}, []string{"192.0.2.0/25"}, "192.0.2.128/25"},
		{[]string{"192.0.2.1/32", "198.51.100.0/24"}, []string{"198.51.100.0/24"}, "192.0.2.1/32"},
		{[]string{"2001:db8::/64", "192.0.2.7/32"}, []string{"2001:db8::/65", "192.0.2.0/24"}, "2001:db8:0:0:8000::/65"},
		{[]string{"192.0.2.0/24"}, []string{"0.0.0.0/0"}, ""},
		{nil, []string{"192.0.2.0/24"}, ""},
	} {
		got := strings.Join(Subtract(MustParse(tc.a...), MustParse(tc.b...)).Strings(), ",")
		if got != tc.want {
			t.Errorf("%v - %v = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
