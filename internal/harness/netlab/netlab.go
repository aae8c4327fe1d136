// Package netlab builds, in network namespaces, the topology of the stale
// UDP conntrack failure (docs/controllers/conntrack-agent.md): an exporter
// ("client") sends a constant UDP flow through a "node" that forwards, to a
// collector "pod"; the load balancer's address is routed from the node into
// a "sink" that silently drops it, so packets that are not NATed vanish.
// The tests of the conntrack agent, its benchmark and the demo use it.
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and iptables.
// All addresses are in documentation ranges and exist only inside the
// namespaces it creates.
package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netns"
)

// Addresses of the lab.
var (
	ClientIP = netip.MustParseAddr("192.0.2.2")     // the exporter
	NodeIP   = netip.MustParseAddr("192.0.2.1")     // the node, as the client sees it (NodePort traffic)
	PodIP    = netip.MustParseAddr("198.51.100.2")  // the collector
	Pod2IP   = netip.MustParseAddr("198.51.100.3")  // a second collector (an endpoint replaced by another)
	LBIP     = netip.MustParseAddr("203.0.113.10")  // the load balancer's address, routed to the sink
	ExtIP    = netip.MustParseAddr("203.0.113.20")  // an external IP (spec.externalIPs), routed to the sink too
	sinkIP   = netip.MustParseAddr("203.0.113.130") // the sink's own address
)

// The same roles on IPv6 (every namespace is dual-stack), in 2001:db8::/32.
var (
	ClientIP6 = netip.MustParseAddr("2001:db8:2::2")
	NodeIP6   = netip.MustParseAddr("2001:db8:2::1")
	PodIP6    = netip.MustParseAddr("2001:db8:64::2")
	Pod2IP6   = netip.MustParseAddr("2001:db8:64::3")
	LBIP6     = netip.MustParseAddr("2001:db8:71::10")
	ExtIP6    = netip.MustParseAddr("2001:db8:71::20")
	sinkIP6   = netip.MustParseAddr("2001:db8:ff::2")
)

// Lab is a set of namespaces named <prefix>-client, -node, -pod, -pod2, -sink.
type Lab struct {
	Prefix string
	nodeNS *os.File
	extra  []string // namespaces added after New (PoPs)
}

// Check says what is missing to build a lab, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab needs root (network namespaces, iptables): run the tests as root, as CI does")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install iproute2 iptables (.ci/run does)", tool)
		}
	}
	return nil
}

// New builds a lab. Close removes it.
func New(prefix string) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix}
	_ = l.Close() // leftovers of a crashed run
	steps := [][]string{}
	for _, ns := range []string{"client", "node", "pod", "pod2", "sink"} {
		steps = append(steps, []string{"ip", "netns", "add", l.NS(ns)})
		steps = append(steps, l.in(ns, "ip", "link", "set", "lo", "up"))
	}
	link := func(a, b, aIf, bIf string) {
		steps = append(steps,
			[]string{"ip", "link", "add", aIf, "netns", l.NS(a), "type", "veth", "peer", "name", bIf, "netns", l.NS(b)},
			l.in(a, "ip", "link", "set", aIf, "up"), l.in(b, "ip", "link", "set", bIf, "up"))
	}
	link("client", "node", "eth0", "to-client")
	link("pod", "node", "eth0", "to-pod")
	link("pod2", "node", "eth0", "to-pod2")
	link("sink", "node", "eth0", "to-sink")
	steps = append(steps,
		l.in("client", "ip", "addr", "add", ClientIP.String()+"/24", "dev", "eth0"),
		l.in("client", "ip", "route", "add", "default", "via", NodeIP.String()),
		l.in("node", "ip", "addr", "add", NodeIP.String()+"/24", "dev", "to-client"),
		l.in("node", "ip", "addr", "add", "198.51.100.1/32", "dev", "to-pod"),
		l.in("node", "ip", "route", "add", PodIP.String()+"/32", "dev", "to-pod"),
		l.in("node", "ip", "route", "add", Pod2IP.String()+"/32", "dev", "to-pod2"),
		l.in("pod", "ip", "addr", "add", PodIP.String()+"/32", "dev", "eth0"),
		l.in("pod", "ip", "route", "add", "198.51.100.1/32", "dev", "eth0"),
		l.in("pod", "ip", "route", "add", "default", "via", "198.51.100.1"),
		l.in("pod2", "ip", "addr", "add", Pod2IP.String()+"/32", "dev", "eth0"),
		l.in("pod2", "ip", "route", "add", "198.51.100.1/32", "dev", "eth0"),
		l.in("pod2", "ip", "route", "add", "default", "via", "198.51.100.1"),
		l.in("sink", "ip", "addr", "add", sinkIP.String()+"/25", "dev", "eth0"),
		l.in("node", "ip", "addr", "add", "203.0.113.129/25", "dev", "to-sink"),
		l.in("node", "ip", "route", "add", LBIP.String()+"/32", "via", sinkIP.String()),
		l.in("node", "ip", "route", "add", ExtIP.String()+"/32", "via", sinkIP.String()),
		l.in("node", "sysctl", "-qw", "net.ipv4.ip_forward=1"),
		// IPv6: the same topology (nodad: addresses usable at once).
		l.in("client", "ip", "addr", "add", ClientIP6.String()+"/64", "dev", "eth0", "nodad"),
		l.in("client", "ip", "-6", "route", "add", "default", "via", NodeIP6.String()),
		l.in("node", "ip", "addr", "add", NodeIP6.String()+"/64", "dev", "to-client", "nodad"),
		l.in("node", "ip", "addr", "add", "2001:db8:64::1/128", "dev", "to-pod", "nodad"),
		l.in("node", "ip", "-6", "route", "add", PodIP6.String()+"/128", "dev", "to-pod"),
		l.in("node", "ip", "-6", "route", "add", Pod2IP6.String()+"/128", "dev", "to-pod2"),
		l.in("pod", "ip", "addr", "add", PodIP6.String()+"/128", "dev", "eth0", "nodad"),
		l.in("pod", "ip", "-6", "route", "add", "2001:db8:64::1/128", "dev", "eth0"),
		l.in("pod", "ip", "-6", "route", "add", "default", "via", "2001:db8:64::1"),
		l.in("pod2", "ip", "addr", "add", Pod2IP6.String()+"/128", "dev", "eth0", "nodad"),
		l.in("pod2", "ip", "-6", "route", "add", "2001:db8:64::1/128", "dev", "eth0"),
		l.in("pod2", "ip", "-6", "route", "add", "default", "via", "2001:db8:64::1"),
		l.in("sink", "ip", "addr", "add", sinkIP6.String()+"/64", "dev", "eth0", "nodad"),
		l.in("node", "ip", "addr", "add", "2001:db8:ff::1/64", "dev", "to-sink", "nodad"),
		l.in("node", "ip", "-6", "route", "add", LBIP6.String()+"/128", "via", sinkIP6.String()),
		l.in("node", "ip", "-6", "route", "add", ExtIP6.String()+"/128", "via", sinkIP6.String()),
		l.in("node", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"),
		l.in("node", "ip6tables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT"),
		// A rule that needs conntrack, so the namespace tracks connections.
		l.in("node", "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT"),
	)
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// Permanent neighbour for the sink, so packets to the LB address really
	// leave the node and their conntrack entries are confirmed.
	mac, err := l.mac("sink", "eth0")
	if err != nil {
		_ = l.Close()
		return nil, err
	}
	for _, ip := range []netip.Addr{sinkIP, sinkIP6} {
		if err := l.Run("node", "ip", "neigh", "replace", ip.String(), "lladdr", mac, "dev", "to-sink", "nud", "permanent"); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	if l.nodeNS, err = os.Open("/run/netns/" + l.NS("node")); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// NS is a namespace's full name.
func (l *Lab) NS(name string) string { return l.Prefix + "-" + name }

// NodeNS is a file descriptor of the node namespace, for the agent.
func (l *Lab) NodeNS() int { return int(l.nodeNS.Fd()) }

func (l *Lab) in(ns string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", l.NS(ns)}, args...)
}

// Run runs a command in a namespace.
func (l *Lab) Run(ns string, args ...string) error {
	s := l.in(ns, args...)
	if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
	}
	return nil
}

// Output runs a command in a namespace and returns its output.
func (l *Lab) Output(ns string, args ...string) (string, error) {
	s := l.in(ns, args...)
	out, err := exec.Command(s[0], s[1:]...).CombinedOutput()
	return string(out), err
}

func (l *Lab) mac(ns, dev string) (string, error) {
	out, err := l.Output(ns, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(out), err
}

// DNAT stands in for kube-proxy: traffic to dst is NATed to the endpoint.
func (l *Lab) DNAT(dst, endpoint netip.AddrPort) error { return l.DNATProto("udp", dst, endpoint) }

// RemoveDNAT removes the rule DNAT added.
func (l *Lab) RemoveDNAT(dst, endpoint netip.AddrPort) error {
	return l.Run("node", iptablesFor(dst.Addr()), "-t", "nat", "-D", "PREROUTING", "-p", "udp", "-d", dst.Addr().String(),
		"--dport", fmt.Sprint(dst.Port()), "-j", "DNAT", "--to-destination", endpoint.String())
}

// Close removes the namespaces (and with them everything in them).
func (l *Lab) Close() error {
	if l.nodeNS != nil {
		l.nodeNS.Close()
	}
	var errs []error
	for _, ns := range append([]string{"client", "node", "pod", "pod2", "sink"}, l.extra...) {
		if _, err := os.Stat("/run/netns/" + l.NS(ns)); err == nil {
			if out, err := exec.Command("ip", "netns", "del", l.NS(ns)).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", l.NS(ns), err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// InNS runs fn on an OS thread inside a namespace (see package netns: the
// thread returns to the runtime only once back in the root namespace).
func (l *Lab) InNS(ns string, fn func() error) error {
	return netns.DoPath("/run/netns/"+l.NS(ns), fn)
}

// AddClientAddress gives the client one more source address (in
// 192.0.2.0/24, which the node reaches directly, or in a prefix the node is
// given a route for through the client link), so tests can send from
// listed and unlisted sources.
func (l *Lab) AddClientAddress(p netip.Prefix) error {
	args := []string{"ip", "addr", "add", p.String(), "dev", "eth0"}
	if p.Addr().Is6() {
		args = append(args, "nodad") // usable at once, not tentative
	}
	if err := l.Run("client", args...); err != nil {
		return err
	}
	if netip.MustParsePrefix("192.0.2.0/24").Contains(p.Addr()) {
		return nil
	}
	return l.Run("node", "ip", "route", "replace", p.Masked().String(), "dev", "to-client")
}

// RouteToSink routes a prefix from the node to the sink, as a node routes
// addresses it does not own (a Service CIDR) towards its gateway: packets
// kube-proxy does not NAT leave the node and their entries are confirmed.
func (l *Lab) RouteToSink(p netip.Prefix) error {
	via := sinkIP
	if p.Addr().Is6() {
		via = sinkIP6
	}
	return l.Run("node", "ip", "route", "replace", p.String(), "via", via.String())
}

// NSPath is the path of a namespace's handle, for nsenter and setns.
func (l *Lab) NSPath(name string) string { return "/run/netns/" + l.NS(name) }

// Receiver counts the UDP packets a pod receives on a port, in all and by
// source address.
type Receiver struct {
	conn     io.Closer
	packets  atomic.Int64
	first    atomic.Int64 // unix nanos of the first packet
	last     atomic.Int64 // unix nanos of the last packet
	done     chan struct{}
	mu       sync.Mutex
	bySource map[netip.Addr]*sourceCount
}

type sourceCount struct {
	packets int64
	last    time.Time
}

// From is how many packets came from src, and when the last one came.
func (r *Receiver) From(src netip.Addr) (int64, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.bySource[src]; c != nil {
		return c.packets, c.last
	}
	return 0, time.Time{}
}

// Listen starts a receiver in a pod namespace ("pod" or "pod2").
func (l *Lab) Listen(ns string, addr netip.AddrPort) (*Receiver, error) {
	r := &Receiver{done: make(chan struct{}), bySource: map[netip.Addr]*sourceCount{}}
	var conn *net.UDPConn
	err := l.InNS(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, err
	}
	r.conn = conn
	go func() {
		defer close(r.done)
		buf := make([]byte, 2048)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.count(from.Addr())
		}
	}()
	return r, nil
}

func (r *Receiver) count(from netip.Addr) {
	now := time.Now()
	r.packets.Add(1)
	r.first.CompareAndSwap(0, now.UnixNano())
	r.last.Store(now.UnixNano())
	r.mu.Lock()
	c := r.bySource[from.Unmap()]
	if c == nil {
		c = &sourceCount{}
		r.bySource[from.Unmap()] = c
	}
	c.packets++
	c.last = now
	r.mu.Unlock()
}

// ListenStream is Listen for TCP: it accepts connections in a pod namespace
// and counts each message (a line) as a packet of its connection's source.
func (l *Lab) ListenStream(ns string, addr netip.AddrPort) (*Receiver, error) {
	r := &Receiver{done: make(chan struct{}), bySource: map[netip.Addr]*sourceCount{}}
	var ln net.Listener
	err := l.InNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	r.conn = ln
	go func() {
		defer close(r.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		var mu sync.Mutex
		var conns []net.Conn
		defer func() {
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					r.count(from)
				}
			}()
		}
	}()
	return r, nil
}

// First is when the first packet came (zero: none yet).
func (r *Receiver) First() time.Time {
	if t := r.first.Load(); t != 0 {
		return time.Unix(0, t)
	}
	return time.Time{}
}

// Packets received so far.
func (r *Receiver) Packets() int64 { return r.packets.Load() }

// WaitPacket waits for a packet after since, and returns when it came.
func (r *Receiver) WaitPacket(ctx context.Context, since time.Time) (time.Time, error) {
	for {
		if t := r.last.Load(); t > since.UnixNano() {
			return time.Unix(0, t), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Close stops the receiver.
func (r *Receiver) Close() { r.conn.Close(); <-r.done }

// Sender sends a constant UDP flow from the client, from a fixed source
// port, as a switch exporting flows does.
type Sender struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sent   atomic.Int64
}

// Send starts a flow to dst every interval until Stop, from the client's
// address of dst's family.
func (l *Lab) Send(srcPort uint16, dst netip.AddrPort, interval time.Duration) (*Sender, error) {
	src := ClientIP
	if dst.Addr().Is6() {
		src = ClientIP6
	}
	return l.SendFrom(netip.AddrPortFrom(src, srcPort), dst, interval)
}

// SendFrom is Send from any of the client's addresses.
func (l *Lab) SendFrom(src, dst netip.AddrPort, interval time.Duration) (*Sender, error) {
	return l.sendIn("client", src, dst, interval)
}

// sendIn is SendFrom in any of the lab's namespaces.
func (l *Lab) sendIn(ns string, src, dst netip.AddrPort, interval time.Duration) (*Sender, error) {
	var conn *net.UDPConn
	err := l.InNS(ns, func() error {
		var err error
		conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer conn.Close()
		t := time.NewTicker(interval)
		defer t.Stop()
		payload := []byte("sflow-sample")
		for {
			// ICMP unreachable errors from earlier packets surface here; the
			// flow goes on, as a switch's would.
			if _, err := conn.Write(payload); err == nil {
				s.sent.Add(1)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s, nil
}

// Stream opens a TCP connection from the client's address src to dst and
// writes a line every interval until Stop, as an exporter over TCP (IPFIX)
// does; the connection is established (replies seen) before it returns.
// A write that blocks (the path is cut) does not end the stream: TCP
// retransmits, as it would.
func (l *Lab) Stream(src netip.Addr, dst netip.AddrPort, interval time.Duration) (*Sender, error) {
	var conn net.Conn
	err := l.InNS("client", func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{cancel: func() { cancel(); conn.Close() }}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := conn.Write([]byte("ipfix-message\n")); err == nil {
				s.sent.Add(1)
			} else if ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s, nil
}

// Sent is the number of packets sent.
func (s *Sender) Sent() int64 { return s.sent.Load() }

// Stop ends the flow.
func (s *Sender) Stop() { s.cancel(); s.wg.Wait() }

// ListenTCP accepts TCP connections in a namespace (and closes them at
// once) until the listener is closed: a health-check target.
func (l *Lab) ListenTCP(ns string, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := l.InNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// DialTCP reports whether a TCP connection from the client's address src
// to dst is accepted within timeout.
func (l *Lab) DialTCP(src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	return l.InNS("client", func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", dst.String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// DNATProto is DNAT for any protocol ("udp" or "tcp").
func (l *Lab) DNATProto(proto string, dst, endpoint netip.AddrPort) error {
	return l.Run("node", iptablesFor(dst.Addr()), "-t", "nat", "-A", "PREROUTING", "-p", proto, "-d", dst.Addr().String(),
		"--dport", fmt.Sprint(dst.Port()), "-j", "DNAT", "--to-destination", endpoint.String())
}

func iptablesFor(a netip.Addr) string {
	if a.Is6() {
		return "ip6tables"
	}
	return "iptables"
}

// ForTest builds a lab for a test, with these addresses added to the
// client's link (AddClientAddress), and removes it when the test ends; what
// is missing to build one fails the test.
func ForTest(t testing.TB, prefix string, clientPrefixes ...netip.Prefix) *Lab {
	t.Helper()
	l, err := New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	for _, p := range clientPrefixes {
		if err := l.AddClientAddress(p); err != nil {
			t.Fatal(err)
		}
	}
	return l
}
