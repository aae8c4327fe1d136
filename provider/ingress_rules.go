package provider

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// The security-group rules of telemetry_nlb_ingress, pure functions of its
// spec: what it wants (desiredRules), the coarse cover they admit, AWS's
// quota, and what the AWS Load Balancer Controller would have written.

// sgRule is one inbound security-group rule the ingress owns.
type sgRule struct {
	Group    string // "frontend" or "node"
	Protocol string // "tcp" or "udp"
	From, To int32
	// Source is a CIDR, or symbolic: "frontend" (the NLB's group) or "vpc"
	// (the VPC's CIDR blocks), resolved at apply.
	Source string
}

const (
	sourceFrontend = "frontend"
	sourceVPC      = "vpc"
)

// String is the rule as shown in the plan, e.g.
// "node: udp 30000-32767 from frontend".
func (r sgRule) String() string {
	ports := strconv.Itoa(int(r.From))
	if r.To != r.From {
		ports += "-" + strconv.Itoa(int(r.To))
	}
	return fmt.Sprintf("%s: %s %s from %s", r.Group, r.Protocol, ports, r.Source)
}

// desiredRules are the security-group rules of the ingress: bounded by its
// ports and the cover size, never by its sources. The security groups are the
// coarse fence (the sources' cover, cover()); exact per-source filtering is
// Calico's job (the nlb-policy controller), at the node.
//
// With an NLB security group (frontend): the frontend group admits each
// listener port and protocol from each prefix of the cover, and the node
// group admits the frontend group, per protocol, on the NodePort range
// (instance targets) or each target port (ip targets). Health checks are TCP
// and come from the NLB, so TCP is always admitted from the frontend.
//
// Without one (node): the node group admits each client protocol from each
// prefix of the cover on the Service's own NodePorts (instance targets) or
// target ports (ip targets), and TCP from the VPC for health checks (to the
// health-check NodePort, or the traffic NodePorts).
func (s ingressSpec) desiredRules() []sgRule {
	cover, _ := s.cover()
	clients := cover.Strings()
	var rules []sgRule
	add := func(r sgRule) {
		if !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	// backend ranges per protocol: the NodePort range, or each target port.
	type span struct{ from, to int32 }
	backend := map[string][]span{}
	addBackend := func(proto string, sp span) {
		if !slices.Contains(backend[proto], sp) {
			backend[proto] = append(backend[proto], sp)
		}
	}
	clientProtos := map[string]bool{}
	for _, p := range s.Ports {
		for _, proto := range p.protocols() {
			clientProtos[strings.ToLower(proto)] = true
		}
		for _, proto := range append(p.protocols(), "TCP") {
			if s.TargetType == lbc.TargetIP {
				addBackend(strings.ToLower(proto), span{p.TargetPort, p.TargetPort})
			} else {
				addBackend(strings.ToLower(proto), span{s.NodePortMin, s.NodePortMax})
			}
		}
	}
	if s.NLBSecurityGroup {
		for _, p := range s.Ports {
			for _, proto := range p.protocols() {
				for _, cidr := range clients {
					add(sgRule{Group: "frontend", Protocol: strings.ToLower(proto), From: p.Port, To: p.Port, Source: cidr})
				}
			}
		}
		for _, proto := range slices.Sorted(maps.Keys(backend)) {
			for _, sp := range backend[proto] {
				add(sgRule{Group: "node", Protocol: proto, From: sp.from, To: sp.to, Source: sourceFrontend})
			}
		}
	} else if s.perNodePort() {
		// The Service's own NodePorts only, never the range: other NodePort
		// Services of the cluster stay closed at the security-group level.
		for _, p := range s.Ports {
			for _, proto := range p.protocols() {
				np := s.NodePorts[nodePortKey(proto, p.Port)]
				for _, cidr := range clients {
					add(sgRule{Group: "node", Protocol: strings.ToLower(proto), From: np, To: np, Source: cidr})
				}
				if s.HealthCheckNodePort == 0 {
					// Health checks go to the traffic port's NodePort over TCP.
					add(sgRule{Group: "node", Protocol: "tcp", From: np, To: np, Source: sourceVPC})
				}
			}
		}
		if s.HealthCheckNodePort != 0 {
			add(sgRule{Group: "node", Protocol: "tcp", From: s.HealthCheckNodePort, To: s.HealthCheckNodePort, Source: sourceVPC})
		}
	} else {
		for _, proto := range slices.Sorted(maps.Keys(backend)) {
			for _, sp := range backend[proto] {
				if clientProtos[proto] {
					for _, cidr := range clients {
						add(sgRule{Group: "node", Protocol: proto, From: sp.from, To: sp.to, Source: cidr})
					}
				}
				if proto == "tcp" {
					add(sgRule{Group: "node", Protocol: proto, From: sp.from, To: sp.to, Source: sourceVPC})
				}
			}
		}
	}
	return sortedRules(rules)
}

// cover is the coarse allow-list of the security groups: the sources' optimal
// cover in at most CoverSize prefixes per family, and how many addresses it
// admits beyond them.
func (s ingressSpec) cover() (cidrset.Set, *big.Int) {
	return s.Sources.Cover(s.CoverSize)
}

// quotaProblems says which group would hold more rules of one address family
// than AWS's default quota, with the largest cover size that fits.
func (s ingressSpec) quotaProblems() []string {
	perGroup := map[string]int{}
	for _, r := range s.desiredRules() {
		family := "IPv4"
		if strings.Contains(r.Source, ":") {
			family = "IPv6"
		}
		perGroup[r.Group+" "+family]++
	}
	var problems []string
	for _, key := range slices.Sorted(maps.Keys(perGroup)) {
		if n := perGroup[key]; n > rulesPerGroupQuota {
			cover, _ := s.cover()
			perPrefix := max(1, n/max(1, len(cover.Prefixes())))
			problems = append(problems, fmt.Sprintf("the %s group would hold %d %s rules of this ingress, over AWS's default quota of %d "+
				"per group: set coarse_cover_size to %d or less (or use fewer ports)",
				strings.Fields(key)[0], n, strings.Fields(key)[1], rulesPerGroupQuota, max(1, rulesPerGroupQuota/perPrefix)))
		}
	}
	return problems
}

// sortedRules sorts rules by their text, the order the state lists them in,
// and returns them.
func sortedRules(rules []sgRule) []sgRule {
	slices.SortFunc(rules, func(a, b sgRule) int { return cmp.Compare(a.String(), b.String()) })
	return rules
}

// knownSubnets is how many subnets the NLB has or will have as far as is
// known: the configured ones, else the NLB's (lb, when it exists), else as
// many as recorded before; 0 when nothing says.
func (s ingressSpec) knownSubnets(lb *awsnlb.LoadBalancer, recorded int) int {
	switch {
	case len(s.Subnets) > 0:
		return len(s.Subnets)
	case lb != nil && len(lb.SubnetCIDRs) > 0:
		return len(lb.SubnetCIDRs)
	}
	return recorded
}

// ruleStrings renders rules for the plan.
func ruleStrings(rules []sgRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

// perSourceModel is what the AWS Load Balancer Controller would have written
// for the same inputs when managing the rules itself (lbc.PerSourceRules).
func (s ingressSpec) perSourceModel(subnets int) int {
	var perPort []int
	for _, p := range s.Ports {
		perPort = append(perPort, len(p.protocols()))
	}
	return lbc.PerSourceRules(s.Sources.Len(), perPort, subnets)
}
