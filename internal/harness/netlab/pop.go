package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/nsbridge"
)

// PoP is an edge site: a namespace of its own (<prefix>-pop-<name>) whose
// exporter sends from Addr to the node over a link of its own, as a PoP's
// router reaches the load balancer. Its "obs" interface carries the traffic
// the exporter observes (Traffic), from ObsSrc to ObsDst; what is sent there
// is dropped on the far side of a veth pair, after the capture sees it.
type PoP struct {
	lab            *Lab
	Name           string
	Addr           netip.Addr // the exporter's address (IPv4 or IPv6)
	ObsSrc, ObsDst netip.Addr // the observed flow's addresses, distinct per PoP
}

// popGateway is the node's address on every PoP link (link-local, so it
// never clashes with the lab's other addresses).
var (
	popGateway  = netip.MustParseAddr("169.254.1.1")
	popGateway6 = netip.MustParseAddr("fe80::1")
)

// NS is the PoP's namespace name, for Run and InNS.
func (p *PoP) NS() string { return "pop-" + p.Name }

// AddPoP adds a PoP. index makes its observed addresses distinct
// (10.<index>.0.1 to 10.<index>.0.2); name is at most 11 characters (the
// node's interface is pop-<name>).
func (l *Lab) AddPoP(name string, addr netip.Addr, index int) (*PoP, error) {
	if len(name) > 11 {
		return nil, fmt.Errorf("PoP name %q is longer than 11 characters", name)
	}
	p := &PoP{lab: l, Name: name, Addr: addr,
		ObsSrc: netip.AddrFrom4([4]byte{10, byte(index), 0, 1}), ObsDst: netip.AddrFrom4([4]byte{10, byte(index), 0, 2})}
	ns, nodeIf := p.NS(), "pop-"+name
	if _, err := os.Stat("/run/netns/" + l.NS(ns)); err == nil { // a crashed run's
		_ = exec.Command("ip", "netns", "del", l.NS(ns)).Run()
	}
	l.extra = append(l.extra, ns)
	bits, gw, family := 32, popGateway, "-4"
	if addr.Is6() {
		bits, gw, family = 128, popGateway6, "-6"
	}
	steps := [][]string{
		{"ip", "netns", "add", l.NS(ns)},
		l.in(ns, "ip", "link", "set", "lo", "up"),
		{"ip", "link", "add", "eth0", "netns", l.NS(ns), "type", "veth", "peer", "name", nodeIf, "netns", l.NS("node")},
		l.in(ns, "ip", "link", "set", "eth0", "up"),
		l.in("node", "ip", "link", "set", nodeIf, "up"),
		l.in("node", "ip", "addr", "add", popGateway.String()+"/32", "dev", nodeIf),
		l.in("node", "ip", "addr", "add", popGateway6.String()+"/64", "dev", nodeIf, "nodad"),
		l.in(ns, "ip", "addr", "add", fmt.Sprintf("%s/%d", addr, bits), "dev", "eth0", "nodad"),
		l.in("node", "ip", family, "route", "add", fmt.Sprintf("%s/%d", addr, bits), "dev", nodeIf),
		l.in(ns, "ip", "route", "add", popGateway.String()+"/32", "dev", "eth0"),
		l.in(ns, "ip", family, "route", "add", "default", "via", gw.String(), "dev", "eth0"),
		// The observed traffic: out of obs, a veth whose peer (obs-drop)
		// drops it, being addressed to another MAC.
		l.in(ns, "ip", "link", "add", "obs", "type", "veth", "peer", "name", "obs-drop"),
		l.in(ns, "ip", "link", "set", "obs", "up"),
		l.in(ns, "ip", "link", "set", "obs-drop", "up"),
		l.in(ns, "ip", "addr", "add", p.ObsSrc.String()+"/24", "dev", "obs"),
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// A permanent neighbour of another MAC than obs-drop's: the traffic
	// leaves obs (and is captured) and is dropped at its peer.
	if err := l.Run(ns, "ip", "neigh", "replace", p.ObsDst.String(), "lladdr", "02:00:00:00:00:02", "dev", "obs", "nud", "permanent"); err != nil {
		return nil, err
	}
	return p, nil
}

// Traffic starts the traffic the PoP's exporter observes: a UDP datagram
// from ObsSrc:srcPort to ObsDst:dstPort every interval until Stop.
func (p *PoP) Traffic(srcPort, dstPort uint16, interval time.Duration) (*Sender, error) {
	return p.lab.sendIn(p.NS(), netip.AddrPortFrom(p.ObsSrc, srcPort), netip.AddrPortFrom(p.ObsDst, dstPort), interval)
}

// Socket is a UDP socket of the PoP's observed traffic, bound to
// ObsSrc:port inside its namespace: a benchmark sends probe flows with it
// (each to a destination port of its own, to tell them apart in records).
func (p *PoP) Socket(port uint16) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := p.lab.InNS(p.NS(), func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ObsSrc, port)))
		return err
	})
	return conn, err
}

// NamePodLink renames the node's side of a pod namespace's link ("pod" or
// "pod2"), as a CNI plugin names it (Calico: cali<hash>, which Felix reads as
// the pod's workload interface), keeping the node's addresses and routes on
// it. It returns the link's former name.
func (l *Lab) NamePodLink(ns, name string) error {
	old := map[string]string{"pod": "to-pod", "pod2": "to-pod2"}[ns]
	pod, pod6 := PodIP, PodIP6
	if ns == "pod2" {
		pod, pod6 = Pod2IP, Pod2IP6
	}
	if old == "" {
		return fmt.Errorf("no pod namespace %q", ns)
	}
	// A link goes down to be renamed, which takes its routes and its IPv6
	// addresses with it: they are written again.
	steps := [][]string{
		{"ip", "link", "set", old, "down"},
		{"ip", "link", "set", old, "name", name},
		{"ip", "link", "set", name, "up"},
		{"ip", "addr", "replace", "198.51.100.1/32", "dev", name},
		{"ip", "addr", "replace", "2001:db8:64::1/128", "dev", name, "nodad"},
		{"ip", "route", "replace", pod.String() + "/32", "dev", name},
		{"ip", "-6", "route", "replace", pod6.String() + "/128", "dev", name},
	}
	for _, s := range steps {
		if err := l.Run("node", s...); err != nil {
			return err
		}
	}
	return nil
}

// ForwardLoopback makes TCP services on the root namespace's loopback
// (e.g. an in-memory Kafka broker's listeners) reachable at the same
// addresses on a lab namespace's loopback, as a pod reaches a cluster
// service (nsbridge.Forward). Stop with the returned function.
func (l *Lab) ForwardLoopback(ns string, addrs ...string) (stop func(), err error) {
	return nsbridge.Forward(l.NSPath(ns), addrs...)
}

// CountFrom adds, at the top of a chain of a lab namespace's filter table,
// a rule without a target that counts the packets from src (IPv4 or IPv6);
// PacketsFrom reads it.
func (l *Lab) CountFrom(ns, chain string, src netip.Addr) error {
	return l.Run(ns, iptablesFor(src), "-I", chain, "-s", src.String())
}

// PacketsFrom is what CountFrom's rule has counted.
func (l *Lab) PacketsFrom(ns, chain string, src netip.Addr) (int64, error) {
	out, err := l.Output(ns, iptablesFor(src), "-L", chain, "-vnx")
	if err != nil {
		return 0, fmt.Errorf("listing %s in %s: %v: %s", chain, ns, err, out)
	}
	want := netip.PrefixFrom(src, src.BitLen()).String()
	for _, line := range strings.Split(out, "\n") {
		// pkts bytes target prot opt in out source destination: no target, so
		// the source is the 7th field.
		if f := strings.Fields(line); len(f) >= 8 && (f[6] == want || f[6] == src.String()) {
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no counting rule for %s in %s's %s:\n%s", src, ns, chain, out)
}
