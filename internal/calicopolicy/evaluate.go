package calicopolicy

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
)

// Endpoint is what a packet is delivered to: a host endpoint (a node, for
// NodePort traffic) or a pod, with its labels (for a pod, including
// projectcalico.org/namespace) and its addresses (a host endpoint's
// expectedIPs, a pod's IPs), which destination selectors match.
type Endpoint struct {
	Labels map[string]string
	Host   bool
	Addrs  []netip.Addr
}

// Packet is an inbound packet. Dst is its destination address before any
// DNAT (the node's, for NodePort traffic).
type Packet struct {
	Src      netip.Addr
	Protocol string // "TCP", "UDP", ...
	DstPort  uint16
	Dst      netip.Addr
}

// Verdict is the outcome of a stage.
type Verdict int

const (
	// NoDecision: no pre-DNAT policy decided (none matched, or every tier
	// passed); the packet goes on to normal processing (pre-DNAT has no
	// default deny).
	NoDecision Verdict = iota
	Allowed
	Denied
)

func (v Verdict) String() string { return [...]string{"no decision", "allowed", "denied"}[v] }

// Result is a verdict and what decided it.
type Result struct {
	Verdict Verdict
	passed  bool
	// By is the rule that decided ("<policy> rule <n>"), "end of tier
	// <name>", or, when every tier passed the packet on, the last rule that
	// passed it ("" when none did).
	By string
}

// PassedOn reports whether a rule passed the packet on and no later tier
// decided: what the product's Pass rules do for a listed source where the
// cluster's own policies have nothing to say.
func (r Result) PassedOn() bool { return r.passed }

// Admitted reports whether the policies evaluated let the packet on: an
// Allow, or every tier passing it on after a rule passed it.
func (r Result) Admitted() bool { return r.Verdict == Allowed || r.passed }

// Tier is what the evaluator needs of a Calico tier.
type Tier struct {
	Order float64
	// DefaultAction is what the normal stage does to a packet that policies
	// of the tier applied to but no rule matched: Deny (Calico's default) or
	// Pass (to the next tier).
	DefaultAction calicov3.Action
}

// DefaultTiers are the tiers the local plane creates, as calico-node and
// kube-controllers would, plus the product's: kube-admin (Pass), the
// product's telemetry-nlb (Pass), default (Deny), kube-baseline (Pass).
func DefaultTiers() map[string]Tier {
	return map[string]Tier{
		"kube-admin":    {Order: 1000, DefaultAction: calicov3.Pass},
		"telemetry-nlb": {Order: 2000, DefaultAction: calicov3.Pass},
		"default":       {Order: 1_000_000, DefaultAction: calicov3.Deny},
		"kube-baseline": {Order: 10_000_000, DefaultAction: calicov3.Pass},
	}
}

// Evaluate is EvaluateTiers with DefaultTiers.
func Evaluate(policies []*calicov3.GlobalNetworkPolicy, sets []*calicov3.GlobalNetworkSet, ep Endpoint, pkt Packet, preDNAT bool) (Result, error) {
	return EvaluateTiers(DefaultTiers(), policies, sets, ep, pkt, preDNAT)
}

// EvaluateTiers runs the ingress policies of one stage for a packet: the
// pre-DNAT stage of a host endpoint (preDNAT true) or the normal stage, as
// Felix renders them (felix/rules/endpoints.go). Policies apply when their
// selector matches the endpoint (and, pre-DNAT, only pre-DNAT policies to
// host endpoints). Tiers go in order; within a tier, policies in order (then
// name), and the first rule that matches decides: Allow and Deny end the
// stage, Pass skips to the next tier. A tier whose policies applied but none
// matched ends, in the normal stage, with its default action (Deny, or Pass
// on to the next tier); in the pre-DNAT stage it passes on (pre-DNAT has no
// end-of-tier drop). After the last tier, the normal stage allows (the
// profile's default) and the pre-DNAT stage decides nothing.
func EvaluateTiers(tiers map[string]Tier, policies []*calicov3.GlobalNetworkPolicy, sets []*calicov3.GlobalNetworkSet, ep Endpoint, pkt Packet, preDNAT bool) (Result, error) {
	var applicable []*calicov3.GlobalNetworkPolicy
	for _, p := range policies {
		if p.Spec.PreDNAT != preDNAT || (preDNAT && !ep.Host) || !hasIngress(p) {
			continue
		}
		if _, ok := tiers[tierName(p)]; !ok {
			return Result{}, fmt.Errorf("policy %s: unknown tier %q", p.Name, tierName(p))
		}
		sel, err := ParseSelector(p.Spec.Selector)
		if err != nil {
			return Result{}, fmt.Errorf("policy %s: %w", p.Name, err)
		}
		if sel.Matches(ep.Labels) {
			applicable = append(applicable, p)
		}
	}
	slices.SortStableFunc(applicable, func(a, b *calicov3.GlobalNetworkPolicy) int {
		if c := cmp.Compare(tiers[tierName(a)].Order, tiers[tierName(b)].Order); c != 0 {
			return c
		}
		if c := cmp.Compare(order(a), order(b)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	lastPass := ""
	for start := 0; start < len(applicable); {
		tier := tierName(applicable[start])
		end := start
		for end < len(applicable) && tierName(applicable[end]) == tier {
			end++
		}
		passed := false
	tierPolicies:
		for _, p := range applicable[start:end] {
			for i, r := range p.Spec.Ingress {
				ok, err := matches(r, sets, ep, pkt)
				if err != nil {
					return Result{}, fmt.Errorf("policy %s rule %d: %w", p.Name, i, err)
				}
				if !ok {
					continue
				}
				by := fmt.Sprintf("%s rule %d", p.Name, i)
				switch r.Action {
				case calicov3.Allow:
					return Result{Verdict: Allowed, By: by}, nil
				case calicov3.Deny:
					return Result{Verdict: Denied, By: by}, nil
				case calicov3.Pass:
					passed, lastPass = true, by
					break tierPolicies
				}
			}
		}
		if !passed && !preDNAT && tiers[tier].DefaultAction != calicov3.Pass {
			return Result{Verdict: Denied, By: "end of tier " + tier}, nil
		}
		start = end
	}
	if preDNAT {
		return Result{Verdict: NoDecision, By: lastPass, passed: lastPass != ""}, nil
	}
	return Result{Verdict: Allowed, By: lastPass, passed: lastPass != ""}, nil
}

// tierName is a policy's tier; Calico's admission policy defaults it to
// "default".
func tierName(p *calicov3.GlobalNetworkPolicy) string {
	if p.Spec.Tier == "" {
		return "default"
	}
	return p.Spec.Tier
}

func hasIngress(p *calicov3.GlobalNetworkPolicy) bool {
	if len(p.Spec.Types) == 0 {
		return len(p.Spec.Ingress) > 0
	}
	return slices.Contains(p.Spec.Types, calicov3.PolicyTypeIngress)
}

func order(p *calicov3.GlobalNetworkPolicy) float64 {
	if p.Spec.Order == nil {
		return math.Inf(1)
	}
	return *p.Spec.Order
}

func matches(r calicov3.Rule, sets []*calicov3.GlobalNetworkSet, ep Endpoint, pkt Packet) (bool, error) {
	if r.Protocol != nil && !strings.EqualFold(r.Protocol.String(), pkt.Protocol) {
		return false, nil
	}
	if r.IPVersion != nil && (*r.IPVersion == 4) != pkt.Src.Is4() {
		return false, nil
	}
	if len(r.Source.Nets) > 0 {
		in, err := inNets(r.Source.Nets, pkt.Src)
		if err != nil || !in {
			return false, err
		}
	}
	if len(r.Source.NotNets) > 0 {
		in, err := inNets(r.Source.NotNets, pkt.Src)
		if err != nil || in {
			return false, err
		}
	}
	if r.Source.Selector != "" {
		// The source is not an endpoint of the node: only network sets.
		in, err := selected(r.Source.Selector, sets, Endpoint{}, pkt.Src)
		if err != nil || !in {
			return false, err
		}
	}
	if r.Destination.Selector != "" {
		// Calico matches the destination against the addresses of every
		// endpoint and network set the selector selects; the model knows the
		// endpoint evaluated and the network sets.
		in, err := selected(r.Destination.Selector, sets, ep, pkt.Dst)
		if err != nil || !in {
			return false, err
		}
	}
	if len(r.Destination.Ports) > 0 && !inPorts(r.Destination.Ports, pkt.DstPort) {
		return false, nil
	}
	if len(r.Destination.NotPorts) > 0 && inPorts(r.Destination.NotPorts, pkt.DstPort) {
		return false, nil
	}
	return true, nil
}

// selected reports whether a is an address of what the selector selects:
// the network sets it matches, and the endpoint ep if it matches.
func selected(selector string, sets []*calicov3.GlobalNetworkSet, ep Endpoint, a netip.Addr) (bool, error) {
	sel, err := ParseSelector(selector)
	if err != nil {
		return false, err
	}
	if ep.Labels != nil && sel.Matches(ep.Labels) && slices.Contains(ep.Addrs, a) {
		return true, nil
	}
	for _, s := range sets {
		if !sel.Matches(s.Labels) {
			continue
		}
		in, err := inNets(s.Spec.Nets, a)
		if err != nil || in {
			return in, err
		}
	}
	return false, nil
}

func inNets(nets []string, a netip.Addr) (bool, error) {
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return false, err
		}
		if p.Contains(a) {
			return true, nil
		}
	}
	return false, nil
}

// inPorts matches numeric ports and ranges; named ports never match a
// number here (the model has no pod port names).
func inPorts(ports []numorstring.Port, port uint16) bool {
	for _, p := range ports {
		if p.PortName == "" && p.MinPort <= port && port <= p.MaxPort {
			return true
		}
	}
	return false
}
