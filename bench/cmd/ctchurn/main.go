// Command ctchurn creates n UDP conntrack entries in the current network
// namespace, then deletes them: 2n conntrack events for whoever listens.
// The benchmark runs it as its own process (nsenter), so that the CPU the
// benchmark's process spends meanwhile is the agent's reading of the events.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
)

func main() {
	n := flag.Int("n", 50_000, "entries to create and delete")
	port := flag.Uint("port", 54, "their destination port")
	flag.Parse()
	c, err := conntrack.Dial(&netlink.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	flows := make([]conntrack.Flow, *n)
	for i := range flows {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 256)})
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		flows[i] = conntrack.NewFlow(17, 0, src, dst, uint16(1024+i/256), uint16(*port), 120, 0)
		if err := c.Create(flows[i]); err != nil {
			fmt.Fprintf(os.Stderr, "create %d: %v\n", i, err)
			os.Exit(1)
		}
	}
	for i, f := range flows {
		if err := c.Delete(f); err != nil {
			fmt.Fprintf(os.Stderr, "delete %d: %v\n", i, err)
			os.Exit(1)
		}
	}
	fmt.Printf("created and deleted %d entries\n", *n)
}
