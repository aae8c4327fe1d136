package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// The second node's addresses (AddSecondNode): its own link to the client,
// which routes between the two nodes' links, and its own collector pod.
var (
	Node2IP       = netip.MustParseAddr("100.64.2.1")   // node2, as the client sees it
	ClientNode2IP = netip.MustParseAddr("100.64.2.2")   // the client on node2's link
	Node2PodIP    = netip.MustParseAddr("198.51.100.4") // the collector on node2
)

// AddSecondNode adds a second node, <prefix>-node2, on a link of its own to
// the client (100.64.2.0/24: the client is the router of both links), with
// a collector pod, <prefix>-node2pod (Node2PodIP), forwarding IPv4 with
// conntrack on, as node does. A bare-metal site's second server: the tests
// of a pod moving between nodes behind a BGP router use it. IPv4 only.
func (l *Lab) AddSecondNode() error {
	for _, ns := range []string{"node2", "node2pod"} {
		if _, err := os.Stat("/run/netns/" + l.NS(ns)); err == nil { // a crashed run's
			_ = exec.Command("ip", "netns", "del", l.NS(ns)).Run()
		}
		l.extra = append(l.extra, ns)
	}
	steps := [][]string{
		{"ip", "netns", "add", l.NS("node2")},
		{"ip", "netns", "add", l.NS("node2pod")},
		l.in("node2", "ip", "link", "set", "lo", "up"),
		l.in("node2pod", "ip", "link", "set", "lo", "up"),
		{"ip", "link", "add", "eth-node2", "netns", l.NS("client"), "type", "veth", "peer", "name", "to-client", "netns", l.NS("node2")},
		{"ip", "link", "add", "eth0", "netns", l.NS("node2pod"), "type", "veth", "peer", "name", "to-pod", "netns", l.NS("node2")},
		l.in("client", "ip", "link", "set", "eth-node2", "up"),
		l.in("node2", "ip", "link", "set", "to-client", "up"),
		l.in("node2", "ip", "link", "set", "to-pod", "up"),
		l.in("node2pod", "ip", "link", "set", "eth0", "up"),
		l.in("client", "ip", "addr", "add", ClientNode2IP.String()+"/24", "dev", "eth-node2"),
		l.in("client", "sysctl", "-qw", "net.ipv4.ip_forward=1"),
		l.in("node2", "ip", "addr", "add", Node2IP.String()+"/24", "dev", "to-client"),
		l.in("node2", "ip", "route", "add", "default", "via", ClientNode2IP.String()),
		l.in("node2", "ip", "addr", "add", "198.51.100.1/32", "dev", "to-pod"),
		l.in("node2", "ip", "route", "add", Node2PodIP.String()+"/32", "dev", "to-pod"),
		l.in("node2pod", "ip", "addr", "add", Node2PodIP.String()+"/32", "dev", "eth0"),
		l.in("node2pod", "ip", "route", "add", "198.51.100.1/32", "dev", "eth0"),
		l.in("node2pod", "ip", "route", "add", "default", "via", "198.51.100.1"),
		l.in("node2", "sysctl", "-qw", "net.ipv4.ip_forward=1"),
		l.in("node2", "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT"),
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}
