// Command ctfilter deletes the benchmark's stale entries (UDP, original
// destination and reply source both the LB IP 203.0.113.10: never NATed)
// with github.com/vishvananda/netlink's ConntrackDeleteFilters, the library
// kube-proxy uses, in the current network namespace.
package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	lb := net.ParseIP("203.0.113.10")
	f := &netlink.ConntrackFilter{}
	for _, err := range []error{
		f.AddProtocol(unix.IPPROTO_UDP),
		f.AddIP(netlink.ConntrackOrigDstIP, lb),
		f.AddIP(netlink.ConntrackReplySrcIP, lb),
	} {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	start := time.Now()
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("deleted %d in %v\n", n, time.Since(start).Round(time.Millisecond))
}
