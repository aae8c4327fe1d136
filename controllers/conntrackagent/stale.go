// Package conntrackagent is the node agent that removes stale UDP conntrack
// entries. A constant flow (sFlow, IPFIX) whose packets reached the node
// before the right DNAT rule existed stays pinned to a never-NATed entry,
// or to one NATed to an endpoint that is gone, for as long as it runs.
// kube-proxy (1.32+) cleans this up when a UDP Service's endpoints change;
// it does not when a Service address (a late LB IP, an external IP) is
// added while the flow arrives, which is where the agent is needed; it is a
// safety net elsewhere, and runs no pass under IPVS (see
// docs/controllers/conntrack-agent.md, whose table its tests write). It also
// closes the connections of sources removed from an nlb-policy Service
// (revoke.go).
//
// Table and Stale decide (pure, table-tested), the triggers are pure
// (triggers.go); the Agent watches Services and EndpointSlices and runs
// passes over the node's table through the Conntrack interface (Netlink in
// production, Fake in tests).
package conntrackagent

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Flow is what the decision needs of a conntrack entry.
type Flow struct {
	Proto    uint8 // IP protocol number (17: UDP)
	OrigSrc  netip.AddrPort
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
}

const (
	protoTCP = 6
	protoUDP = 17
)

// port is one UDP Service port: the endpoints that serve it, or, for a
// Service deleted recently, none at all.
type port struct {
	service   types.NamespacedName
	endpoints map[netip.AddrPort]bool
	deleted   bool
}

// Table maps the addresses of UDP Service ports to their serving endpoints.
type Table struct {
	byAddr     map[netip.AddrPort]*port
	byNodePort map[uint16]*port
	local      map[netip.Addr]bool
}

// Tombstone remembers a deleted UDP Service's addresses for a while, so the
// entries still pinned to it (NATed to its former pods) are removed.
type Tombstone struct {
	Service types.NamespacedName
	Addrs   []netip.AddrPort
	Nodes   []uint16
	// From is when its entries start to count as stale (the deletion plus
	// the agent's grace); a Service re-created before then is live again and
	// its flows to pods that still serve are kept.
	From    time.Time
	Expires time.Time
}

// NewTable builds the table from the Services and EndpointSlices the agent
// sees, the tombstones of deleted Services, and the node's local addresses
// (where NodePorts are reached).
func NewTable(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, tombstones []Tombstone, local []netip.Addr) *Table {
	return NewTableAt(time.Now(), services, slices, tombstones, local)
}

// NewTableAt is NewTable at a given time, which decides the tombstones in
// force (the agent's clock).
func NewTableAt(now time.Time, services []*corev1.Service, slices []*discoveryv1.EndpointSlice, tombstones []Tombstone, local []netip.Addr) *Table {
	t := &Table{byAddr: map[netip.AddrPort]*port{}, byNodePort: map[uint16]*port{}, local: map[netip.Addr]bool{}}
	for _, a := range local {
		t.local[a.Unmap()] = true
	}
	for _, ts := range tombstones {
		if now.After(ts.Expires) || now.Before(ts.From) {
			continue
		}
		p := &port{service: ts.Service, deleted: true}
		for _, a := range ts.Addrs {
			t.byAddr[a] = p
		}
		for _, n := range ts.Nodes {
			t.byNodePort[n] = p
		}
	}
	bySvc := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := types.NamespacedName{Namespace: s.Namespace, Name: name}
		bySvc[key] = append(bySvc[key], s)
	}
	for _, svc := range services {
		key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != corev1.ProtocolUDP {
				continue
			}
			p := &port{service: key, endpoints: servingEndpoints(bySvc[key], sp)}
			for _, ip := range ServiceIPs(svc) {
				t.byAddr[netip.AddrPortFrom(ip, uint16(sp.Port))] = p
			}
			if sp.NodePort != 0 {
				t.byNodePort[uint16(sp.NodePort)] = p
			}
		}
	}
	return t
}

// ServiceIPs are the addresses kube-proxy NATs for a Service: its ClusterIPs,
// external IPs and load-balancer ingress IPs, except those whose ipMode is
// Proxy (kube-proxy leaves them alone so that the traffic reaches the load
// balancer, which proxies it; an entry to them is never NATed, on purpose).
func ServiceIPs(svc *corev1.Service) []netip.Addr { return serviceIPs(svc, true) }

// serviceIPs is ServiceIPs, with or without the external IPs (which any
// editor of the Service chooses, so they may name someone else's address).
func serviceIPs(svc *corev1.Service, external bool) []netip.Addr {
	var raw []string
	raw = append(raw, svc.Spec.ClusterIPs...)
	if len(svc.Spec.ClusterIPs) == 0 {
		raw = append(raw, svc.Spec.ClusterIP)
	}
	if external {
		raw = append(raw, svc.Spec.ExternalIPs...)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeProxy {
			continue
		}
		raw = append(raw, in.IP)
	}
	var out []netip.Addr
	for _, s := range raw {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// servingEndpoints are the endpoint address:port pairs that serve a Service
// port: ready (or, when terminating, still serving) endpoints of the port
// with the same name and protocol.
func servingEndpoints(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort) map[netip.AddrPort]bool {
	out := map[netip.AddrPort]bool{}
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, s := range slices {
		var portNum int32
		found := false
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil && (p.Protocol == nil || *p.Protocol == proto) {
				portNum, found = *p.Port, true
			}
		}
		if !found {
			continue
		}
		for _, ep := range s.Endpoints {
			if !Serving(ep) {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out[netip.AddrPortFrom(ip.Unmap(), uint16(portNum))] = true
				}
			}
		}
	}
	return out
}

// Serving reports whether an endpoint takes traffic, as kube-proxy decides:
// ready, or terminating but still serving. A nil Ready means ready (the
// EndpointSlice API's rule).
func Serving(ep discoveryv1.Endpoint) bool {
	c := ep.Conditions
	return c.Ready == nil || *c.Ready || (c.Serving != nil && *c.Serving)
}

// Stale decides whether a conntrack entry must be deleted, and for which
// Service. An entry is stale when it is UDP, its original destination is a
// UDP Service port (a Service address with the port, or the NodePort on a
// local address), that port has at least one serving endpoint, and the
// entry's reply source is not one of them: it was never NATed (the reply
// comes from the Service address itself) or was NATed to an endpoint that is
// gone. A correctly NATed one-way flow is always [UNREPLIED], so that state
// says nothing and is not looked at. Entries to a Service deleted recently
// are all stale.
//
// While a port has no serving endpoint of the entry's address family its
// entries are left alone: each packet would only re-create them; they are
// removed once an endpoint of that family comes back (0 -> N).
func (t *Table) Stale(f Flow) (bool, types.NamespacedName) {
	if f.Proto != protoUDP {
		return false, types.NamespacedName{}
	}
	dst := netip.AddrPortFrom(f.OrigDst.Addr().Unmap(), f.OrigDst.Port())
	p, ok := t.byAddr[dst]
	if !ok && t.local[dst.Addr()] {
		p, ok = t.byNodePort[dst.Port()]
	}
	if !ok {
		return false, types.NamespacedName{}
	}
	if p.deleted {
		return true, p.service
	}
	if !p.servesFamily(dst.Addr().Is4()) {
		return false, p.service
	}
	reply := netip.AddrPortFrom(f.ReplySrc.Addr().Unmap(), f.ReplySrc.Port())
	return !p.endpoints[reply], p.service
}

// servesFamily reports whether the port has a serving endpoint of the
// family: kube-proxy NATs an address only to endpoints of its own family, so
// an IPv6 flow to a Service whose endpoints are all IPv4 (or to an IPv6
// address of a single-stack IPv4 Service) is never NATed, and deleting its
// entry would only have the next packet re-create it.
func (p *port) servesFamily(v4 bool) bool {
	for ep := range p.endpoints {
		if ep.Addr().Is4() == v4 {
			return true
		}
	}
	return false
}

// Filters are the disjoint scan filters that select the entries of these
// Services. Each filter costs one walk of the kernel's whole table (about
// 0.4 s per million entries here, bench/README.md), so there is one per
// destination port: the address when only one address of the set uses that
// port, else the port alone (Stale then keeps the Services' addresses, and,
// for a NodePort, only the node's own).
func (t *Table) Filters(services []types.NamespacedName) []Filter {
	want := map[types.NamespacedName]bool{}
	for _, s := range services {
		want[s] = true
	}
	byPort := map[uint16][]netip.Addr{} // a zero Addr: any address (a NodePort)
	for np, p := range t.byNodePort {
		if want[p.service] {
			byPort[np] = append(byPort[np], netip.Addr{})
		}
	}
	for a, p := range t.byAddr {
		if want[p.service] {
			byPort[a.Port()] = append(byPort[a.Port()], a.Addr())
		}
	}
	var out []Filter
	for port, addrs := range byPort {
		f := Filter{Proto: protoUDP, DstPort: port}
		if len(addrs) == 1 {
			f.Dst = addrs[0]
		}
		out = append(out, f)
	}
	return out
}

// Keys is how many Service addresses and NodePorts the table knows, for metrics.
func (t *Table) Keys() int { return len(t.byAddr) + len(t.byNodePort) }
