// Package nlbpolicy is the nlb-policy controller: for every NLB Service of
// the AWS Load Balancer Controller that opts in, it generates the Calico
// GlobalNetworkPolicies that do the per-source filtering the load balancer
// controller's security-group rules would have done, and guarantees their
// clean-up.
//
// Desired computes the objects from the observed Service (a pure function,
// table-tested); the Reconciler applies the difference.
package nlbpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Options are the controller-wide settings Desired depends on.
type Options struct {
	// HostEndpointSelector selects the nodes' host endpoints (instance targets).
	HostEndpointSelector string
	// Order of the Allow policy; the Deny policy gets Order+1.
	Order float64
	// NetworkSetThreshold: past this many source nets, the nets move into a
	// GlobalNetworkSet referenced by selector.
	NetworkSetThreshold int
	// Tier is the Calico tier of the policies: one of the product's own,
	// ending in Pass, so what they do not decide goes on to users' policies.
	Tier string
	// ProgrammingGrace is how long the policies of a change stay in the API
	// server before the change is acknowledged (see Reconciler), with the
	// calico backend; NetworkPolicyGrace the same with the networkpolicy
	// backend, whose enforcers (kube-router, Cilium, the VPC CNI's agent)
	// can take longer than Felix.
	ProgrammingGrace   time.Duration
	NetworkPolicyGrace time.Duration
	// Backend enforces the Services that do not choose one
	// (annotations.PolicyBackend); Backends are those a Service may choose,
	// the admins' allow-list (empty: Backend alone). The controller watches
	// and writes the objects of these backends only, so a cluster without
	// Calico runs it with the NetworkPolicy backend alone.
	Backend  Backend
	Backends []Backend
}

// The product's Calico tier, as the Helm chart and deploy/ manifests create it.
const (
	DefaultTier      = "telemetry-nlb"
	DefaultTierOrder = 2000 // after kube-admin (1,000), before default (1,000,000)
)

// DefaultProgrammingGrace is ProgrammingGrace's default: Felix enforced an
// edit 50-280 ms after the controller wrote it in the tests here (real Felix,
// idle and under load), and a cluster's Felixes read through Typha.
const DefaultProgrammingGrace = 2 * time.Second

// DefaultNetworkPolicyGrace is NetworkPolicyGrace's default: kube-router
// enforced a change 0.4-0.9 s after the write here idle, 0.7-1.2 s beside
// stress-ng, and 3.2 s with the machine's two cores overcommitted (the full
// test suite and more beside it), past the 2 s of Felix's grace, letting
// datagrams of a source its policy did not list through after the
// acknowledgement; Felix enforced a NetworkPolicy in 0.08-0.23 s.
const DefaultNetworkPolicyGrace = 5 * time.Second

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{HostEndpointSelector: "has(kubernetes.io/hostname)", Order: 100, NetworkSetThreshold: 50, Tier: DefaultTier,
		ProgrammingGrace: DefaultProgrammingGrace, NetworkPolicyGrace: DefaultNetworkPolicyGrace}
}

// TierObject is the product's tier: its policies first, then Pass.
func TierObject(name string, order float64) *calicov3.Tier {
	return &calicov3.Tier{
		TypeMeta:   metav1.TypeMeta{APIVersion: calicov3.GroupVersionCurrent, Kind: calicov3.KindTier},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       calicov3.TierSpec{Order: &order, DefaultAction: ptr(calicov3.Pass)},
	}
}

func ptr[T any](v T) *T { return &v }

// Input is what Desired reads: the Service and what the reconciler resolved
// for it.
type Input struct {
	Service *corev1.Service
	// HealthCheckCIDRs are the NLB's subnet CIDRs (resolved through AWS, the
	// annotation or a flag); invalid entries are reported and dropped.
	HealthCheckCIDRs []string
	// HealthCheckBound is where health checks can come from at all (the
	// NLB's VPC): a health-check CIDR not inside it (a Service's annotation
	// is the tenant's to write) is reported and dropped. nil: no bound
	// applies (CIDRs the controller found itself); empty: the bound is not
	// known, so every CIDR is dropped.
	HealthCheckBound []string
	// HealthCheckPending: the NLB does not exist yet, so there are no health
	// checks to allow and their absence is not a problem to report.
	HealthCheckPending bool
	// DefaultSources apply when the Service lists no source range at all:
	// 0.0.0.0/0 for internet-facing NLBs, the VPC's CIDRs for internal ones,
	// as the AWS Load Balancer Controller does.
	DefaultSources []string
	// Services are other Services of the namespace by name: the owners of
	// the controller's NetworkPolicies beside this Service's (the
	// NetworkPolicy backend checks each against its owner; see isSibling).
	Services map[string]*corev1.Service
	// TargetPortNumbers are the numbers the named target ports of this
	// Service and of those in Services resolve to on their pods: by Service
	// name, then Service port name (read from the Services' EndpointSlices).
	// The NetworkPolicy backend filters a named port on these numbers.
	TargetPortNumbers map[string]map[string][]uint16
}

// Output is the desired state for one Service.
type Output struct {
	Policies    []*calicov3.GlobalNetworkPolicy
	NetworkSets []*calicov3.GlobalNetworkSet
	// Problems are invalid inputs, reported as Events; the valid part is
	// still enforced and nothing is widened.
	Problems []string
	// Waiting, when set, says why no policy can be computed yet (a NodePort
	// not allocated): the reconciler waits, it does not error.
	Waiting string
	// Sources is the aggregated set of allowed source nets.
	Sources cidrset.Set
}

// Labels on generated objects.
func ownerLabels(svc *corev1.Service) map[string]string {
	return map[string]string{
		annotations.ManagedBy:      annotations.NLBPolicyManager,
		annotations.OwnerNamespace: svc.Namespace,
		annotations.OwnerName:      svc.Name,
		annotations.OwnerUID:       string(svc.UID),
	}
}

// BaseName is the dot-free, deterministic name prefix of a Service's
// objects: nlb-<namespace>-<name>-<hash of namespace/name>. Namespace and
// name are DNS labels (no dots), the hash keeps "a-b"/"c" and "a"/"b-c"
// apart, and the whole stays far below Calico's 253 characters.
func BaseName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return fmt.Sprintf("nlb-%s-%s-%s", namespace, name, hex.EncodeToString(sum[:])[:8])
}

// Suffixes of a Service's objects after its BaseName.
const (
	suffixSources = "-sources" // the GlobalNetworkSet of its sources
	suffixAllow   = "-allow"
	suffixDeny    = "-deny"
)

// ObjectSuffixes are all the suffixes a generated object's name can have.
var ObjectSuffixes = []string{suffixSources, suffixAllow, suffixDeny}

// OwnerOfName is the inverse of BaseName on a generated object's name: the
// Service it was generated for (the hash decides between the ways
// "<namespace>-<name>" can split at a hyphen). Objects whose labels were
// stripped by hand are still found by it, so none is orphaned.
func OwnerOfName(object string) (namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(object, "nlb-")
	if !found {
		return "", "", false
	}
	var base string
	for _, suffix := range append(slices.Clone(ObjectSuffixes), suffixNetworkPolicy) {
		if b, cut := strings.CutSuffix(rest, suffix); cut {
			base = b
			break
		}
	}
	// base is "<namespace>-<name>-<8 hex>".
	if len(base) < 12 || base[len(base)-9] != '-' {
		return "", "", false
	}
	pair := base[:len(base)-9]
	for i := 1; i < len(pair)-1; i++ {
		if pair[i] == '-' && BaseName(pair[:i], pair[i+1:]) == "nlb-"+base {
			return pair[:i], pair[i+1:], true
		}
	}
	return "", "", false
}

// Desired computes the GlobalNetworkPolicies (and GlobalNetworkSet) that
// enforce a Service's allowed sources. The product only narrows: what it
// lists it passes on (Pass) to the cluster's own tiers, whose policies still
// decide; everything else to the Service's ports it denies. It never
// allows, so no Service, annotation or source list can open what an admin's
// policy closed.
//
//   - instance targets: a pre-DNAT policy on the nodes' host endpoints that
//     passes the sources to the Service's NodePorts (per protocol) and the
//     health-check CIDRs to the health-check NodePort (or, without one, the
//     NodePorts over TCP) on, then a Deny for the same ports at a later
//     order, only toward the nodes' own addresses (the host endpoints'), so
//     the same port number forwarded to a pod is not touched;
//   - ip targets: a policy selecting the Service's pods that passes the same
//     to the target ports on, then a Deny for those ports at a later order.
func Desired(in Input, opts Options) Output {
	svc := in.Service
	var out Output

	sources, health, problems := admitted(in, true)
	out.Sources, out.Problems = sources, problems

	ipTargets := ipTargetsOf(svc)
	selector := opts.HostEndpointSelector
	if ipTargets {
		var problem string
		selector, problem = podSelector(svc)
		if problem != "" {
			out.Problems = append(out.Problems, problem)
		}
		if selector == "" {
			out.Waiting = "the Service has no selector: no pods to protect"
			return out
		}
	} else if s, ok := svc.Annotations[annotations.HostEndpointSelector]; ok {
		// The annotation narrows the controller's selector, never replaces
		// it: a Service's editor may pick some of the nodes, not others'
		// endpoints. An empty one (Calico reads it as all()) is refused.
		switch err := calicopolicy.ValidateSelector(s); {
		case strings.TrimSpace(s) == "":
			out.Problems = append(out.Problems, fmt.Sprintf("empty %s: ignored, using %q", annotations.HostEndpointSelector, selector))
		case err != nil:
			out.Problems = append(out.Problems, fmt.Sprintf("invalid %s %q (%v): ignored, using %q", annotations.HostEndpointSelector, s, err, selector))
		default:
			selector = fmt.Sprintf("(%s) && (%s)", selector, s)
		}
	}

	// Ports per protocol: NodePorts (instance) or target ports (ip).
	ports := map[string][]numorstring.Port{}
	addPort := func(proto string, p numorstring.Port) {
		if !slices.Contains(ports[proto], p) {
			ports[proto] = append(ports[proto], p)
		}
	}
	for _, sp := range svc.Spec.Ports {
		proto := string(sp.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if ipTargets {
			switch {
			case sp.TargetPort.StrVal != "":
				addPort(proto, numorstring.NamedPort(sp.TargetPort.StrVal))
			case sp.TargetPort.IntVal != 0:
				addPort(proto, numorstring.SinglePort(uint16(sp.TargetPort.IntVal)))
			default:
				addPort(proto, numorstring.SinglePort(uint16(sp.Port)))
			}
			continue
		}
		if sp.NodePort == 0 {
			out.Waiting = fmt.Sprintf("port %q has no NodePort yet", sp.Name)
			return out
		}
		addPort(proto, numorstring.SinglePort(uint16(sp.NodePort)))
	}
	if len(ports) == 0 {
		out.Waiting = "the Service has no ports"
		return out
	}
	for proto := range ports {
		ports[proto] = uniquePorts(ports[proto])
	}
	// Health checks are TCP: to the health-check NodePort (externalTrafficPolicy
	// Local), else to the traffic ports over TCP.
	var healthPorts []numorstring.Port
	switch {
	case ipTargets:
		for _, ps := range ports {
			healthPorts = append(healthPorts, ps...)
		}
	case svc.Spec.HealthCheckNodePort != 0:
		healthPorts = []numorstring.Port{numorstring.SinglePort(uint16(svc.Spec.HealthCheckNodePort))}
	default:
		for _, ps := range ports {
			healthPorts = append(healthPorts, ps...)
		}
	}
	healthPorts = uniquePorts(healthPorts)

	base := BaseName(svc.Namespace, svc.Name)
	labels := ownerLabels(svc)
	protocols := slices.Sorted(maps.Keys(ports))

	// Source entity: nets inline, or a GlobalNetworkSet past the threshold.
	var sourceRules []familyRule
	if sources.Len() > opts.NetworkSetThreshold {
		value := NetSetLabelValue(svc)
		set := &calicov3.GlobalNetworkSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: calicov3.GroupVersionCurrent, Kind: calicov3.KindGlobalNetworkSet},
			ObjectMeta: metav1.ObjectMeta{Name: base + suffixSources, Labels: withLabel(labels, annotations.NetSet, value)},
			Spec:       calicov3.GlobalNetworkSetSpec{Nets: sources.Strings()},
		}
		out.NetworkSets = append(out.NetworkSets, set)
		// Pods and namespaced network sets carry projectcalico.org/namespace;
		// excluding it keeps a pod that copies the label from being a source.
		sourceRules = []familyRule{{EntityRule: calicov3.EntityRule{
			Selector: fmt.Sprintf("%s == '%s' && !has(%s)", annotations.NetSet, value, calicoNamespaceLabel)}}}
	} else {
		sourceRules = netsByFamily(sources)
	}

	var allow, deny []calicov3.Rule
	for _, proto := range protocols {
		for _, src := range sourceRules {
			allow = append(allow, calicov3.Rule{Action: calicov3.Pass, Protocol: protocol(proto), IPVersion: src.ipVersion(),
				Source: src.EntityRule, Destination: calicov3.EntityRule{Ports: ports[proto]}})
		}
	}
	for _, src := range netsByFamily(health) {
		allow = append(allow, calicov3.Rule{Action: calicov3.Pass, Protocol: protocol("TCP"), IPVersion: src.ipVersion(),
			Source: src.EntityRule, Destination: calicov3.EntityRule{Ports: healthPorts}})
	}
	denyPorts := map[string][]numorstring.Port{}
	for proto, ps := range ports {
		denyPorts[proto] = ps
	}
	denyPorts["TCP"] = uniquePorts(append(slices.Clone(denyPorts["TCP"]), healthPorts...))
	for _, proto := range slices.Sorted(maps.Keys(denyPorts)) {
		dst := calicov3.EntityRule{Ports: denyPorts[proto]}
		if !ipTargets {
			// Pre-DNAT sees every packet entering the node, forwarded ones
			// too: only those addressed to the nodes themselves (their host
			// endpoints' addresses) are the Service's NodePort traffic.
			dst.Selector = selector
		}
		deny = append(deny, calicov3.Rule{Action: calicov3.Deny, Protocol: protocol(proto), Destination: dst})
	}

	policy := func(suffix string, order float64, rules []calicov3.Rule) *calicov3.GlobalNetworkPolicy {
		// Tier and its label are what Calico's admission policy would default:
		// set here, so the stored object equals the desired one.
		p := &calicov3.GlobalNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: calicov3.GroupVersionCurrent, Kind: calicov3.KindGlobalNetworkPolicy},
			ObjectMeta: metav1.ObjectMeta{Name: base + suffix, Labels: withLabel(labels, calicoTierLabel, tierOf(opts))},
			Spec: calicov3.GlobalNetworkPolicySpec{
				Tier:  tierOf(opts),
				Order: &order, Selector: selector, Ingress: rules,
				Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress},
			},
		}
		if !ipTargets {
			p.Spec.PreDNAT, p.Spec.ApplyOnForward = true, true
		}
		return p
	}
	if len(allow) > 0 {
		out.Policies = append(out.Policies, policy(suffixAllow, opts.Order, allow))
	}
	out.Policies = append(out.Policies, policy(suffixDeny, opts.Order+1, deny))
	return out
}

// admitted is what any backend admits for a Service, whatever writes it: its
// sources (its ranges, else the controller's default) and the health checks'
// CIDRs inside their bound, with the problems of its input. A list given but
// entirely invalid admits nothing: it never falls back to the default, which
// would widen. needHealth: the health checks reach what the backend filters
// (their absence is then a problem to report).
func admitted(in Input, needHealth bool) (sources, health cidrset.Set, problems []string) {
	svc := in.Service
	raw := lbc.SourceRangesOf(svc)
	if len(raw) == 0 {
		raw = in.DefaultSources
		switch {
		case len(raw) > 0:
		case lbc.IsNLB(svc):
			problems = append(problems, "no source ranges and no default for this scheme (internal NLB without known VPC CIDRs): no client is allowed")
		default:
			problems = append(problems, "no source ranges (spec.loadBalancerSourceRanges): a load balancer other than the AWS NLB "+
				"has no default sources here, so no client is allowed; list the exporters' networks")
		}
	}
	sources, errs := cidrset.Parse(raw)
	for _, err := range errs {
		problems = append(problems, fmt.Sprintf("invalid source range %v: ignored", err))
	}
	healthCIDRs, outside := boundedBy(in.HealthCheckCIDRs, in.HealthCheckBound)
	for _, c := range outside {
		if len(in.HealthCheckBound) == 0 {
			problems = append(problems, fmt.Sprintf("health-check CIDR %s ignored: the load balancer's VPC, which bounds it, "+
				"is not known (the NLB does not exist yet, or AWS is off: set --vpc-cidrs)", c))
			continue
		}
		problems = append(problems, fmt.Sprintf("health-check CIDR %s is outside the load balancer's VPC (%s): ignored",
			c, strings.Join(in.HealthCheckBound, ", ")))
	}
	health, errs = cidrset.Parse(healthCIDRs)
	for _, err := range errs {
		problems = append(problems, fmt.Sprintf("invalid health-check CIDR %v: ignored", err))
	}
	if health.Len() == 0 && !in.HealthCheckPending && needHealth {
		problems = append(problems, "no health-check CIDRs known: NLB health checks are not allowed and targets will be unhealthy")
	}
	return sources, health, problems
}

// calicoTierLabel is the label Calico's admission policy sets to a policy's tier.
const calicoTierLabel = "projectcalico.org/tier"

func tierOf(opts Options) string {
	if opts.Tier == "" {
		return "default"
	}
	return opts.Tier
}

// calicoNamespaceLabel is the label Calico gives every workload endpoint and
// namespaced NetworkSet, and never a GlobalNetworkSet.
const calicoNamespaceLabel = "projectcalico.org/namespace"

// NetSetLabelValue is the value of the annotations.NetSet label on a Service's
// GlobalNetworkSet: a hash of its namespace, name and UID, 40 hex characters
// whatever the name's length (a label value is at most 63), and not derivable
// from names alone.
func NetSetLabelValue(svc *corev1.Service) string {
	sum := sha256.Sum256([]byte(svc.Namespace + "/" + svc.Name + "/" + string(svc.UID)))
	return hex.EncodeToString(sum[:20])
}

type familyRule struct {
	calicov3.EntityRule
	version int
}

func (f familyRule) ipVersion() *int {
	if f.version == 0 {
		return nil
	}
	v := f.version
	return &v
}

// netsByFamily splits nets into one entity per address family, since a
// Calico rule matches one IP version.
func netsByFamily(s cidrset.Set) []familyRule {
	var out []familyRule
	for _, fam := range []struct {
		nets    []netip.Prefix
		version int
	}{{s.V4(), 4}, {s.V6(), 6}} {
		if len(fam.nets) == 0 {
			continue
		}
		var nets []string
		for _, p := range fam.nets {
			nets = append(nets, p.String())
		}
		out = append(out, familyRule{EntityRule: calicov3.EntityRule{Nets: nets}, version: fam.version})
	}
	return out
}

// podSelector renders the Service's selector as a Calico selector scoped to
// its namespace.
func podSelector(svc *corev1.Service) (string, string) {
	if len(svc.Spec.Selector) == 0 {
		return "", ""
	}
	parts := []string{fmt.Sprintf("%s == '%s'", calicoNamespaceLabel, svc.Namespace)}
	for _, k := range slices.Sorted(maps.Keys(svc.Spec.Selector)) {
		v := svc.Spec.Selector[k]
		if strings.ContainsAny(k+v, `'"`) {
			return "", fmt.Sprintf("selector %s=%s cannot be expressed as a Calico selector", k, v)
		}
		parts = append(parts, fmt.Sprintf("%s == '%s'", k, v))
	}
	return strings.Join(parts, " && "), ""
}

func protocol(name string) *numorstring.Protocol {
	p := numorstring.ProtocolFromString(name)
	return &p
}

func uniquePorts(ps []numorstring.Port) []numorstring.Port {
	var out []numorstring.Port
	for _, p := range ps {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b numorstring.Port) int {
		if a.MinPort != b.MinPort {
			return int(a.MinPort) - int(b.MinPort)
		}
		return strings.Compare(a.PortName, b.PortName)
	})
	return out
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range m {
		out[key] = val
	}
	return out
}

// boundedBy splits CIDRs into those inside one of bound's (all, for a nil
// bound; none, for an empty one) and those outside. Unparseable entries are
// kept for the caller to report.
func boundedBy(cidrs, bound []string) (inside, outside []string) {
	if bound == nil {
		return cidrs, nil
	}
	var within []netip.Prefix
	for _, b := range bound {
		if p, err := cidrset.ParsePrefix(b); err == nil {
			within = append(within, p)
		}
	}
	for _, c := range cidrs {
		p, err := cidrset.ParsePrefix(c)
		if err != nil {
			inside = append(inside, c)
			continue
		}
		if slices.ContainsFunc(within, func(b netip.Prefix) bool { return b.Bits() <= p.Bits() && b.Contains(p.Addr()) }) {
			inside = append(inside, c)
		} else {
			outside = append(outside, c)
		}
	}
	return inside, outside
}
