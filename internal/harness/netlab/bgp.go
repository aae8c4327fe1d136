package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/spawn"
)

// BGPRouter is Debian's gobgpd in one of the lab's namespaces, peering with
// BGP speakers (MetalLB's) and installing every prefix they announce into
// the namespace's routing table, over all the paths it has for it (ECMP, as
// a router with multipath on: the speakers here announce equal paths):
// gobgpd does not program the kernel itself (FRR's zebra would), so a loop
// here does what a router's FIB programming does, within 50 ms of gobgpd
// learning or withdrawing a path. It needs gobgpd and gobgp (`make deps`
// installs them).
type BGPRouter struct {
	lab    *Lab
	ns     string
	api    string // gobgpd's API, on the namespace's loopback
	cmd    *exec.Cmd
	done   chan struct{}
	stop   context.CancelFunc
	synced sync.WaitGroup
	log    string

	mu        sync.Mutex
	installed map[netip.Prefix]time.Time // when each route went into the table
	hops      map[netip.Prefix][]netip.Addr
}

// BGPPeer is a speaker the router accepts a session from.
type BGPPeer struct {
	Addr netip.Addr
	ASN  uint32
}

// StartBGPRouter starts gobgpd in ns with the AS number asn, passive
// towards each peer (the speakers open the sessions), IPv4 unicast with
// IPv4 peers and IPv6 unicast with IPv6 ones.
func (l *Lab) StartBGPRouter(ns string, asn uint32, routerID netip.Addr, peers ...BGPPeer) (r *BGPRouter, err error) {
	for _, tool := range []string{"gobgpd", "gobgp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install gobgpd (make deps does)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "gobgpd-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	var conf strings.Builder
	fmt.Fprintf(&conf, "[global.config]\n  as = %d\n  router-id = %q\n", asn, routerID)
	for _, p := range peers {
		family := "ipv4-unicast"
		if p.Addr.Is6() {
			family = "ipv6-unicast"
		}
		fmt.Fprintf(&conf, "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = %d\n"+
			"  [neighbors.transport.config]\n    passive-mode = true\n"+
			"  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", p.Addr, p.ASN, family)
	}
	confFile := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		return nil, err
	}
	r = &BGPRouter{lab: l, ns: ns, api: "127.0.0.1:50051", done: make(chan struct{}), log: filepath.Join(dir, "gobgpd.log"),
		installed: map[netip.Prefix]time.Time{}, hops: map[netip.Prefix][]netip.Addr{}}
	logFile, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	r.cmd = exec.Command("ip", "netns", "exec", l.NS(ns), "gobgpd", "-f", confFile, "--log-plain",
		"--pprof-disable", "--api-hosts", r.api)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := spawn.Start(r.cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting gobgpd: %w", err)
	}
	go func() { _ = r.cmd.Wait(); logFile.Close(); close(r.done) }()
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.synced.Add(1)
	go r.program(ctx)
	return r, nil
}

// program installs and removes routes as gobgpd learns and withdraws them.
func (r *BGPRouter) program(ctx context.Context) {
	defer r.synced.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-time.After(50 * time.Millisecond):
		}
		learned := map[netip.Prefix][]netip.Addr{}
		for _, family := range []string{"ipv4", "ipv6"} {
			out, err := r.lab.Output(r.ns, "gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib", "-a", family, "-j")
			if err != nil {
				continue // gobgpd starting
			}
			for p, hops := range nextHops([]byte(out)) {
				learned[p] = hops
			}
		}
		r.mu.Lock()
		for p, hops := range learned {
			if slices.Equal(r.hops[p], hops) {
				continue
			}
			args := []string{"ip", "route", "replace", p.String()}
			if len(hops) == 1 {
				args = append(args, "via", hops[0].String())
			} else {
				for _, h := range hops {
					args = append(args, "nexthop", "via", h.String())
				}
			}
			if err := r.lab.Run(r.ns, args...); err == nil {
				if _, ok := r.installed[p]; !ok {
					r.installed[p] = time.Now()
				}
				r.hops[p] = hops
			}
		}
		for p := range r.installed {
			if _, ok := learned[p]; !ok {
				_ = r.lab.Run(r.ns, "ip", "route", "del", p.String())
				delete(r.installed, p)
				delete(r.hops, p)
			}
		}
		r.mu.Unlock()
	}
}

// nextHops reads `gobgp global rib -j`: the next hops of each prefix's
// paths, sorted.
func nextHops(out []byte) map[netip.Prefix][]netip.Addr {
	var rib map[string][]struct {
		Attrs []struct {
			NextHop string `json:"nexthop"`
		} `json:"attrs"`
	}
	hops := map[netip.Prefix][]netip.Addr{}
	if json.Unmarshal(out, &rib) != nil {
		return hops
	}
	for prefix, ps := range rib {
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			continue
		}
		for _, path := range ps {
			for _, a := range path.Attrs {
				if hop, err := netip.ParseAddr(a.NextHop); err == nil && !slices.Contains(hops[p], hop) {
					hops[p] = append(hops[p], hop)
				}
			}
		}
		slices.SortFunc(hops[p], netip.Addr.Compare)
	}
	return hops
}

// Route says whether the route to p is in the namespace's table, and since
// when.
func (r *BGPRouter) Route(p netip.Prefix) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.installed[p]
	return at, ok
}

// NextHops are the next hops the route to p goes through now (none: no
// route).
func (r *BGPRouter) NextHops(p netip.Prefix) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hops[p])
}

// Log is the end of gobgpd's log, for failure messages.
func (r *BGPRouter) Log(lines int) string {
	data, _ := os.ReadFile(r.log)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "gobgpd log (" + r.log + "):\n" + strings.Join(all, "\n")
}

// Stop ends gobgpd and the programming loop; the routes it installed go
// with the namespace.
func (r *BGPRouter) Stop() {
	r.stop()
	if r.cmd.Process != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-r.done
	r.synced.Wait()
	_ = os.RemoveAll(filepath.Dir(r.log)) // its configuration and log
}
