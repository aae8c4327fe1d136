package provider

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// ingressSpec is telemetry_nlb_ingress in plain Go. The Service it renders,
// the security-group rules it needs and the rule count of the per-source
// model are pure functions of it, table-tested without a server.
type ingressSpec struct {
	Name, Namespace string
	Selector        map[string]string
	Ports           []ingressPort
	Sources         cidrset.Set
	TargetType      string // lbc.TargetInstance or lbc.TargetIP
	Scheme          string
	Subnets         []string
	ETP             corev1.ServiceExternalTrafficPolicy
	// PolicyBackend is the nlb-policy controller's backend for this Service
	// (annotations.PolicyBackend); "" leaves it to the controller's default.
	PolicyBackend string
	NodeSG        string
	// NLBSecurityGroup: the NLB has its own (frontend) security group, the
	// AWS Load Balancer Controller's default since v2.6.
	NLBSecurityGroup bool
	NodePortMin      int32
	NodePortMax      int32
	Annotations      map[string]string
	// CoverSize is the most prefixes per address family the coarse cover of
	// the sources may have (see cidrset.Set.Cover).
	CoverSize int
	// NodePorts are the Service's allocated NodePorts by nodePortKey, and
	// HealthCheckNodePort its health-check NodePort (externalTrafficPolicy
	// Local); nil while the Service does not exist yet.
	NodePorts           map[string]int32
	HealthCheckNodePort int32
	// TypeAnnotation is the aws-load-balancer-type annotation of a Service
	// that names the AWS Load Balancer Controller that way (made before
	// loadBalancerClass, and imported): it is kept. Classless says the live
	// Service has no class, which is then not written either: a running
	// LoadBalancer Service can gain no class, nor lose one.
	TypeAnnotation string
	Classless      bool
}

// nodePortKey names a Service port's NodePort: "<protocol>/<port>", e.g. "udp/6343".
func nodePortKey(protocol string, port int32) string {
	return strings.ToLower(protocol) + "/" + strconv.Itoa(int(port))
}

// nodePortsFromService reads the allocated NodePorts of a Service.
func nodePortsFromService(svc *corev1.Service) (map[string]int32, int32) {
	out := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out[nodePortKey(string(p.Protocol), p.Port)] = p.NodePort
		}
	}
	return out, svc.Spec.HealthCheckNodePort
}

// nodePortKeys are the nodePortKeys of the ports, sorted.
func (s ingressSpec) nodePortKeys() []string {
	var keys []string
	for _, p := range s.Ports {
		for _, proto := range p.protocols() {
			keys = append(keys, nodePortKey(proto, p.Port))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// perNodePort reports whether the node group's rules name the Service's own
// NodePorts: without a frontend group, with instance targets. Then the rules
// are known only once the NodePorts are (rulesKnown).
func (s ingressSpec) perNodePort() bool {
	return !s.NLBSecurityGroup && s.TargetType != lbc.TargetIP
}

// rulesKnown reports whether desiredRules can be computed: always, except
// per NodePort while a port's NodePort (or, with externalTrafficPolicy
// Local, the health-check NodePort) is not allocated yet.
func (s ingressSpec) rulesKnown() bool {
	if !s.perNodePort() {
		return true
	}
	for _, p := range s.Ports {
		for _, proto := range p.protocols() {
			if s.NodePorts[nodePortKey(proto, p.Port)] == 0 {
				return false
			}
		}
	}
	return s.ETP != corev1.ServiceExternalTrafficPolicyLocal || s.HealthCheckNodePort != 0
}

const (
	// defaultCoverSize keeps 3 listener ports x 10 prefixes at 30 rules, half
	// of a security group's default quota.
	defaultCoverSize = 10
	// rulesPerGroupQuota is AWS's default quota of inbound rules per security
	// group, counted per address family.
	rulesPerGroupQuota = 60
)

type ingressPort struct {
	Name       string
	Protocol   string // UDP, TCP or TCP_UDP
	Port       int32
	TargetPort int32
}

const protocolTCPUDP = "TCP_UDP"

// protocols a port stands for: TCP_UDP is both.
func (p ingressPort) protocols() []string {
	if p.Protocol == protocolTCPUDP {
		return []string{"TCP", "UDP"}
	}
	return []string{p.Protocol}
}

// Annotations the provider writes itself; user annotations may not set them.
var managedServiceAnnotations = []string{
	lbc.Type, lbc.NLBTargetType, lbc.Scheme, lbc.TargetGroupAttributes, lbc.Subnets, lbc.SecurityGroups,
	lbc.ManageBackendSecurityGroupRule, lbc.SourceRanges, lbc.IPAddressType, lbc.DisableNLBSecurityGroup,
	annotations.NLBPolicy, annotations.NodeSecurityGroup, annotations.Enforced, annotations.PolicyBackend,
}

// service renders the Service for the AWS Load Balancer Controller:
// loadBalancerClass service.k8s.aws/nlb, client IPs preserved, source ranges
// aggregated, per-source security-group rules switched off in either of the
// controller's modes, and the nlb-policy controller opted in.
func (s ingressSpec) service(frontendSG string) *corev1ac.ServiceApplyConfiguration {
	ann := map[string]string{}
	for k, v := range s.Annotations {
		ann[k] = v
	}
	ann[lbc.NLBTargetType] = s.TargetType
	ann[lbc.Scheme] = s.Scheme
	ann[lbc.TargetGroupAttributes] = lbc.PreserveClientIP
	ann[lbc.ManageBackendSecurityGroupRule] = "false"
	ann[annotations.NLBPolicy] = annotations.Enabled
	ann[annotations.NodeSecurityGroup] = s.NodeSG
	if s.PolicyBackend != "" {
		ann[annotations.PolicyBackend] = s.PolicyBackend
	}
	if len(s.Subnets) > 0 {
		ann[lbc.Subnets] = strings.Join(s.Subnets, ",")
	}
	if len(s.Sources.V6()) > 0 {
		// IPv6 exporters need an NLB with IPv6 listeners (dualstack subnets).
		ann[lbc.IPAddressType] = lbc.IPAddressTypeDualStack
	}
	if s.NLBSecurityGroup {
		ann[lbc.SecurityGroups] = frontendSG
	} else {
		ann[lbc.DisableNLBSecurityGroup] = "true"
	}
	spec := corev1ac.ServiceSpec().WithType(corev1.ServiceTypeLoadBalancer)
	if s.TypeAnnotation != "" {
		ann[lbc.Type] = s.TypeAnnotation
	}
	if !s.Classless {
		spec.WithLoadBalancerClass(lbc.LoadBalancerClass)
	}
	spec.WithSelector(s.Selector).
		WithExternalTrafficPolicy(s.ETP).
		WithLoadBalancerSourceRanges(s.Sources.Strings()...)
	for _, p := range servicePorts(s.Ports) {
		spec.WithPorts(corev1ac.ServicePort().WithName(p.Name).WithProtocol(p.Protocol).
			WithPort(p.Port).WithTargetPort(p.TargetPort))
	}
	return corev1ac.Service(s.Name, s.Namespace).
		WithLabels(map[string]string{annotations.ManagedBy: annotations.ProviderManager}).
		WithAnnotations(ann).
		WithSpec(spec)
}

// lbcHandOver are the annotations that take the NLB's sources away from the
// AWS Load Balancer Controller's per-source rules: the NLB's security groups
// (or none) and whether the controller manages backend rules. Written while
// the coarse cover is not in place yet, they would switch the NLB to an
// empty frontend group, or make the controller revoke the only rules that
// admit the sources; a migration writes them last (see serviceHoldingLBC).
var lbcHandOver = []string{lbc.SecurityGroups, lbc.ManageBackendSecurityGroupRule, lbc.DisableNLBSecurityGroup}

// handOverPending says whether the live Service's hand-over annotations
// differ from what the ingress renders: the controller still admits the
// sources its own way (an imported Service, or one edited by hand).
func (s ingressSpec) handOverPending(live *corev1.Service, frontendSG string) bool {
	rendered := s.service(frontendSG).Annotations
	for _, k := range lbcHandOver {
		if live.Annotations[k] != rendered[k] {
			return true
		}
	}
	return false
}

// serviceHoldingLBC is service with the hand-over annotations as they are on
// the live Service: the first write of a migration, which opts the Service
// in to Calico policies while the controller's per-source rules still hold.
func (s ingressSpec) serviceHoldingLBC(frontendSG string, live *corev1.Service) *corev1ac.ServiceApplyConfiguration {
	ac := s.service(frontendSG)
	for _, k := range lbcHandOver {
		if v, ok := live.Annotations[k]; ok {
			ac.Annotations[k] = v
		} else {
			delete(ac.Annotations, k)
		}
	}
	return ac
}

// handedOver says whether a Service's annotations keep the AWS Load Balancer
// Controller from writing per-source rules: no backend rules, and either
// groups of the ingress's own or none at all.
func handedOver(ann map[string]string) bool {
	return ann[lbc.ManageBackendSecurityGroupRule] == "false" &&
		(ann[lbc.SecurityGroups] != "" || ann[lbc.DisableNLBSecurityGroup] == "true")
}

// handOverRules are the rules to hold while the AWS Load Balancer
// Controller hands over, beside foreign, the node group's other rules (its
// per-source rules among them): the coarse cover at the largest size, up to
// CoverSize, whose node-group rules fit beside them within AWS's quota;
// each node-group rule that is the same (protocol, ports, source) as a
// foreign one widened to the smallest prefix around its source that is not.
// AWS keeps one rule for the two whatever their descriptions, and the
// controller, revoking its rules from a view it caches for up to 10
// minutes, would take the ingress's with it. What the smaller or widened
// cover admits beyond the sources Calico refuses; once the controller's
// rules are gone the ingress narrows to its own rules.
func (s ingressSpec) handOverRules(foreign []sgRule) ([]sgRule, error) {
	return s.handOverRulesWithin(foreign, rulesPerGroupQuota)
}

// handOverRulesWithin is handOverRules within quota rules per group and
// family (the read-only check takes a raised quota).
func (s ingressSpec) handOverRulesWithin(foreign []sgRule, quota int) ([]sgRule, error) {
	used := nodeRulesByFamily(foreign)
	var need map[string]int
	for size := s.CoverSize; size >= 1; size-- {
		t := s
		t.CoverSize = size
		var rules []sgRule
		for _, r := range t.desiredRules() {
			if r.Group == "node" && slices.Contains(foreign, r) {
				if p, err := netip.ParsePrefix(r.Source); err == nil {
					for p.Bits() > 0 && slices.Contains(foreign, r) {
						p, _ = p.Addr().Prefix(p.Bits() - 1)
						r.Source = p.String()
					}
				}
			}
			if !slices.Contains(rules, r) {
				rules = append(rules, r)
			}
		}
		need = nodeRulesByFamily(rules)
		fits := true
		for family, n := range need {
			fits = fits && used[family]+n <= quota
		}
		if fits {
			return rules, nil
		}
	}
	var over []string
	for _, family := range slices.Sorted(maps.Keys(need)) {
		if used[family]+need[family] > quota {
			over = append(over, fmt.Sprintf("%d %s rules beside its %d", need[family], family, used[family]))
		}
	}
	return nil, fmt.Errorf("the node security group %s has no room for the coarse cover beside the rules it holds (the AWS Load "+
		"Balancer Controller's per-source rules among them): even at one prefix per port it needs %s, over AWS's default "+
		"quota of %d rules per group. Nothing was changed. Raise the quota (Service Quotas: \"Inbound or outbound rules per "+
		"security group\"), free rules in the group, or move the exporters to a new NLB beside this one (the two-NLB path in "+
		"docs/guides/migrating-from-lbc-rules.md)", s.NodeSG, strings.Join(over, " and "), quota)
}

// nodeRulesByFamily counts the node-group rules by address family, as AWS's
// quota does (rules from a group count as IPv4).
func nodeRulesByFamily(rules []sgRule) map[string]int {
	out := map[string]int{}
	for _, r := range rules {
		if r.Group != "node" {
			continue
		}
		family := "IPv4"
		if strings.Contains(r.Source, ":") {
			family = "IPv6"
		}
		out[family]++
	}
	return out
}

// typedService converts what the provider applies into the Service object
// that a create writes.
func typedService(ac *corev1ac.ServiceApplyConfiguration) (*corev1.Service, error) {
	raw, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	svc := &corev1.Service{}
	return svc, json.Unmarshal(raw, svc)
}

// managedAnnotations are the annotations service renders from the
// provider's own keys (user annotations and the controller's acknowledgement
// left out), for drift detection.
func (s ingressSpec) managedAnnotations(frontendSG string) map[string]string {
	return managedOf(s.service(frontendSG).Annotations)
}

// managedAnnotationsOf are the provider's own keys as they are on a Service.
func managedAnnotationsOf(svc *corev1.Service) map[string]string { return managedOf(svc.Annotations) }

// managedOf keeps the provider's own keys of annotations.
func managedOf(ann map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		if isManagedAnnotation(k) {
			out[k] = v
		}
	}
	return out
}

// isManagedAnnotation: a key the provider writes (the acknowledgement is the
// controller's).
func isManagedAnnotation(k string) bool {
	return k != annotations.Enforced && slices.Contains(managedServiceAnnotations, k)
}

// servicePorts are the ports as the Service holds them: a TCP_UDP port is
// two, named <name>-tcp and <name>-udp.
func servicePorts(ports []ingressPort) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range ports {
		for _, proto := range p.protocols() {
			name := p.Name
			if p.Protocol == protocolTCPUDP {
				name += "-" + strings.ToLower(proto)
			}
			out = append(out, corev1.ServicePort{Name: name, Protocol: corev1.Protocol(proto), Port: p.Port,
				TargetPort: intstr.FromInt32(p.TargetPort)})
		}
	}
	return out
}

// portsFromService reads the ports back, merging the TCP and UDP halves of a
// TCP_UDP port ("<name>-tcp", "<name>-udp" on the same port).
//
// A Service is ambiguous: TCP port a-tcp and UDP port a-udp on one number
// are written exactly as TCP_UDP port a. When the Service holds exactly what
// the prior ports render to, they are what it was written from.
func portsFromService(svc *corev1.Service, prior []ingressPort) []ingressPort {
	if len(prior) > 0 && slices.EqualFunc(servicePorts(prior), svc.Spec.Ports, sameServicePort) {
		return slices.Clone(prior)
	}
	var out []ingressPort
	seen := map[int]bool{}
	for i, p := range svc.Spec.Ports {
		if seen[i] {
			continue
		}
		port := ingressPort{Name: p.Name, Protocol: string(p.Protocol), Port: p.Port, TargetPort: p.TargetPort.IntVal}
		if p.TargetPort.IntVal == 0 {
			port.TargetPort = p.Port
		}
		base, isTCP := strings.CutSuffix(p.Name, "-tcp")
		if !isTCP {
			base, _ = strings.CutSuffix(p.Name, "-udp")
		}
		for j := i + 1; j < len(svc.Spec.Ports); j++ {
			q := svc.Spec.Ports[j]
			if !seen[j] && q.Port == p.Port && q.TargetPort == p.TargetPort && q.Protocol != p.Protocol &&
				base != p.Name && (q.Name == base+"-tcp" || q.Name == base+"-udp") {
				seen[j] = true
				port.Name, port.Protocol = base, protocolTCPUDP
			}
		}
		out = append(out, port)
	}
	return out
}

// sameServicePort compares what the provider writes of a port (an unset
// target port means the port).
func sameServicePort(a, b corev1.ServicePort) bool {
	target := func(p corev1.ServicePort) int32 {
		if p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" {
			return p.Port
		}
		return p.TargetPort.IntVal
	}
	return a.Name == b.Name && a.Protocol == b.Protocol && a.Port == b.Port && target(a) == target(b) &&
		a.TargetPort.StrVal == b.TargetPort.StrVal
}

// portProblems lists what is wrong with a set of ports: duplicate names
// (including the Service's names of TCP_UDP halves), and the same port
// number claimed twice for one protocol (TCP_UDP claims both).
func portProblems(ports []ingressPort) []string {
	var problems []string
	names := map[string]bool{}
	claimed := map[string]string{}
	for _, p := range ports {
		if names[p.Name] {
			problems = append(problems, fmt.Sprintf("port name %q is used twice", p.Name))
		}
		names[p.Name] = true
	}
	// A TCP_UDP port's halves are named <name>-tcp and <name>-udp in the
	// Service: no other port may be written under either name.
	writtenBy := map[string]ingressPort{}
	for _, p := range ports {
		for _, sp := range servicePorts([]ingressPort{p}) {
			other, taken := writtenBy[sp.Name]
			writtenBy[sp.Name] = p
			if !taken || other.Name == p.Name {
				continue
			}
			tcpudp, plain := other, p
			if p.Protocol == protocolTCPUDP {
				tcpudp, plain = p, other
			}
			problems = append(problems, fmt.Sprintf("port %q has the Service port name of a half of TCP_UDP port %q "+
				"(%s-tcp, %s-udp): rename one of them", plain.Name, tcpudp.Name, tcpudp.Name, tcpudp.Name))
		}
	}
	for _, p := range ports {
		for _, proto := range p.protocols() {
			key := proto + "/" + strconv.Itoa(int(p.Port))
			if other, ok := claimed[key]; ok {
				problems = append(problems, fmt.Sprintf("ports %q and %q both claim %s %d", other, p.Name, proto, p.Port))
			}
			claimed[key] = p.Name
		}
	}
	return problems
}

// loadBalancerProblems compares the NLB the AWS Load Balancer Controller built
// with what the ingress configured, and says how to fix each difference.
func (s ingressSpec) loadBalancerProblems(frontendSG string, lb *awsnlb.LoadBalancer) []string {
	if lb == nil {
		return nil
	}
	var problems []string
	switch {
	case s.NLBSecurityGroup && !slices.Contains(lb.SecurityGroups, frontendSG):
		problems = append(problems, fmt.Sprintf("the NLB %s has security groups %v, not the frontend group %s: the AWS Load "+
			"Balancer Controller ignored the %s annotation (it runs with the feature gate NLBSecurityGroup=false, or predates "+
			"v2.6), so no exporter packet and no health check reaches the nodes. Set nlb_security_group = false (which "+
			"replaces the ingress), or enable NLB security groups in the controller and replace the ingress",
			lb.DNSName, lb.SecurityGroups, frontendSG, lbc.SecurityGroups))
	case !s.NLBSecurityGroup && len(lb.SecurityGroups) > 0:
		problems = append(problems, fmt.Sprintf("the NLB %s has security groups %v although nlb_security_group = false: the "+
			"node group admits the clients themselves, which an NLB with a group of its own hides behind its address. Use "+
			"an AWS Load Balancer Controller v2.14+ (it honours %s), or set nlb_security_group = true",
			lb.DNSName, lb.SecurityGroups, lbc.DisableNLBSecurityGroup))
	}
	for _, t := range lb.TargetTypes {
		if t != s.TargetType {
			problems = append(problems, fmt.Sprintf("the NLB %s has %s targets while target_type = %q: the per-source policies "+
				"are generated for %s targets, so they would filter the wrong hop. Replace the ingress (terraform apply -replace) "+
				"so the AWS Load Balancer Controller rebuilds its target groups", lb.DNSName, t, s.TargetType, s.TargetType))
			break
		}
	}
	if len(s.Sources.V6()) > 0 && lb.IPAddressType != "" && lb.IPAddressType != lbc.IPAddressTypeDualStack {
		problems = append(problems, fmt.Sprintf("the NLB %s is %s while allowed_sources has IPv6 exporters, which cannot reach "+
			"it: give its subnets IPv6 CIDRs so the AWS Load Balancer Controller can make it dualstack", lb.DNSName, lb.IPAddressType))
	}
	return problems
}

// maxSourceBytes bounds the sources of one ingress, as the size they take in
// the largest object they land in: the Service's loadBalancerSourceRanges
// and the nlb-policy controller's NetworkPolicy (a string each, with a few
// bytes of framing; the NetworkPolicy's is the larger). The API server's
// store takes at most 1.5 MiB per object; measured here
// (BenchmarkSourcesPerService, half IPv4 /32s and half IPv6 /128s of about
// 17 characters): a Service with 80,000 sources stored and one with 90,000
// refused; the NetworkPolicy of 70,000 written and of 80,000 refused. This
// bound (about 1 MB) refuses at plan time well before either, whatever the
// prefixes' lengths.
const maxSourceBytes = 1_000_000

// sourceBytesEach is a source's framing in the NetworkPolicy (an ipBlock
// peer around the CIDR), counted on top of its text.
const sourceBytesEach = 8

// sourcesProblem says when the sources (aggregated) would not fit one
// Service and its policies, with the next step.
func sourcesProblem(sources cidrset.Set) string {
	size := 0
	for _, p := range sources.Prefixes() {
		size += len(p.String()) + sourceBytesEach
	}
	if size <= maxSourceBytes {
		return ""
	}
	return fmt.Sprintf("the %d sources (after aggregation) would take about %d KB in the Service and in its NetworkPolicy, over the "+
		"%d KB this provider allows so that both stay under the API server's 1.5 MiB per object: split the sites over several "+
		"ingresses (each its own Service and NLB, e.g. one per region), or list wider prefixes", sources.Len(), size/1000, maxSourceBytes/1000)
}
