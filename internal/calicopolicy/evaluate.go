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
// projectcalico.org/namespace).
type Endpoint struct {
	Labels map[string]string
	Host   bool
}

// Packet is an inbound packet.
type Packet struct {
	Src      netip.Addr
	Protocol string // "TCP", "UDP", ...
	DstPort  uint16
}

// Verdict is the outcome of a stage.
type Verdict int

const (
	// NoDecision: no pre-DNAT policy matched; the packet goes on to
	// normal processing (pre-DNAT has no default deny).
	NoDecision Verdict = iota
	Allowed
	Denied
)

func (v Verdict) String() string { return [...]string{"no decision", "allowed", "denied"}[v] }

// Result is a verdict and what decided it.
type Result struct {
	Verdict Verdict
	By      string // "<policy> rule <n>", "end of tier" or ""
}

// Evaluate runs the ingress policies of one stage for a packet: the
// pre-DNAT stage of a host endpoint (preDNAT true) or the normal stage.
// Policies apply when their selector matches the endpoint (and, pre-DNAT,
// only pre-DNAT policies to host endpoints), in order (then name); the first
// rule that matches decides. When policies apply but none matches, the
// normal stage ends with the tier's deny; the pre-DNAT stage decides nothing.
// With no applicable policy the normal stage allows (the profile's default).
func Evaluate(policies []*calicov3.GlobalNetworkPolicy, sets []*calicov3.GlobalNetworkSet, ep Endpoint, pkt Packet, preDNAT bool) (Result, error) {
	var applicable []*calicov3.GlobalNetworkPolicy
	for _, p := range policies {
		if p.Spec.PreDNAT != preDNAT || (preDNAT && !ep.Host) || !hasIngress(p) {
			continue
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
		if c := cmp.Compare(order(a), order(b)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, p := range applicable {
		for i, r := range p.Spec.Ingress {
			ok, err := matches(r, sets, pkt)
			if err != nil {
				return Result{}, fmt.Errorf("policy %s rule %d: %w", p.Name, i, err)
			}
			if !ok {
				continue
			}
			by := fmt.Sprintf("%s rule %d", p.Name, i)
			switch r.Action {
			case calicov3.Allow:
				return Result{Allowed, by}, nil
			case calicov3.Deny:
				return Result{Denied, by}, nil
			case calicov3.Pass:
				return Result{NoDecision, by}, nil
			}
		}
	}
	switch {
	case preDNAT:
		return Result{NoDecision, ""}, nil
	case len(applicable) > 0:
		return Result{Denied, "end of tier"}, nil
	default:
		return Result{Allowed, ""}, nil
	}
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

func matches(r calicov3.Rule, sets []*calicov3.GlobalNetworkSet, pkt Packet) (bool, error) {
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
		sel, err := ParseSelector(r.Source.Selector)
		if err != nil {
			return false, err
		}
		found := false
		for _, s := range sets {
			if !sel.Matches(s.Labels) {
				continue
			}
			in, err := inNets(s.Spec.Nets, pkt.Src)
			if err != nil {
				return false, err
			}
			found = found || in
		}
		if !found {
			return false, nil
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
